"""A deployment that runs fewer requests than its C closed-loop clients send (`held_slots`, bench/
accuracy_serving.py; docs/serving.md, "One request always waiting"): the signature the TensorRT-LLM 1.0.0rc3
Llama-3.1-8B runs on H100 show, TTFT growing with output length at fixed concurrency."""

import sys
from pathlib import Path

import pandas as pd
import pytest

from tokenfab import api

pytestmark = pytest.mark.unit

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import accuracy_serving  # noqa: E402  (bench/ is not a package)

COMMON = dict(model="llama-3.1-8b", hardware="h100-sxm", engine="trtllm", input_len=1024)


def _summary(c: int, osl: int, max_num_seqs: int) -> dict:
    return api.simulate(concurrency=c, num_requests=20 * c, warmup_requests=4 * c, output_len=osl,
                        max_num_seqs=max_num_seqs, **COMMON).summary


def test_one_held_slot_makes_every_request_wait_one_cycle_over_c():
    # C clients, C - 1 slots always busy: each client's cycle is wait W + service S, and throughput
    # (C - 1) / S = C / (W + S) gives W = S / (C - 1) = E2E / C. TTFT = W + the prompt's own prefill, which
    # alone is the single-request TTFT (beside C - 1 decodes it is a few ms longer: the 5% allowance).
    c, osl = 8, 512
    s = _summary(c, osl, c - 1)
    alone = api.simulate(concurrency=1, num_requests=3, output_len=osl, **COMMON).summary["ttft_s"]["mean"]
    assert s["ttft_s"]["mean"] == pytest.approx(s["e2e_s"]["mean"] / c + alone, rel=0.05)


def test_held_slot_ttft_grows_with_output_length_and_without_it_does_not():
    c = 8
    held = [_summary(c, osl, c - 1)["ttft_s"]["mean"] for osl in (256, 512)]
    free = [_summary(c, osl, c)["ttft_s"]["mean"] for osl in (256, 512)]
    assert held[1] > 1.7 * held[0]  # W = E2E / C roughly doubles with the output length
    assert free[1] == pytest.approx(free[0], rel=0.05)  # exact lengths in lockstep: the wave's prefill only


def test_apply_client_turns_held_slots_into_the_sequence_limit():
    kw = dict(concurrency=8, output_len=100, input_len=10)
    assert accuracy_serving.apply_client(kw, {"warmup_waves": 0, "output_variation_frac": 0.0, "held_slots": 1})["max_num_seqs"] == 7
    assert "max_num_seqs" not in accuracy_serving.apply_client(kw, {"warmup_waves": 0, "output_variation_frac": 0.0})
    one = dict(kw, concurrency=1)
    assert accuracy_serving.apply_client(one, {"warmup_waves": 0, "output_variation_frac": 0.0, "held_slots": 1})["max_num_seqs"] == 1


def test_campaign_is_chip_release_and_source_file():
    row = pd.Series({"hardware": "H100-SXM-80GB", "framework": "trtllm 1.0.0rc3",
                     "notes": "...; data_source=[source_file=meta-llama_Llama-3.1-8B-Instruct.csv; silicon_concurrency=8]"})
    assert accuracy_serving.campaign(row) == "H100-SXM-80GB trtllm 1.0.0rc3 meta-llama_Llama-3.1-8B-Instruct.csv"
    assert accuracy_serving.campaign(row.replace(row["notes"], "no source")) == "H100-SXM-80GB trtllm 1.0.0rc3 ?"


def test_a_campaign_client_replaces_its_frameworks_and_keeps_its_held_slots():
    clients = {"vllm": {"warmup_waves": 0, "output_variation_frac": 0.1, "request_latency_ms": 40.0}}
    own = {"H100 vllm 0.12.0 a.csv": {"warmup_waves": 0, "output_variation_frac": 0.0, "request_latency_ms": 10.0}}
    held = {"H100 vllm 0.12.0 a.csv": 1}
    mine = accuracy_serving.client_of({"framework": "vllm", "campaign": "H100 vllm 0.12.0 a.csv"}, clients, held, own)
    other = accuracy_serving.client_of({"framework": "vllm", "campaign": "B200 vllm nan b.csv"}, clients, held, own)
    moe = accuracy_serving.client_of({"framework": "vllm"}, clients, held, own)  # MoE jobs carry no campaign
    unknown = accuracy_serving.client_of({"framework": "sglang", "campaign": "x"}, clients, held, own)
    assert mine == {**own["H100 vllm 0.12.0 a.csv"], "held_slots": 1}
    assert other == moe == {**clients["vllm"], "held_slots": 0}
    assert unknown == {**accuracy_serving.EXACT_CLIENT, "held_slots": 0}


def test_fitted_campaign_clients_read_only_campaigns_with_a_client(tmp_path, monkeypatch):
    path = tmp_path / "clients.yaml"
    path.write_text("campaigns:\n  a: {held_slots: 1}\n  b:\n    held_slots: 0\n    client: {warmup_waves: 0, "
                    "output_variation_frac: 0.05, request_latency_ms: 20.0}\n    client_fit_half_score: {own_client: 0.1}\n")
    monkeypatch.setattr(accuracy_serving, "CLIENTS_PATH", path)
    assert accuracy_serving.fitted_campaign_clients() == {
        "b": {"warmup_waves": 0, "output_variation_frac": 0.05, "request_latency_ms": 20.0}}
    assert accuracy_serving.fitted_campaigns() == {"a": 1}


def test_campaign_client_fit_keeps_a_campaigns_own_client_only_where_it_beats_its_frameworks(monkeypatch):
    # Stub runs: every job's TTFT and TPOT are off by the client's latency in ms / 100 (and exact at 10 ms for
    # campaign "b"), so campaign "a" is best at 0 ms, its framework's setting, and "b" at 10 ms, its own.
    import fit_serving_client as fit

    def run(jobs, client, held):
        return [{"error": "", "ttft_ms": 1.0 + abs(client["request_latency_ms"] - (10 if j["meta"]["campaign"] == "b" else 0)) / 100,
                 "tpot_ms": 1.0} for j in jobs]

    monkeypatch.setattr(fit, "_run", run)
    jobs = [{"meta": {"key": (name, i), "campaign": name, "framework": "vllm"},
             "measured": {"ttft_ms": (1.0, ""), "tpot_ms": (1.0, "")}} for name in ("a", "b") for i in range(60)]
    grid = [{"warmup_waves": 0, "output_variation_frac": 0.0, "request_latency_ms": lat} for lat in (0.0, 10.0, 40.0)]
    own = fit._fit_campaign_clients(jobs, {"vllm": grid[0]}, grid, {}, min_runs=10)
    assert set(own) == {"b"}
    assert own["b"]["client"] == grid[1] and own["b"]["client"] is not grid[1]  # a copy: no YAML anchors
    assert own["b"]["client_fit_half_score"] == {"framework_client": 0.05, "own_client": 0.0}
    assert fit._fit_campaign_clients(jobs, {"vllm": grid[0]}, grid, {}, min_runs=100) == {}  # too few fit-half runs
