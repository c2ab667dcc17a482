"""Pooled fused-MoE fit: the fixed cost is learned in a unit of each chip's own (its thousand cycles)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tokenfab.calibrate.fit import KernelSamples, predict_samples
from tokenfab.calibrate.moe_fit import fit_moe_kind, fit_pooled_moe, scaled_by_launch
from tokenfab.calibrate.profiles import table_upper
from tokenfab.cost.kernel import KernelParams
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def _chip_rows(gemm_launch_s: float, ratio: float, peak: float, bandwidth: float) -> KernelSamples:
    """Synthetic MoE rows of one chip whose kernel chain costs `ratio` x its GEMM fixed cost."""
    flops = np.geomspace(1e8, 1e13, 24)
    dram = np.geomspace(1e6, 4e9, 24)[::-1].copy()
    n = len(flops)
    s = KernelSamples(flops, dram, np.full(n, peak), np.full(n, bandwidth), np.full(n, 1e4), np.full(n, 100.0),
                      np.zeros(n), np.ones(n))
    truth = KernelParams(ratio * gemm_launch_s, 0.6, 0.8, 1.5, 0.0)
    return KernelSamples(*(getattr(s, f) for f in KernelSamples.__dataclass_fields__ if f != "time_s"),
                         predict_samples(truth.as_vector(), s))


def test_pooled_fit_recovers_the_fixed_cost_ratio_across_chips_with_different_launch_costs():
    # Two chips whose unit (a thousand cycles) is 3 us and 6 us, both running the MoE chain in 8 units (24 us and
    # 48 us): an absolute pooled fixed cost cannot fit both; the count in units does, exactly.
    a = _chip_rows(3e-6, 8.0, 1e15, 3e12)
    b = _chip_rows(6e-6, 8.0, 3e14, 2e12)
    params, quality, ratio, form = fit_pooled_moe([(a, 3e-6), (b, 6e-6)], table_upper("moe"))
    assert ratio == pytest.approx(8.0, rel=1e-3) and form == "columns"
    assert params.memory_eff == pytest.approx(0.8, rel=1e-3)  # the memory-bound rows pin it (compute trades with p)
    assert quality.mape < 1e-3


def test_scaling_keeps_relative_times_and_rejects_a_zero_launch():
    a = _chip_rows(3e-6, 8.0, 1e15, 3e12)
    scaled = scaled_by_launch(a, 3e-6)
    assert np.allclose(scaled.time_s * 3e-6, a.time_s)
    with pytest.raises(InvalidInputError, match="fixed cost"):
        scaled_by_launch(a, 0.0)


def test_the_work_unit_form_with_the_lower_training_loss_is_kept():
    # The same rows generated with few work units (an occupancy-starved kernel) and offered with either
    # count: the fit keeps the form the times were generated with, whichever argument slot it is in.
    a = _chip_rows(3e-6, 8.0, 1e15, 3e12)
    truth = KernelParams(24e-6, 0.6, 0.8, 1.5, 2.0)
    starved = dataclasses.replace(a, work_units=np.full(len(a), 50.0))
    starved = dataclasses.replace(starved, time_s=predict_samples(truth.as_vector(), starved))
    many = dataclasses.replace(starved, work_units=np.geomspace(50.0, 5e4, len(a)))
    assert fit_moe_kind({"columns": starved, "row-tiles": many}, table_upper("moe"))[2] == "columns"
    assert fit_moe_kind({"columns": many, "row-tiles": starved}, table_upper("moe"))[2] == "row-tiles"
    # a third form (TensorRT-LLM-gen's padded tile) wins when the times were generated with its work
    assert fit_moe_kind({"columns": many, "row-tiles": many, "tile-ladder": starved}, table_upper("moe"))[2] == "tile-ladder"


def test_pooled_fit_passes_each_form_of_every_chip_and_picks_the_generating_one():
    a, b = _chip_rows(3e-6, 8.0, 1e15, 3e12), _chip_rows(6e-6, 8.0, 3e14, 2e12)
    truth = KernelParams(8.0 * 3e-6, 0.6, 0.8, 1.5, 2.0)
    starved = [dataclasses.replace(s, work_units=np.full(len(s), 50.0)) for s in (a, b)]
    starved = [dataclasses.replace(s, time_s=predict_samples(dataclasses.replace(truth, launch_s=8.0 * g).as_vector(), s))
               for s, g in zip(starved, (3e-6, 6e-6))]
    many = [dataclasses.replace(s, work_units=np.geomspace(50.0, 5e4, len(s))) for s in starved]
    _, _, ratio, form = fit_pooled_moe([(many[0], 3e-6), (many[1], 6e-6)], table_upper("moe"), {"tile-ladder": starved})
    assert form == "tile-ladder" and ratio == pytest.approx(8.0, rel=1e-2)


def test_no_form_to_fit_is_refused():
    with pytest.raises(InvalidInputError, match="work form"):
        fit_moe_kind({}, table_upper("moe"))
