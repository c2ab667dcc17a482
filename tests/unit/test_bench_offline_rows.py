"""bench/offline_rows.py: which limit sets a trtllm-bench row's batch, and one row's breakdown against its simulation."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from offline_rows import binding_limit, part, run_row, summarise  # noqa: E402

pytestmark = pytest.mark.unit


def test_kv_capacity_or_max_batch_size_sets_the_batch():
    """70B FP8 TP1 on H100 (v0.14 rows): 48,960 KV tokens / (128 + 2048) = 22.5 requests, below max_batch_size 64;
    70B TP4 FP4 on B200, 128/128: 4,212,544 / 256 = 16,455 requests, capped at max_batch_size 4096."""
    assert binding_limit(48960, 128, 2048, 64) == (pytest.approx(22.5), "kv")
    assert binding_limit(4212544, 128, 128, 4096) == (4096.0, "max_batch_size")


def test_breakdown_rows_fall_into_the_decode_parts():
    assert [part(op) for op in ("attn.core", "tp_allreduce", "mlp.up_proj", "attn.qkv_proj", "lm_head", "norm")] == \
        ["attention", "allreduce", "gemm", "gemm", "gemm", "other"]


def test_row_breakdown_follows_its_simulation():
    """Eight 128/16 requests queued at once on one H100 under max_batch_size 4: the batch cap binds (the KV cache
    holds far more), at most 4 run, and the implied step times divide the mean batch by each throughput."""
    job = {"kwargs": dict(model="llama-3.1-8b", hardware="h100-sxm", tp=1, pp=1, dtype="fp8", kv_dtype="fp8", offline=True,
                          input_len=128, output_len=16, engine="trtllm", num_requests=8, max_num_seqs=4),
           "meta": {"case_id": "t", "device": "h100-sxm", "model": "llama-3.1-8b", "per_gpu": False, "n_accel": 1,
                    "measured": 1000.0}}
    row = run_row(job)
    assert row["error"] == "" and row["binding_limit"] == "max_batch_size" and row["admitted_batch"] == 4.0
    assert 0 < row["mean_batch"] <= 4
    assert row["error_frac"] == pytest.approx(row["predicted"] / 1000.0 - 1.0)
    assert row["predicted_step_ms"] == pytest.approx(1e3 * row["mean_batch"] / row["predicted"])
    assert row["measured_step_ms"] == pytest.approx(1e3 * row["mean_batch"] / 1000.0)
    parts = [row[f"decode_{p}_ms"] for p in ("attention", "allreduce", "gemm", "other")]
    assert row["decode_allreduce_ms"] == 0.0 and min(parts) >= 0.0  # one GPU: no all-reduce
    assert sum(parts) == pytest.approx(row["decode_step_ms"], rel=0.05)  # the parts make up the step
    import pandas as pd

    text = summarise(pd.DataFrame([row, {**row, "case_id": "u", "error": "does not fit"}]))
    assert text.startswith("rows 1 (not run: 1), MAPE ")
