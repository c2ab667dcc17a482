"""The batched sweep path gives the slow path's numbers (capacity_at_slo, i.e. predict's step model)."""

from __future__ import annotations

import pytest

from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.catalog import load_chip
from tokenfab.sweep.capacity import capacity_at_slo
from tokenfab.sweep.evaluate import evaluate_point
from tokenfab.sweep.fast import evaluate_points, fast_capacities
from tokenfab.sweep.knobs import apply_knobs
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit

SLO = SLOSpec(ttft_s=2.0, tpot_s=0.05, input_tokens=1024, output_tokens=256)

KNOBS = [
    {},
    {"memory.bandwidth_bytes_per_s": 2e12, "onchip_sram_bytes": 1e6},
    {"peak_flop_per_s.bf16": 300e12, "scale_up.bandwidth_bytes_per_s": 50e9},
    {"onchip_sram_bytes": 20e9, "onchip_sram_bandwidth_bytes_per_s": 40e12},  # weights held on chip
    {"memory.capacity_bytes": 20e9, "num_compute_units": 60, "power.tdp_w": 400.0},
    {"memory.capacity_bytes": 10e9},  # the model needs TP to fit
]


def test_batched_capacities_equal_the_slow_path():
    base, model = load_chip("h100-sxm"), load_model("llama-3.1-8b")
    chips = [apply_knobs(base, k) for k in KNOBS]
    for chip, fast in zip(chips, fast_capacities(chips, model, SLO)):
        slow = capacity_at_slo(chip, model, SLO)
        assert (fast.tp, fast.batch) == (slow.tp, slow.batch)
        assert fast.tokens_per_s_per_chip == pytest.approx(slow.tokens_per_s_per_chip, rel=1e-12)
        assert fast.avg_power_w_per_chip == pytest.approx(slow.avg_power_w_per_chip, rel=1e-12)


def test_points_that_cannot_meet_the_slo_agree():
    base, model = load_chip("h100-sxm"), load_model("llama-3.1-70b")
    chips = [apply_knobs(base, {"memory.capacity_bytes": c}) for c in (8e9, 80e9)]
    tight = SLOSpec(ttft_s=2.0, tpot_s=0.05, input_tokens=1024, output_tokens=256)
    fast = fast_capacities(chips, model, tight)
    assert fast[0] is None  # 140 GB of weights on 8 x 8 GB: does not fit at any TP
    slow = capacity_at_slo(chips[1], model, tight)
    assert fast[1].tokens_per_s_per_chip == pytest.approx(slow.tokens_per_s_per_chip, rel=1e-12)


def test_moe_models_fall_back_to_the_slow_path():
    base, model = load_chip("h100-sxm"), load_model("qwen3-30b-a3b")
    chip = apply_knobs(base, {"memory.bandwidth_bytes_per_s": 3e12})
    [fast] = evaluate_points([chip], [{"memory.bandwidth_bytes_per_s": 3e12}], model, SLO)
    slow = evaluate_point(chip, {"memory.bandwidth_bytes_per_s": 3e12}, model, SLO)
    assert fast == slow
