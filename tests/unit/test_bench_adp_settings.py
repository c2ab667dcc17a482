"""How bench/accuracy_moe_serving.py sets up the attention-DP runs: InferenceMAX's MTP server limits and the fitted
attention-DP balancing (one setting for every model, or one per model)."""

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import accuracy_moe_serving as ams  # noqa: E402
from test_bench_moe_serving import mtp_cell_rows  # noqa: E402

pytestmark = pytest.mark.unit


def test_mtp_runs_take_the_scripts_per_rank_batch_and_token_budget():
    # attention-DP 8, C = 256, 1 draft: max_batch_size 256 / 8 = 32; ((1 + 1) x 32 + 1024 + 127) // 64 x 64 = 1152
    assert ams.mtp_script_limits({"spec_tokens": 1}, {"dp": 8}, 256, 1024) == {"max_num_seqs": 32, "max_batched_tokens": 1152}
    # no attention-DP, C = 64, 3 drafts, 8k prompts: max_batch_size 64; (4 x 64 + 8192 + 127) // 64 x 64 = 8512
    assert ams.mtp_script_limits({"spec_tokens": 3}, {"dp": 1}, 64, 8192) == {"max_num_seqs": 64, "max_batched_tokens": 8512}
    assert ams.mtp_script_limits({}, {"dp": 8}, 256, 1024) == {}  # a run without speculation keeps the defaults


@given(drafts=st.integers(1, 3), dp=st.sampled_from([1, 2, 4, 8]), per_rank=st.integers(1, 256),
       isl=st.sampled_from([1024, 4000, 8192]))
def test_the_mtp_budget_holds_one_prompt_beside_a_full_batch_and_never_two(drafts, dp, per_rank, isl):
    lim = ams.mtp_script_limits({"spec_tokens": drafts}, {"dp": dp}, per_rank * dp, isl)
    decode_tokens = (drafts + 1) * lim["max_num_seqs"]
    assert lim["max_num_seqs"] == (per_rank if dp > 1 else per_rank * dp)
    assert decode_tokens + isl <= lim["max_batched_tokens"] < decode_tokens + 2 * isl


def test_mtp_jobs_carry_the_limits_and_plain_jobs_the_default_budget(tmp_path):
    mtp_cell_rows().to_csv(tmp_path / "e2e_aiconfigurator_silicon.csv", index=False)  # one cell, MTP and plain
    jobs, _ = ams._jobs(tmp_path)
    by_case = {j["measured"]["tpot_ms"][1]: j["kwargs"] for j in jobs}
    assert (by_case["mtp"]["max_num_seqs"], by_case["mtp"]["max_batched_tokens"]) == (16, (2 * 16 + 1024 + 127) // 64 * 64)
    assert "max_num_seqs" not in by_case["stp"] and by_case["stp"]["max_batched_tokens"] == 8192


def test_a_per_model_balance_applies_each_models_own_setting_and_a_uniform_one_every_model():
    uniform = {"adp_timeout_iters": 50, "adp_batching_wait_iters": 0}
    per_model = {"deepseek-v3": {"adp_timeout_iters": 60, "adp_batching_wait_iters": 0}}
    assert ams.balance_for(uniform, "gpt-oss-120b") == uniform
    assert ams.balance_for(per_model, "deepseek-v3") == per_model["deepseek-v3"]
    assert ams.balance_for(per_model, "gpt-oss-120b") == {}


def test_the_stored_choice_is_read_per_model_when_the_chosen_candidate_is(tmp_path, monkeypatch):
    path = tmp_path / "attention_dp_balance.yaml"
    monkeypatch.setattr(ams, "BALANCE_PATH", path)
    path.write_text("trtllm:\n  choice: inferencemax-scripts\n  per_model:\n"
                    "    deepseek-v3: {adp_timeout_iters: 60, adp_batching_wait_iters: 0}\n"
                    "    gpt-oss-120b: {adp_timeout_iters: 0, adp_batching_wait_iters: 0}\n")
    assert ams.fitted_balance() == {"deepseek-v3": {"adp_timeout_iters": 60, "adp_batching_wait_iters": 0},
                                    "gpt-oss-120b": {}}
    path.write_text("trtllm: {choice: context-wait, adp_timeout_iters: 50, adp_batching_wait_iters: 0}\n")
    assert ams.fitted_balance() == {"adp_timeout_iters": 50, "adp_batching_wait_iters": 0}
    path.write_text("trtllm: {choice: 'off', adp_timeout_iters: 0, adp_batching_wait_iters: 0}\n")
    assert ams.fitted_balance() == {}


def test_the_fit_scores_a_per_model_candidate_with_each_runs_own_setting(monkeypatch):
    import fit_attention_dp_balance as fit

    seen = []
    monkeypatch.setattr(fit, "job_abs_errors", lambda runs, workers: seen.extend(r["kwargs"] for r in runs) or [])
    jobs = [{"kwargs": {"model": "deepseek-v3"}}, {"kwargs": {"model": "gpt-oss-120b"}}]
    fit._errors(jobs, fit.CANDIDATES["inferencemax-scripts"], 1)
    assert [k["adp_timeout_iters"] for k in seen] == [60, 50]
    assert [k["adp_batching_wait_iters"] for k in seen] == [0, 10]
