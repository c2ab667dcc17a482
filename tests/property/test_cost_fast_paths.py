"""The operator estimators' hot paths give the bits of the code they replace (issue 9 item 1: a faster path only as
an exact cache or rewrite, tested equal): the kernel formula with its helpers written out, the checked OpCost
constructor, and the per-chip memos of what a GEMM or streaming kernel looks up. Compared with `==` on floats."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab.cost.chip_cost import ChipCost, chip_cost
from tokenfab.cost.elementwise import estimate_elementwise
from tokenfab.cost.gemm import estimate_gemm, gemm_work
from tokenfab.cost.kernel import KernelParams, _ramped_bandwidth, kernel_time_s, occupancy
from tokenfab.cost.onchip import memory_time_s
from tokenfab.cost.result import OpCost, RooflineViolation, checked_cost
from tokenfab.hardware.catalog import load_chip

CHIPS = ["h100-sxm", "a100-sxm", "b200", "l40s", "hanguang-800"]
FORMATS = [("bf16", "bf16", ""), ("fp8", "fp8", ""), ("bf16", "int4", ""), ("fp8", "fp4", ""), ("int8", "int8", ""),
           ("fp32", "fp32", ""), ("fp4", "fp4", ""), ("fp8", "fp8", "block")]

_pos = st.floats(0.0, 1e15, allow_nan=False)
_params = st.builds(KernelParams, launch_s=st.floats(0.0, 1e-4), compute_eff=st.floats(0.01, 1.0),
                    memory_eff=st.floats(0.01, 1.0), overlap_exp=st.floats(1.0, 8.0),
                    half_occupancy_per_unit=st.floats(0.0, 10.0), cache_bw_factor=st.floats(1.0, 8.0),
                    cache_capacity_frac=st.floats(0.0, 1.0), cache_ramp_frac=st.sampled_from([0.0, 0.2]))


def _reference_kernel_time_s(flops, dram_bytes, peak, bandwidth, params, work_units, compute_units, cache_bytes=0.0,
                             onchip_bytes=0.0, onchip_bw=0.0):
    """`kernel_time_s` as written before its helpers were written out (memory_time_s, occupancy, max)."""
    bw = bandwidth
    if cache_bytes > 0.0 and params.cache_ramp_frac > 0.0:
        bw = float(_ramped_bandwidth(bw, dram_bytes, params.cache_capacity_frac * cache_bytes, params.cache_bw_factor,
                                     params.cache_ramp_frac))
    elif cache_bytes > 0.0 and dram_bytes <= params.cache_capacity_frac * cache_bytes:
        bw *= params.cache_bw_factor
    t_c = flops / peak
    t_m = memory_time_s(dram_bytes, onchip_bytes, bw, onchip_bw)
    roofline = max(t_c, t_m)
    u = occupancy(work_units, params.half_occupancy_per_unit * compute_units)
    a = t_c / (params.compute_eff * u) if t_c > 0 else 0.0
    b = t_m / params.memory_eff
    p = params.overlap_exp
    hi = max(a, b)
    if hi <= 0.0:
        return params.launch_s, 0.0
    return params.launch_s + hi * math.pow(math.pow(a / hi, p) + math.pow(b / hi, p), 1.0 / p), roofline


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(flops=_pos, dram=_pos, peak=st.floats(1e9, 1e16), bw=st.floats(1e9, 1e14), params=_params,
       work=st.floats(0.0, 1e6), units=st.floats(0.0, 1000.0), cache=st.sampled_from([0.0, 5e7]),
       onchip=st.sampled_from([0.0, 1e6, 1e10]), onchip_bw=st.floats(1e9, 1e15))
def test_kernel_time_equals_its_helpers(flops, dram, peak, bw, params, work, units, cache, onchip, onchip_bw):
    args = (flops, dram, peak, bw, params, work, units, cache, onchip, onchip_bw)
    try:
        want = _reference_kernel_time_s(*args)
    except ZeroDivisionError:  # no work units at all: both refuse alike
        with pytest.raises(ZeroDivisionError):
            kernel_time_s(*args)
        return
    got = kernel_time_s(*args)
    assert all(x == y or (x != x and y != y) for x, y in zip(got, want))  # NaN where both divide inf by inf


@pytest.mark.property
@given(time_s=st.floats(0.0, 1.0), roofline=st.floats(0.0, 1.0), flops=_pos, nbytes=_pos, onchip=_pos,
       bound=st.sampled_from(["compute", "memory", "sram", "network", "latency"]))
def test_checked_cost_equals_the_constructor(time_s, roofline, flops, nbytes, onchip, bound):
    args = ("op", time_s, flops, nbytes, bound, roofline, "fitted", onchip)
    try:
        want = OpCost(*args)
    except RooflineViolation:
        with pytest.raises(RooflineViolation):
            checked_cost(*args)
        return
    got = checked_cost(*args)
    assert type(got) is OpCost and got == want and hash(got) == hash(want)


@pytest.mark.unit
@pytest.mark.parametrize("chip", CHIPS)
def test_gemm_and_streaming_memos_equal_a_fresh_chip_cost(chip):
    """A chip cost whose curve memos are filled gives what one that never saw the formats gives, and the GEMM estimate
    uses the work `gemm_work` reports."""
    warm = chip_cost(load_chip(chip))
    for act, weight, variant in FORMATS:
        for m, n, k, on_chip in ((1, 4096, 4096, False), (300, 1024, 8192, True), (70_000, 28_672, 8192, False)):
            estimate_gemm(warm, m, n, k, act, weight, variant=variant, weights_on_chip=on_chip)
            fresh = ChipCost(warm.chip, warm.resolved)
            got = estimate_gemm(warm, m, n, k, act, weight, variant=variant, weights_on_chip=on_chip)
            assert got == estimate_gemm(fresh, m, n, k, act, weight, variant=variant, weights_on_chip=on_chip)
            w = gemm_work(fresh, m, n, k, act, weight, variant, on_chip)
            params, source = fresh.resolved.gemm(w.kind)
            assert got == fresh.run_kernel("gemm", w.flops, w.dram_bytes, w.peak, params, w.work_units, source, False,
                                           w.onchip_bytes, w.shape)
    for nbytes in (1e3, 1e9):
        estimate_elementwise(warm, "norm", nbytes)
        assert estimate_elementwise(warm, "norm", nbytes) == estimate_elementwise(ChipCost(warm.chip, warm.resolved),
                                                                                  "norm", nbytes)


@pytest.mark.property
@settings(max_examples=100, deadline=None)
@given(family=st.sampled_from(["gemm", "attention_prefill", "attention_decode", "collectives", "moe", "elementwise",
                               "unmeasured"]),
       source=st.sampled_from(["fitted", "inherited", "generic", "mixed", "analytic"]), level=st.floats(0.5, 0.99))
def test_remembered_op_bands_equal_the_quantiles(family, source, level):
    """`op_band`'s memo (per band table) answers what the table's quantiles give."""
    from tokenfab.cost.bands import Band, load_band_table, op_band

    table = load_band_table()
    try:
        q_lo, q_hi = table.residuals(family, source).conformal(level)
    except Exception as exc:  # no residuals for it: the memo must refuse alike
        with pytest.raises(type(exc)):
            op_band(family, source, level)
        return
    want = Band(math.exp(-q_hi), math.exp(-q_lo), level)
    assert op_band(family, source, level) == want
    assert op_band(family, source, level) == want  # the remembered one
