"""bench/moe_offline_rows.py: the per-row split of an MoE trtllm-bench row by operator family, and the expert-kernel
factor a row's error implies, against hand-computed values and one small simulated row."""

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from moe_offline_rows import (  # noqa: E402
    FAMILY_NAMES, expert_share, family, implied_expert_factor, layout_kind, run_row, summarise,
)

pytestmark = pytest.mark.unit


def test_breakdown_rows_fall_into_their_families():
    ops = ("attn.core", "moe.experts", "moe.router", "moe.dispatch", "moe.combine", "tp_allreduce", "lm_head_gather",
           "attn.qkv_proj", "norm")
    assert [family(op) for op in ops] == ["attention", "experts", "experts", "exchange", "exchange", "exchange",
                                          "exchange", "other", "other"]


def test_layouts_take_tensorrt_llm_names():
    assert layout_kind({"tp": 1, "dp": 8, "ep": 8, "pp": 1}) == "DEP8"
    assert layout_kind({"tp": 4, "dp": 1, "ep": 1, "pp": 1}) == "TP4"
    assert layout_kind({"tp": 4, "dp": 1, "ep": 4, "pp": 2}) == "TP4-EP4xPP2"


def test_expert_share_weighs_the_two_steps_by_the_prefill_share():
    """A quarter of the time prefilling: 0.75 x (10 / 40 ms of the decode step) + 0.25 x (6 / 8 ms of the prefill time
    per request) = 0.1875 + 0.1875 = 0.375; a share beyond 1 (the estimate counts prompts the run overlapped) is
    capped, so the prefill step alone sets it."""
    split = {"decode_experts_ms": 10.0, "decode_step_ms": 40.0, "prefill_experts_ms": 6.0, "prefill_ms_per_request": 8.0}
    assert expert_share(0.25, split) == pytest.approx(0.375)
    assert expert_share(1.4, split) == pytest.approx(0.75)


def test_implied_factor_is_what_the_experts_would_have_to_take():
    """Predicted 30% too fast with experts 30% of the predicted time: measured time = 1.3 x predicted, so the experts
    must take 0.3 + 0.3 = 0.6 of it, twice their 0.3; predicted 20% too slow with experts 40%: 0.4 - 0.2 = half."""
    assert implied_expert_factor(0.3, 0.3) == pytest.approx(2.0)
    assert implied_expert_factor(-0.2, 0.4) == pytest.approx(0.5)
    assert math.isnan(implied_expert_factor(0.1, 0.0))


def test_small_moe_row_splits_add_up_to_its_steps():
    """Eight 128/16 requests of Qwen3-30B-A3B on one H100 under max_batch_size 4: each step's families sum to the step
    (one stage, so the breakdown is the step), the expert share lies in (0, 1), and the implied factor follows it."""
    job = {"kwargs": dict(model="qwen3-30b-a3b", hardware="h100-sxm", tp=1, pp=1, dtype="fp8", kv_dtype="fp8",
                          offline=True, input_len=128, output_len=16, engine="trtllm", num_requests=8, max_num_seqs=4,
                          max_batched_tokens=512),
           "meta": {"case_id": "t", "device": "h100-sxm", "model": "qwen3-30b-a3b", "per_gpu": False, "n_accel": 1,
                    "measured": 1000.0}}
    row = run_row(job)
    assert row["error"] == ""
    assert sum(row[f"decode_{f}_ms"] for f in FAMILY_NAMES) == pytest.approx(row["decode_step_ms"])
    assert sum(row[f"prefill_{f}_ms"] for f in FAMILY_NAMES) == pytest.approx(row["prefill_ms_per_request"])
    assert row["decode_exchange_ms"] == 0.0 and row["prefill_exchange_ms"] == 0.0  # one GPU: nothing moves
    assert 0.0 < row["expert_share"] < 1.0
    assert row["implied_expert_factor"] == pytest.approx(1.0 + row["error_frac"] / row["expert_share"])
    text = summarise(pd.DataFrame([row]))
    assert "implied expert-kernel factor" in text and "qwen3-30b-a3b" in text
