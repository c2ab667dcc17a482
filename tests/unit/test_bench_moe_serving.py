"""How bench/accuracy_moe_serving.py reads a run's layout and benchmark concurrency from its notes."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from accuracy_moe_serving import _disagg_kwargs, benchmark_concurrency, layout, pools  # noqa: E402

pytestmark = pytest.mark.unit

_ADP = ("aggregated serving: tp=1, pp=1, attention_dp=8, moe_tp=1, moe_ep=8, batch/concurrency=32; gemm_quant=nvfp4; "
        "measured serving benchmark at fixed concurrency=256; data_source=[silicon_concurrency=256]")
_TRT13 = ("aggregated serving: tp=8, pp=1, attention_dp=, moe_tp=1, moe_ep=8, batch/concurrency=56; "
          "measured serving benchmark at fixed concurrency=448")
_PLAIN = ("aggregated serving: tp=4, pp=1, attention_dp=, moe_tp=1, moe_ep=4, batch/concurrency=64; "
          "measured serving benchmark at fixed concurrency=64")
_PD = ("disaggregated serving: prefill workers=7 x (tp=1, pp=1, attn_dp=4, moe_tp=1, moe_ep=4, batch=1); "
       "decode workers=2 x (tp=1, pp=1, attn_dp=8, moe_tp=1, moe_ep=8, batch=128); measured serving benchmark at "
       "fixed concurrency")


def test_attention_dp_run_is_benchmarked_at_batch_times_ranks():
    lay = layout(_ADP)
    assert lay == {"tp": 1, "pp": 1, "dp": 8, "moe_tp": 1, "ep": 8}
    assert benchmark_concurrency(_ADP, 32, lay) == 256


def test_blank_attention_dp_with_concurrency_tp_times_batch_is_trtllm_attention_dp():
    assert layout(_TRT13) == {"tp": 1, "pp": 1, "dp": 8, "moe_tp": 1, "ep": 8}
    assert layout(_PLAIN) == {"tp": 4, "pp": 1, "dp": 1, "moe_tp": 1, "ep": 4}
    assert benchmark_concurrency(_PLAIN, 64, layout(_PLAIN)) == 64


def test_pd_concurrency_without_a_stated_number_is_workers_times_ranks_times_batch():
    p = pools(_PD)
    lay = _disagg_kwargs(p["prefill"], p["decode"])
    assert (lay["prefill_replicas"], lay["decode_replicas"], lay["dp"], lay["prefill_dp"]) == (7, 2, 8, 4)
    assert benchmark_concurrency(_PD, 128, lay) == 2 * 8 * 128


def test_a_measurement_repeated_under_a_larger_gpu_layout_is_the_larger_copy_left_out():
    import pandas as pd

    from accuracy_moe_serving import relabelled_duplicates

    base = dict(model="deepseek-ai/DeepSeek-R1", hardware="B200-SXM-180GB", input_len=8192, output_len=1024,
                metric="ttft_ms", notes="measured serving benchmark at fixed concurrency=64")
    rows = pd.DataFrame([{**base, "n_accel": 8, "value": 2039.9696}, {**base, "n_accel": 64, "value": 2039.9696},
                         {**base, "n_accel": 64, "value": 1807.4730},  # its own measurement: kept
                         {**base, "n_accel": 64, "value": 2039.9696, "metric": "tpot_ms"}])
    assert relabelled_duplicates(rows).tolist() == [False, True, False, False]


def test_trtllm_attention_dp_rows_all_gather_and_other_engines_keep_the_all_to_all():
    from accuracy_moe_serving import _exchange

    assert _exchange("trtllm", {"dp": 8}) == {"moe_dispatch": "allgather"}
    assert _exchange("trtllm", {"dp": 1, "prefill_dp": 4}) == {"moe_dispatch": "allgather"}
    assert _exchange("trtllm", {"dp": 1}) == {} == _exchange("sglang", {"dp": 8})


def test_trtllm_pd_runs_limit_the_prefill_pool_to_the_stated_batch_and_sglang_runs_do_not():
    from accuracy_moe_serving import prefill_limit

    assert prefill_limit("trtllm", _PD) == {"prefill_max_num_seqs": 1}
    assert prefill_limit("sglang", _PD) == {}
    assert prefill_limit("trtllm", _PD.replace("batch=1)", "batch=)")) == {}


def test_balancing_applies_to_hand_started_aggregated_trtllm_attention_dp_runs_only():
    from accuracy_moe_serving import is_balanced_kind

    adp = {"tp": 1, "pp": 1, "dp": 8, "moe_tp": 1, "ep": 8}
    assert is_balanced_kind({"framework": "trtllm", "layout": adp, "dynamo": False})
    assert not is_balanced_kind({"framework": "trtllm", "layout": adp, "dynamo": True})
    assert not is_balanced_kind({"framework": "sglang", "layout": adp, "dynamo": False})
    assert not is_balanced_kind({"framework": "trtllm", "layout": {**adp, "dp": 1}, "dynamo": False})
    assert not is_balanced_kind({"framework": "trtllm", "layout": {**adp, "prefill_replicas": 1}, "dynamo": False})


def test_pd_runs_without_worker_counts_are_listed_unless_assumed_and_then_one_worker_each():
    from accuracy_moe_serving import assume_workers

    blank = _PD.replace("prefill workers=7", "prefill workers=").replace("decode workers=2", "decode workers=")
    found = pools(blank)
    assert (found["prefill"][0], found["decode"][0]) == (0, 0)
    assumed = assume_workers(found)
    assert (assumed["prefill"][0], assumed["decode"][0]) == (1, 1)
    assert assumed["prefill"][1] == found["prefill"][1]  # the stated layouts are kept
    assert assume_workers(pools(_PD)) == pools(_PD)  # stated counts are not touched


def test_trtllm_bench_moe_rows_take_trtllm_bench_batch_limits(tmp_path):
    """A trtllm-bench MoE row is run with the max_batch_size / max_num_tokens trtllm-bench derives from its estimate of
    the KV room (`offline_limits`): an 8,192-token prompt with max_num_tokens left at 8,192 never fits beside a decode
    without chunked prefill, and the run would decode one request at a time. Its notes' 0.95 KV share and release apply."""
    import pandas as pd

    from accuracy_moe_serving import offline_limits, throughput_jobs

    base = dict(case_id="moe-row", source_url_or_repo_path="", source_kind="vendor", hardware="B200-SXM-180GB",
                n_accel=1, interconnect="", model="Qwen3-30B-A3B", precision="FP4",
                framework="TensorRT-LLM ~v1.0 (trtllm-bench throughput, PyTorch backend)", scenario="offline",
                batch=None, input_len=8192, output_len=1024, tp=1, pp=1, ep=None, metric="output_tokens_per_s",
                value=5735.0, unit="", notes="offline max-throughput, kv_cache_free_gpu_mem_fraction 0.95 (0.90 fallback)")
    pd.DataFrame([base]).to_csv(tmp_path / "trtllm.csv", index=False)
    (job,), failed = throughput_jobs(tmp_path)
    kw = job["kwargs"]
    assert not failed and kw["kv_free_memory_frac"] == 0.95 and kw["engine_version"] == "1.0"
    limits = offline_limits(kw)
    assert (kw["max_num_seqs"], kw["max_batched_tokens"]) == (limits["max_num_seqs"], limits["max_batched_tokens"])
    assert kw["max_num_seqs"] > 1 and kw["max_batched_tokens"] >= 8192 + kw["max_num_seqs"]


def test_a_copy_naming_another_checkpoint_of_the_same_architecture_is_still_a_duplicate():
    """The db-dump's 64-GPU copy of an 8-GPU SGLang DeepSeek-R1 run names the model DeepSeek-V3 (one architecture)."""
    import pandas as pd

    from accuracy_moe_serving import relabelled_duplicates

    base = dict(hardware="B200-SXM-180GB", input_len=1024, output_len=1024, metric="tpot_ms", value=9.2047,
                notes="measured serving benchmark at fixed concurrency=8")
    rows = pd.DataFrame([{**base, "model": "deepseek-ai/DeepSeek-R1", "n_accel": 8},
                         {**base, "model": "deepseek-ai/DeepSeek-V3", "n_accel": 64},
                         {**base, "model": "Qwen/Qwen3-235B-A22B-FP8", "n_accel": 64},  # another model: kept
                         {**base, "model": "deepseek-ai/DeepSeek-R1", "n_accel": 0, "value": 7.5},  # no GPU count...
                         {**base, "model": "deepseek-ai/DeepSeek-V3", "n_accel": 16, "value": 7.5}])  # ...so no copy
    assert relabelled_duplicates(rows).tolist() == [False, True, False, False, False]


def test_a_repeated_configuration_is_scored_once_and_listed():
    """Two rows of one run configuration and metric (the same run in two source files, or measured again): the later
    is scored, the earlier is listed with both values instead of vanishing; other metrics of the job are untouched."""
    import pandas as pd
    from accuracy_serving import add_measured, repeat_reasons

    jobs: dict = {}
    rows = [("a-ttft", "ttft_ms", 478.5), ("a-tpot", "tpot_ms", 9.6), ("b-ttft", "ttft_ms", 490.4)]
    for case_id, metric, value in rows:
        add_measured(jobs, ("k",), {}, {}, pd.Series({"case_id": case_id, "metric": metric, "value": value}))
    (job,) = jobs.values()
    assert job["measured"] == {"ttft_ms": (490.4, "b-ttft"), "tpot_ms": (9.6, "a-tpot")}
    assert repeat_reasons(jobs.values()) == [
        "a-ttft: repeated by b-ttft (same configuration; measured 478.5 against 490.4), scored once"]


_RELABELLED = ("NVIDIA aiconfigurator silicon validation sample id=2026_04_06_deepseek_r1_b200_sxm_trtllm_fp8_agg_8192x1024_c4_"
               "tp8_ep8_920; trtllm 1.1.0rc2.post2; aggregated serving: tp=64, pp=1, attention_dp=1, moe_tp=8, moe_ep=8, "
               "batch/concurrency=4; measured serving benchmark at fixed concurrency=4; data_source=[source_file=2026-04-06.csv]")


def test_a_converter_relabelled_layout_is_read_as_the_run_its_sample_id_names():
    """'..._tp8_ep8_920' with notes tp=64, moe_tp=8, moe_ep=8 is an 8-GPU run: attention TP8 (or DP8 with attention_dp
    on), experts EP8 without MoE-TP; a 4 x 4 label is a 4-GPU EP4 run; the db-dump (no layout in its ids) likewise."""
    assert layout(_RELABELLED) == {"tp": 8, "pp": 1, "dp": 1, "moe_tp": 1, "ep": 8}
    assert layout(_RELABELLED.replace("tp=64, pp=1, attention_dp=1", "tp=1, pp=1, attention_dp=64")) == \
        {"tp": 1, "pp": 1, "dp": 8, "moe_tp": 1, "ep": 8}
    dump = "tp=16, pp=1, attention_dp=1, moe_tp=4, moe_ep=4, batch/concurrency=8; data_source=[db-dump/2026-04-27; config_id=1]"
    assert layout(dump) == {"tp": 4, "pp": 1, "dp": 1, "moe_tp": 1, "ep": 4}
    gpt = "sample id=x_agg_1024x1024_c64_tp2_ep2_7; aggregated serving: tp=1, pp=1, attention_dp=4, moe_tp=2, moe_ep=2, batch"
    assert layout(gpt) == {"tp": 1, "pp": 1, "dp": 2, "moe_tp": 1, "ep": 2}


def test_layouts_the_converter_did_not_relabel_are_read_as_stated():
    """A real MoE-TP x EP split (nvidia_DeepSeek-R1-NVFP4: tp=8, moe_tp=2, moe_ep=4), an id naming another layout, and
    a 16-bit-width TP run without EP keep their notes' layout."""
    assert layout("tp=8, pp=1, attention_dp=, moe_tp=2, moe_ep=4, batch/concurrency=8") == \
        {"tp": 8, "pp": 1, "dp": 1, "moe_tp": 2, "ep": 4}
    other = _RELABELLED.replace("_tp8_ep8_920", "_tp64_ep8_920")
    assert layout(other) == {"tp": 64, "pp": 1, "dp": 1, "moe_tp": 8, "ep": 8}
    assert layout("db-dump/2026-04-27 tp=8, pp=1, attention_dp=1, moe_tp=8, moe_ep=1, batch") == \
        {"tp": 8, "pp": 1, "dp": 1, "moe_tp": 8, "ep": 1}


def test_gpt_oss_trtllm_bench_rows_keep_mxfp4_experts():
    """GPT-OSS listed as FP8 on Hopper runs its MXFP4 experts weight-only against 16-bit activations (TRITON backend);
    on B200 the FP4 label stands; other models take the table's precision."""
    from accuracy_moe_serving import _checkpoint_formats

    assert _checkpoint_formats("gpt-oss-120b", "fp8", "h100-sxm") == {"dtype": "bf16", "weight_dtype": "fp4"}
    assert _checkpoint_formats("gpt-oss-20b", "fp4", "b200") == {"dtype": "fp4"}
    assert _checkpoint_formats("qwen3-235b-a22b", "fp8", "h100-sxm") == {"dtype": "fp8"}
    # a 4-bit label on a chip without FP4 tensor cores (vLLM's Hopper GPT-OSS samples say nvfp4) runs weight-only
    assert _checkpoint_formats("gpt-oss-120b", "fp4", "h100-sxm") == {"dtype": "bf16", "weight_dtype": "fp4"}


def test_gpt_oss_on_blackwell_runs_mxfp8_activations_into_the_w4a8_kernel():
    """TensorRT-LLM's GPT-OSS support matrix: Blackwell runs the MXFP4 experts against MXFP8 activations, so the
    trtllm-bench rows take dtype fp8 with FP4 weights, which the MoE cost takes as B200's fitted 'w4a8' kernel at the
    FP8 rate; Hopper stays weight-only and other models keep their label."""
    from accuracy_moe_serving import _checkpoint_formats

    from tokenfab.cost.chip_cost import chip_cost
    from tokenfab.cost.moe import moe_kind
    from tokenfab.hardware.catalog import load_chip

    formats = _checkpoint_formats("gpt-oss-20b", "fp4", "b200", blackwell_mxfp8=True)
    assert formats == {"dtype": "fp8", "weight_dtype": "fp4"}
    assert moe_kind(chip_cost(load_chip("b200")), formats["dtype"], formats["weight_dtype"]) == ("w4a8", "fp8")
    assert _checkpoint_formats("gpt-oss-120b", "fp8", "h100-sxm", blackwell_mxfp8=True) == \
        {"dtype": "bf16", "weight_dtype": "fp4"}
    assert _checkpoint_formats("qwen3-30b-a3b", "fp4", "b200", blackwell_mxfp8=True) == {"dtype": "fp4"}


@pytest.mark.calibration
def test_fixed_concurrency_gpt_oss_hopper_runs_take_the_checkpoints_mxfp4_experts(shared_dir):
    """The TensorRT-LLM H100 GPT-OSS samples say gemm_quant=fp8, moe_quant=fp8 but ran openai/gpt-oss-120b, whose
    experts are MXFP4: on Hopper TensorRT-LLM runs them against BF16 activations, so no job streams FP8 experts."""
    from accuracy_moe_serving import concurrency_jobs

    jobs, _ = concurrency_jobs(shared_dir / "calibration")
    hopper = [j["kwargs"] for j in jobs if j["kwargs"]["model"].startswith("gpt-oss") and j["kwargs"]["hardware"] == "h100-sxm"]
    assert hopper and {(k["dtype"], k.get("weight_dtype")) for k in hopper} == {("bf16", "fp4")}


def test_a_campaign_keeps_its_own_client_latency_only_where_it_beats_its_frameworks_on_enough_fit_runs():
    from fit_moe_serving_client import choose

    scores = {"slow-frontend": {0.0: 0.5, 20.0: 0.4, 120.0: 0.2}, "no-gain": {0.0: 0.3, 20.0: 0.2},
              "too-few-runs": {20.0: 0.3, 80.0: 0.1}, "tie": {0.0: 0.25, 20.0: 0.25}}
    framework_ms = {"slow-frontend": 20.0, "no-gain": 20.0, "too-few-runs": 20.0, "tie": 20.0}
    runs = {"slow-frontend": 6, "no-gain": 6, "too-few-runs": 3, "tie": 6}
    assert choose(scores, framework_ms, runs, min_runs=4) == {"slow-frontend": 120.0}


def test_campaign_score_is_the_mean_of_ttft_and_tpot_mape():
    from fit_moe_serving_client import campaign_client, score

    errs = [{"ttft_ms": 0.4, "tpot_ms": 0.1}, {"ttft_ms": 0.2, "tpot_ms": 0.3}]
    assert score(errs) == pytest.approx((0.3 + 0.2) / 2)
    assert score([]) != score([])  # nan: a campaign without runs scores nothing
    client = campaign_client("trtllm", 120.0, {"trtllm": {"output_variation_frac": 0.02, "request_latency_ms": 20.0}})
    assert client == {"warmup_waves": 0, "output_variation_frac": 0.02, "request_latency_ms": 120.0}


def test_moe_jobs_of_a_fitted_campaign_run_under_its_frameworks_client_with_its_own_latency(tmp_path, monkeypatch):
    import accuracy_moe_serving as ams
    from accuracy_serving import under_clients

    path = tmp_path / "moe_serving_clients.yaml"
    path.write_text("campaigns:\n  H100 trtllm x.csv:\n    framework: trtllm\n    request_latency_ms: 120.0\n"
                    "  B200 vllm y.csv:\n    framework: vllm\n    fit_runs: 2\n")
    monkeypatch.setattr(ams, "MOE_CLIENTS_PATH", path)
    trtllm = {"trtllm": {"warmup_waves": 0, "output_variation_frac": 0.02, "request_latency_ms": 20.0}}
    fitted = ams.fitted_moe_campaign_clients(trtllm)
    assert fitted == {"H100 trtllm x.csv": {"warmup_waves": 0, "output_variation_frac": 0.02, "request_latency_ms": 120.0}}
    jobs = [{"kwargs": {"concurrency": 4, "output_len": 128}, "meta": {"framework": "trtllm", "campaign": name}}
            for name in ("H100 trtllm x.csv", "B200 trtllm z.csv")]
    out = under_clients(jobs, trtllm, {}, fitted)
    assert [j["kwargs"]["request_latency_ms"] for j in out] == [120.0, 20.0]
    assert all(j["kwargs"]["output_dist"] == "uniform:125,131" for j in out)  # the framework's output spread, both
    monkeypatch.setattr(ams, "MOE_CLIENTS_PATH", tmp_path / "absent.yaml")
    assert ams.fitted_moe_campaign_clients(trtllm) == {}


def test_stored_moe_campaign_clients_are_grid_choices_that_beat_their_frameworks_on_the_fit_half():
    import yaml

    from accuracy_moe_serving import MOE_CLIENTS_PATH

    if not MOE_CLIENTS_PATH.exists():
        pytest.skip("bench/data/moe_serving_clients.yaml not written (python bench/fit_moe_serving_client.py --write)")
    data = yaml.safe_load(MOE_CLIENTS_PATH.read_text())
    prov, kept = data["provenance"], 0
    for name, row in data["campaigns"].items():
        if "request_latency_ms" not in row:
            continue
        kept += 1
        ms = row["request_latency_ms"]
        assert ms in prov["grid_ms"], name
        assert row["fit_runs"] >= prov["min_runs"], name
        scores = row["fit_half_score"]
        assert scores[f"{ms:g}ms"] < scores[f"{row['framework_request_latency_ms']:g}ms"], name
    assert kept, "a stored fit that keeps no campaign's client"


def test_a_run_whose_own_latencies_put_few_requests_in_flight_is_not_scored():
    """Little's law on the run's own means: 512 clients, TTFT 22.3 s, 1024 tokens at 5.33 ms (5.46 s decoding):
    512 x 5.46 / 27.76 = 100.7 in flight (0.197 C, below a third: not scored); at TTFT 1 s, 0.85 C (scored)."""
    from moe_serving_rules import below_stated_load, in_flight_frac

    def job(ttft_ms):
        return {"kwargs": {"output_len": 1024}, "meta": {"concurrency": 512, "layout": {}},
                "measured": {"ttft_ms": (ttft_ms, "a-ttft"), "tpot_ms": (5.3327, "a-tpot")}}

    capped, loaded = job(22294.9), job(1000.0)
    assert in_flight_frac(capped) * 512 == pytest.approx(100.7, abs=0.1)
    assert in_flight_frac(loaded) == pytest.approx(5460.7 / 6460.7, rel=1e-4)
    kept, reasons = below_stated_load([capped, loaded, {"kwargs": {"output_len": 8}, "measured": {}, "meta": {}}])
    assert len(kept) == 2 and kept[0] is loaded
    assert [r.split(":")[0] for r in reasons] == ["a-ttft", "a-tpot"] and "101 requests in flight" in reasons[0]


def test_a_fitted_engine_client_spread_applies_to_that_engines_runs_only(tmp_path):
    """bench/fit_moe_prefill.py's output spread for one engine reaches that engine's runs and leaves the other engines'
    clients alone; {} keeps the framework client."""
    import pandas as pd

    from accuracy_moe_serving import concurrency_jobs

    notes = _PLAIN + "; gemm_quant=nvfp4, moe_quant=nvfp4"
    rows = [dict(case_id=f"{fw}-{m}", source_url_or_repo_path="", source_kind="repo-data", hardware="B200-SXM-180GB",
                 n_accel=4, interconnect="NVLink5", model="deepseek-ai/DeepSeek-V3", precision="fp4",
                 framework=f"{fw} {ver}", scenario="server-agg", batch=64, input_len=1024, output_len=1000, tp=4, pp=1,
                 ep=4, metric=m, value=v, unit="ms", notes=notes)
            for fw, ver in (("sglang", "0.5.9"), ("trtllm", "1.2.0")) for m, v in (("ttft_ms", 500.0), ("tpot_ms", 20.0))]
    pd.DataFrame(rows).to_csv(tmp_path / "e2e_aiconfigurator_silicon.csv", index=False)
    clients = {fw: {"warmup_waves": 0, "output_variation_frac": 0.0, "request_latency_ms": 0.0} for fw in ("sglang", "trtllm")}
    none = {"campaign_clients": {}, "campaign_spreads": {}}
    jobs, _ = concurrency_jobs(tmp_path, clients=clients, balance={}, engine_clients={"sglang": {"output_variation_frac": 0.1}},
                               **none)
    dist = {j["meta"]["framework"]: j["kwargs"].get("output_dist") for j in jobs}
    assert dist == {"sglang": "uniform:900,1100", "trtllm": None}
    plain, _ = concurrency_jobs(tmp_path, clients=clients, balance={}, engine_clients={}, **none)
    assert all("output_dist" not in j["kwargs"] for j in plain)
    # a campaign's own fitted spread wins over its engine's, for that campaign only (0 included: exact lengths)
    sglang_campaign = next(j["meta"]["campaign"] for j in jobs if j["meta"]["framework"] == "sglang")
    own, _ = concurrency_jobs(tmp_path, clients=clients, balance={}, campaign_clients={},
                              engine_clients={"sglang": {"output_variation_frac": 0.1}, "trtllm": {"output_variation_frac": 0.1}},
                              campaign_spreads={sglang_campaign: 0.0, "another campaign": 0.2})
    dist = {j["meta"]["framework"]: j["kwargs"].get("output_dist") for j in own}
    assert dist == {"sglang": None, "trtllm": "uniform:900,1100"}


def test_a_campaign_keeps_its_own_spread_only_where_it_beats_its_engines_at_its_latency_on_enough_fit_runs():
    from fit_moe_serving_client import choose_spreads

    scores = {"lock-step": {0.0: 0.2, 0.1: 0.3}, "drifting": {0.0: 0.4, 0.2: 0.25}, "no-gain": {0.0: 0.31, 0.2: 0.3},
              "few": {0.2: 0.1}, "tie": {0.0: 0.3, 0.05: 0.3}}
    engine = {"lock-step": 0.3, "drifting": 0.35, "no-gain": 0.3, "few": 0.3, "tie": 0.3}
    runs = {"lock-step": 5, "drifting": 5, "no-gain": 5, "few": 3, "tie": 5}
    assert choose_spreads(scores, engine, runs, min_runs=4) == {"lock-step": 0.0, "drifting": 0.2}


def test_stored_moe_campaign_spreads_are_grid_choices_that_beat_their_engines_spread_on_the_fit_half():
    import yaml

    from accuracy_moe_serving import MOE_CLIENTS_PATH, fitted_moe_campaign_spreads

    if not MOE_CLIENTS_PATH.exists():
        pytest.skip("bench/data/moe_serving_clients.yaml not written (python bench/fit_moe_serving_client.py --write)")
    data = yaml.safe_load(MOE_CLIENTS_PATH.read_text())
    prov, spreads = data["provenance"], fitted_moe_campaign_spreads()
    if "spread_grid" not in prov:
        pytest.skip("a latency-only fit (written before stage 2 existed)")
    for name, f in spreads.items():
        row = data["campaigns"][name]
        assert f in prov["spread_grid"] and row["fit_runs"] >= prov["min_runs"], name
        stage1_ms = row["spread_fitted_at_latency_ms"]  # the stage-1 latency whose score (engine spread) it beats
        if "fit_half_joint_score" in row:  # --joint: the (latency, spread) pair chosen over both grids
            ms = row.get("request_latency_ms", row["framework_request_latency_ms"])
            mine = row["fit_half_joint_score"][f"{ms:g}ms/{f:g}"]
            assert mine == min(row["fit_half_joint_score"].values()), name
        else:
            mine = row["fit_half_spread_score"][f"{f:g}"]
        assert mine < row["fit_half_score"][f"{stage1_ms:g}ms"], name


def test_only_inferencemax_mtp_image_runs_speculate_one_token_under_attention_dp_three_otherwise():
    from accuracy_moe_serving import MTP_FRAMEWORK, speculative_recipe

    dep, tep = {"tp": 1, "dp": 8, "ep": 8}, {"tp": 8, "dp": 1, "ep": 8}
    dep_spec, tep_spec = speculative_recipe(MTP_FRAMEWORK, "deepseek-v3", dep), speculative_recipe(MTP_FRAMEWORK, "deepseek-v3", tep)
    assert (dep_spec["spec_method"], dep_spec["spec_tokens"]) == ("mtp", 1)
    assert (tep_spec["spec_method"], tep_spec["spec_tokens"]) == ("mtp", 3)
    assert speculative_recipe("trtllm 1.2.0rc6.post2", "deepseek-v3", tep) == {}  # the plain sweeps' image
    assert speculative_recipe("trtllm 1.1.0rc2.post2", "deepseek-v3", tep) == {}  # served both kinds: no claim
    assert speculative_recipe(MTP_FRAMEWORK, "gpt-oss-120b", tep) == {}
    assert speculative_recipe(MTP_FRAMEWORK, "deepseek-v3", {**dep, "prefill_replicas": 1}) == {}


def mtp_cell_rows():
    """One B200 DeepSeek-R1 attention-DP 8 cell measured twice at C = 128: on InferenceMAX's MTP image ('mtp') and on
    the plain sweeps' image ('stp'), as e2e_aiconfigurator_silicon.csv rows (also used by test_bench_adp_settings)."""
    import pandas as pd

    from accuracy_moe_serving import MTP_FRAMEWORK

    notes = ("NVIDIA aiconfigurator silicon validation sample id=x; aggregated serving: tp=1, pp=1, attention_dp=8, moe_tp=1, "
             "moe_ep=8, batch/concurrency=16; gemm_quant=nvfp4, moe_quant=nvfp4; measured serving benchmark at fixed "
             "concurrency=128; data_source=[source_file=2026-03-25.csv]")
    base = dict(source_url_or_repo_path="s", source_kind="repo-data", hardware="B200-SXM-180GB", n_accel=8,
                interconnect="NVLink5", model="deepseek-ai/DeepSeek-R1", precision="fp4", scenario="server-agg", batch=16,
                input_len=1024, output_len=8192, tp=1, pp=1, ep=8, metric="tpot_ms", unit="ms", notes=notes)
    return pd.DataFrame([{**base, "case_id": "mtp", "framework": MTP_FRAMEWORK, "value": 11.6652},
                         {**base, "case_id": "stp", "framework": "trtllm 1.2.0rc6.post2", "value": 19.2280}])


def test_the_same_cell_with_and_without_mtp_is_two_runs_and_a_plain_runs_key_is_unchanged(tmp_path):
    """The post3 (MTP) and post2 (plain) measurements of one cell must not collapse into one job (add_measured keeps
    the last), and a run without speculation keeps the key (and so the fit half) it always had."""
    from accuracy_moe_serving import _jobs

    rows = mtp_cell_rows()

    rows.to_csv(tmp_path / "e2e_aiconfigurator_silicon.csv", index=False)
    jobs, _ = _jobs(tmp_path)
    by_case = {j["measured"]["tpot_ms"][1]: j for j in jobs}
    assert set(by_case) == {"mtp", "stp"}
    assert by_case["mtp"]["kwargs"]["spec_method"] == "mtp" and "spec_method" not in by_case["stp"]["kwargs"]
    plain_key = ("deepseek-v3", "b200", "fp4", "trtllm", tuple({"tp": 1, "pp": 1, "dp": 8, "moe_tp": 1, "ep": 8}.items()),
                 128, 1024, 8192, False)
    assert by_case["stp"]["meta"]["key"] == plain_key
    assert by_case["mtp"]["meta"]["key"][:len(plain_key)] == plain_key and len(by_case["mtp"]["meta"]["key"]) == len(plain_key) + 1


def test_the_unversioned_sglang_nvfp4_moe_tp_series_is_listed_not_scored():
    """Only the B200 SGLang runs whose release is blank, with NVFP4 experts split by MoE-TP alone, are the stalled
    series: the same layout with a stated release, FP8 experts, EP, or another engine is scored."""
    from moe_serving_rules import first_token_stalls, is_stalled_series

    def job(**meta):
        base = {"framework": "sglang", "release": "sglang nan", "device": "b200", "moe_quant": "nvfp4",
                "layout": {"tp": 8, "pp": 1, "dp": 1, "moe_tp": 8, "ep": 1}}
        return {"meta": {**base, **meta}, "measured": {"ttft_ms": (5504.0, "s-ttft"), "tpot_ms": (13.6, "s-tpot")}}

    stalled = job()
    assert is_stalled_series(stalled["meta"])
    scored = [job(release="sglang 0.5.9"), job(moe_quant="fp8_block"), job(framework="trtllm", release="trtllm nan"),
              job(layout={"tp": 4, "pp": 1, "dp": 1, "moe_tp": 1, "ep": 4}), job(device="h100-sxm")]
    assert not any(is_stalled_series(j["meta"]) for j in scored)
    kept, reasons = first_token_stalls([stalled, *scored])
    assert kept == scored
    assert [r.split(":")[0] for r in reasons] == ["s-ttft", "s-tpot"]


def test_a_run_far_above_its_deployments_ttft_at_a_higher_load_is_not_scored():
    """The same deployment (campaign and simulated arguments but the load): 12.3 s at C = 6 against 5.05 s at C = 30
    is 2.44x (not scored); 7.4 s at C = 60 lies above its lower-load runs, as queueing makes it (scored); a run of
    another campaign, or with another layout, is no higher-load run of it."""
    from moe_serving_rules import above_higher_load_ttft

    def job(c, ttft_ms, campaign="H100 trtllm ?", tp=16):
        return {"kwargs": {"concurrency": c, "num_requests": 10 * c, "max_batched_tokens": 8192 + c, "tp": tp},
                "meta": {"campaign": campaign},
                "measured": {"ttft_ms": (ttft_ms, f"c{c}-{campaign}-{tp}-ttft"), "tpot_ms": (14.0, f"c{c}-{campaign}-{tp}-tpot")}}

    low, mid, high = job(6, 12345.0), job(30, 5052.0), job(60, 7403.0)
    other_campaign, other_layout = job(6, 12345.0, campaign="B200 trtllm ?"), job(6, 12345.0, tp=8)
    kept, reasons = above_higher_load_ttft([low, mid, high, other_campaign, other_layout])
    assert kept == [mid, high, other_campaign, other_layout]
    assert [r.split(":")[0] for r in reasons] == ["c6-H100 trtllm ?-16-ttft", "c6-H100 trtllm ?-16-tpot"]
    assert "12345 ms at C = 6 against 5052 ms" in reasons[0]
    kept, reasons = above_higher_load_ttft([job(6, 10000.0), job(30, 5052.0)])  # 1.98x: within the run-to-run spread
    assert len(kept) == 2 and not reasons


def test_the_campaign_client_fit_can_be_limited_to_aggregated_or_pd_campaigns():
    from fit_moe_serving_client import _deployment_wanted

    agg = {"meta": {"layout": {"tp": 4, "ep": 4, "dp": 1}}}
    pd_ = {"meta": {"layout": {"tp": 1, "dp": 8, "ep": 8, "prefill_replicas": 1, "decode_replicas": 1}}}
    assert [_deployment_wanted(j, "aggregated") for j in (agg, pd_)] == [True, False]
    assert [_deployment_wanted(j, "disaggregated") for j in (agg, pd_)] == [False, True]
    assert [_deployment_wanted(j, "all") for j in (agg, pd_)] == [True, True]


def test_a_first_token_seconds_late_whatever_the_prompt_length_is_not_scored_on_ttft():
    """The same deployment and load at 1024 and 8192 prompt tokens: 7137 -> 7661 ms is 1.07x for an 8x prompt (both
    TTFTs not scored, their TPOTs kept); sub-second flat TTFTs (a fixed client latency) and a 4.1x growth stay scored,
    as do runs at another concurrency or of another campaign, which are no pair."""
    from moe_serving_rules import prompt_insensitive_ttft

    def job(isl, ttft_ms, c=9, campaign="H100 trtllm ?"):
        return {"kwargs": {"concurrency": c, "input_len": isl, "num_requests": 10 * c, "max_batched_tokens": isl + 128},
                "meta": {"campaign": campaign},
                "measured": {"ttft_ms": (ttft_ms, f"{campaign}-{isl}-c{c}-ttft"), "tpot_ms": (15.0, f"{campaign}-{isl}-c{c}-tpot")}}

    short, long = job(1024, 7137.0), job(8192, 7661.0)
    fast_short, fast_long = job(128, 250.0, campaign="Qwen"), job(1024, 200.0, campaign="Qwen")
    grows_short, grows_long = job(1024, 169.0, c=10), job(8192, 695.0, c=10)
    lone = job(8192, 7661.0, c=30)
    kept, reasons = prompt_insensitive_ttft([short, long, fast_short, fast_long, grows_short, grows_long, lone])
    assert [r.split(":")[0] for r in reasons] == ["H100 trtllm ?-1024-c9-ttft", "H100 trtllm ?-8192-c9-ttft"]
    assert "7137 ms at 1024 prompt tokens and 7661 ms at 8192" in reasons[0]
    assert [list(j["measured"]) for j in kept[:2]] == [["tpot_ms"], ["tpot_ms"]]
    assert kept[2:] == [fast_short, fast_long, grows_short, grows_long, lone]
    kept, reasons = prompt_insensitive_ttft([job(1024, 4000.0), job(8192, 6000.0)])  # exactly 1.5x: grows with it
    assert len(kept) == 2 and not reasons


def test_runs_that_state_no_concurrency_are_listed_not_scored_aggregated_or_pd(tmp_path):
    """Dynamo 0.8.0's 'at fixed concurrency' without a value states no client count, for P/D runs as for aggregated
    ones (dense and MoE alike); a P/D run that states one is simulated at it, not at its decode workers x batch."""
    import pandas as pd

    from accuracy_moe_serving import _UNSTATED_CONCURRENCY
    from accuracy_serving import _jobs

    assert _UNSTATED_CONCURRENCY.search("measured serving benchmark at fixed concurrency; data_source=[...]")
    assert not _UNSTATED_CONCURRENCY.search("measured serving benchmark at fixed concurrency=64; data_source=[...]")
    pools_ = ("disaggregated serving: prefill workers=2 x (tp=1, pp=1, attn_dp=1, moe_tp=1, moe_ep=1, batch=1); "
              "decode workers=5 x (tp=2, pp=1, attn_dp=1, moe_tp=1, moe_ep=1, batch=128); gemm_quant=fp8; ")
    row = dict(scenario="server-disagg", model="Qwen/Qwen3-32B", hardware="H100-SXM-80GB", precision="fp8",
               framework="sglang 0.5.6.post2", input_len=4000, output_len=1000, batch=128, tp=2, metric="ttft_ms",
               value=500.0)
    pd.DataFrame([{**row, "case_id": "unstated", "notes": pools_ + "measured serving benchmark at fixed concurrency"},
                  {**row, "case_id": "stated", "notes": pools_ + "measured serving benchmark at fixed concurrency=96"}]
                 ).to_csv(tmp_path / "e2e_aiconfigurator_silicon.csv", index=False)
    jobs, skipped = _jobs(tmp_path)
    assert [j["kwargs"]["concurrency"] for j in jobs] == [96]
    assert [s.split(" ")[0] for s in skipped] == ["unstated"] and "no concurrency stated" in skipped[0]
