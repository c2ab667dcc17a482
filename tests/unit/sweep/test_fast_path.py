"""The batched sweep path gives the slow path's numbers: `capacity_at_slo`, i.e. plan's `capacity_on_chip`."""

from __future__ import annotations

import numpy as np
import pytest

from tokenfab.execution.step import StepModel
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.catalog import load_chip
from tokenfab.search.capacity import IterationTimes, steady_state
from tokenfab.search.plan_capacity import engine_on_chip
from tokenfab.sweep.capacity import capacity_at_slo
from tokenfab.sweep.evaluate import evaluate_point
from tokenfab.sweep.fast import _Plan, _tp_setup, evaluate_points, fast_capacities
from tokenfab.sweep.retime import _NotRecordable, _Points
from tokenfab.sweep.knobs import apply_knobs
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit

SLO = SLOSpec(ttft_s=2.0, tpot_s=0.05, input_tokens=1024, output_tokens=256)

KNOBS = [
    {},
    {"memory.bandwidth_bytes_per_s": 2e12, "onchip_sram_bytes": 1e6},
    {"peak_flop_per_s.bf16": 300e12, "scale_up.bandwidth_bytes_per_s": 50e9},
    {"onchip_sram_bytes": 20e9, "onchip_sram_bandwidth_bytes_per_s": 40e12},  # weights held on chip
    {"memory.capacity_bytes": 20e9, "num_compute_units": 60, "power.tdp_w": 400.0},  # vLLM's small-GPU limits
    {"memory.capacity_bytes": 10e9},  # the model needs TP to fit
    {"power.idle_w": 200.0, "memory.bandwidth_bytes_per_s": 6e12},  # idle draw moves the host-overhead energy
]


def _assert_same(fast, slow):
    assert (fast.tp, fast.batch) == (slow.tp, slow.batch)
    for name in ("tokens_per_s_per_chip", "avg_power_w_per_chip", "ttft_s", "tpot_s"):
        assert getattr(fast, name) == pytest.approx(getattr(slow, name), rel=1e-12), name


@pytest.mark.parametrize("model_name, slo", [
    ("llama-3.1-8b", SLO),
    ("qwen3-8b", SLOSpec(ttft_s=0.5, tpot_s=0.03, input_tokens=2048, output_tokens=128)),  # chunked prompts
])
def test_batched_capacities_equal_the_slow_path(model_name, slo):
    base, model = load_chip("h100-sxm"), load_model(model_name)
    chips = [apply_knobs(base, k) for k in KNOBS]
    for chip, fast in zip(chips, fast_capacities(chips, model, slo)):
        _assert_same(fast, capacity_at_slo(chip, model, slo))


def test_array_steady_state_is_each_chips_scalar_one():
    """The steady state on re-timed array step times is, element by element, the scalar one on each chip's own
    step model (the shapes it asks for do not depend on the chip): mixed, chunked and decode-only CUDA-graph-padded
    steps; a block of some of the points gives their elements of the whole."""
    base, model = load_chip("h100-sxm"), load_model("llama-3.1-8b")
    chips = [apply_knobs(base, k) for k in KNOBS[:5]]
    pts = _Points(chips)
    sm, kernels, residency = _tp_setup(pts, model, 1)
    limits = engine_on_chip(base, model, 1)[3]
    for batch, inp in ((7, 1024), (200, 1024), (60, 9000)):
        plan = _Plan(sm, kernels, limits, batch, inp, 256, 0.99)
        arrays = plan.state(pts, residency)
        assert isinstance(arrays.tpot_s, np.ndarray) and arrays.tpot_s.shape == (len(chips),)
        some = plan.state(pts.subset([1, 3]), (residency[0][[1, 3]], residency[1][[1, 3]], residency[2]))
        for i, chip in enumerate(chips):
            system, par, prec, _, _ = engine_on_chip(chip, model, 1)
            scalar = steady_state(IterationTimes(StepModel(model, system, par, prec), limits), batch, inp, 256,
                                  limits, 0.99)
            one = arrays.point(i)
            for name in ("tokens_per_s", "tpot_s", "ttft_s", "power_w", "iteration_std_s"):
                assert getattr(one, name) == pytest.approx(getattr(scalar, name), rel=1e-12), (batch, inp, i, name)
        assert some.point(1).tpot_s == arrays.point(3).tpot_s and some.point(0).power_w == arrays.point(1).power_w


def test_points_that_cannot_meet_the_slo_agree():
    base, model = load_chip("h100-sxm"), load_model("llama-3.1-70b")
    chips = [apply_knobs(base, {"memory.capacity_bytes": c}) for c in (8e9, 80e9)]
    fast = fast_capacities(chips, model, SLO)
    assert fast[0] is None  # 140 GB of weights on 8 x 8 GB: does not fit at any TP
    _assert_same(fast[1], capacity_at_slo(chips[1], model, SLO))


def test_moe_model_batched_equals_the_slow_path():
    """MoE layers are timed through the same recorded kernels (grouped GEMMs included), so they take the batched
    path too, with the slow path's numbers."""
    base, model = load_chip("h100-sxm"), load_model("qwen3-30b-a3b")
    chips = [apply_knobs(base, k) for k in ({"memory.bandwidth_bytes_per_s": 3e12}, {"peak_flop_per_s.bf16": 500e12})]
    for chip, fast in zip(chips, fast_capacities(chips, model, SLO)):
        _assert_same(fast, capacity_at_slo(chip, model, SLO))


def test_unrecordable_models_fall_back_to_the_slow_path(monkeypatch):
    import tokenfab.sweep.fast as fast_module

    def refuse(*args):
        raise _NotRecordable("an operator the recording does not cover")

    monkeypatch.setattr(fast_module, "fast_capacities", refuse)
    base, model = load_chip("h100-sxm"), load_model("llama-3.1-8b")
    knobs = {"memory.bandwidth_bytes_per_s": 3e12}
    [fast] = evaluate_points([apply_knobs(base, knobs)], [knobs], model, SLO)
    assert fast == evaluate_point(apply_knobs(base, knobs), knobs, model, SLO) and fast.tokens_per_s_per_chip > 0


def test_a_points_figures_do_not_depend_on_the_points_beside_it():
    """Bit for bit: re-timed operators are summed along each point's own row, so a point evaluated alone gives
    what it gives among others (what makes a sweep's result independent of how its points are split)."""
    base, model = load_chip("h100-sxm"), load_model("llama-3.1-8b")
    chips = [apply_knobs(base, k) for k in KNOBS]
    together = fast_capacities(chips, model, SLO, record_on=chips[0])
    alone = [fast_capacities([chip], model, SLO, record_on=chips[0])[0] for chip in chips]
    assert sum(c is not None for c in together) >= 5
    assert together == alone
