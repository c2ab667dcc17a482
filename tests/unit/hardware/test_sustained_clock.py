"""`sustained_clock_hz`: a power-limited chip's rates are its stated peaks at the clock it holds under load. Spec
checks (it needs the boost clock it is a share of, and cannot exceed it) and what the cost model does with it:
compute-bound kernels slow by boost / sustained, memory-bound ones keep their time, chips without it keep theirs."""

import pytest

from tokenfab.cost.chip_cost import ChipCost, sustained_peaks
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.profile import resolve_profile
from tokenfab.hardware.catalog import load_chip
from tokenfab.hardware.spec import ChipSpec, Sourced

pytestmark = pytest.mark.unit


def _clock(hz: float) -> Sourced:
    return Sourced(value=hz, source="test", basis="assumption")


def _with(chip: ChipSpec, **update) -> ChipSpec:
    return ChipSpec.model_validate({**chip.model_dump(), **update})


def test_sustained_clock_needs_the_boost_clock_and_stays_below_it():
    sxm = load_chip("a100-sxm").model_dump()
    with pytest.raises(ValueError, match="needs clock_hz"):
        ChipSpec.model_validate({**sxm, "clock_hz": None, "sustained_clock_hz": _clock(1e9).model_dump()})
    with pytest.raises(ValueError, match="exceeds clock_hz"):
        ChipSpec.model_validate({**sxm, "sustained_clock_hz": _clock(1.5e9).model_dump()})


def test_rates_scale_by_sustained_over_boost():
    """1.41 GHz boost, 0.705 GHz sustained: every matrix rate and the vector rate are halved."""
    sxm = load_chip("a100-sxm")
    half = _with(sxm, sustained_clock_hz=_clock(0.705e9).model_dump())
    assert half.compute_clock_frac == 0.5
    assert sustained_peaks(half) == {d: p.value / 2 for d, p in sxm.peak_flop_per_s.items()}
    cc = ChipCost(half, resolve_profile(sxm))
    assert cc.peak("bf16") == 156e12 and cc.vector_flop_per_s == sxm.vector_flop_per_s.value / 2


def test_compute_bound_gemms_slow_memory_bound_ones_do_not():
    """Same fitted curves (the SXM module's) on both: a 8192^3 GEMM is compute-bound, so its time beyond the fixed
    cost doubles within the blend of the overlap exponent (>= 1.9x); a batch-1 GEMV streams its weights, so it
    keeps its time within 1%."""
    sxm = load_chip("a100-sxm")
    resolved = resolve_profile(sxm)
    base, half = ChipCost(sxm, resolved), ChipCost(_with(sxm, sustained_clock_hz=_clock(0.705e9).model_dump()), resolved)
    big = [estimate_gemm(cc, 8192, 8192, 8192) for cc in (base, half)]
    launch = resolved.gemm("bf16")[0].launch_s
    assert big[1].time_s - launch >= 1.9 * (big[0].time_s - launch)
    assert big[1].roofline_s == pytest.approx(2 * big[0].roofline_s)
    gemv = [estimate_gemm(cc, 1, 8192, 8192) for cc in (base, half)]
    assert gemv[1].time_s == pytest.approx(gemv[0].time_s, rel=0.01)


def test_chips_without_it_keep_their_stated_rates_bit_for_bit():
    for name in ("h100-sxm", "b200", "l40s", "rtx-pro-6000-server"):
        chip = load_chip(name)
        assert chip.sustained_clock_hz is None and chip.compute_clock_frac == 1.0
        assert sustained_peaks(chip) == {d: p.value for d, p in chip.peak_flop_per_s.items()}
