"""More on-chip memory never slows anything; a model that fits on chip is bound by its bandwidth."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab.cost.attention import estimate_decode_attention, estimate_prefill_attention
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.onchip import gemm_traffic_bytes
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import StepModel
from tokenfab.hardware.catalog import system_of_chip
from tokenfab.workload.hf_config import load_model
from testkit import make_chip, make_cost

pytestmark = pytest.mark.property

sram = st.floats(min_value=0.0, max_value=2e9)
dims = st.integers(min_value=1, max_value=16384)


def _chip(sram_bytes: float, sram_bw: float):
    chip = make_chip()  # a published capacity, 0 included (a chip without the field reads operands once)
    bw = chip.memory.bandwidth_bytes_per_s
    return chip.model_copy(update={"onchip_sram_bytes": bw.model_copy(update={"value": sram_bytes}),
                                   "onchip_sram_bandwidth_bytes_per_s": bw.model_copy(update={"value": sram_bw})})


@settings(max_examples=200, deadline=None)
@given(m=dims, n=dims, k=dims, s1=sram, s2=sram)
def test_more_sram_never_adds_gemm_traffic(m, n, k, s1, s2):
    lo, hi = sorted((s1, s2))
    assert gemm_traffic_bytes(m, n, k, 2.0, 1.0, 2.0, hi)[0] <= gemm_traffic_bytes(m, n, k, 2.0, 1.0, 2.0, lo)[0]


@settings(max_examples=80, deadline=None)
@given(m=dims, n=dims, k=dims, s1=sram, s2=sram, bw=st.floats(min_value=1e12, max_value=100e12),
       held=st.booleans())
def test_more_sram_never_slows_a_gemm(m, n, k, s1, s2, bw, held):
    lo, hi = sorted((s1, s2))
    t_lo = estimate_gemm(make_cost(_chip(lo, bw)), m, n, k, weights_on_chip=held and lo > 0).time_s
    t_hi = estimate_gemm(make_cost(_chip(hi, bw)), m, n, k, weights_on_chip=held and hi > 0).time_s
    assert t_hi <= t_lo * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(q=st.integers(1, 65536), heads=st.sampled_from([(32, 8), (64, 8), (16, 16), (8, 1)]), s1=sram, s2=sram)
def test_more_sram_never_slows_prefill_attention(q, heads, s1, s2):
    lo, hi = sorted((s1, s2))
    t = [estimate_prefill_attention(make_cost(_chip(s, 4e12)), 1, q, q, heads[0], heads[1], 128).time_s for s in (lo, hi)]
    assert t[1] <= t[0] * (1 + 1e-12)


@settings(max_examples=30, deadline=None)
@given(kv=st.floats(1, 131072), batch=st.integers(1, 256))
def test_kv_on_chip_never_slower(kv, batch):
    cc = make_cost(_chip(1e9, 4e12))
    held = estimate_decode_attention(cc, batch, kv, 32, 8, 128, kv_on_chip=True).time_s
    assert held <= estimate_decode_attention(cc, batch, kv, 32, 8, 128).time_s * (1 + 1e-12)


def _step_model(sram_bytes: float, sram_bw: float) -> StepModel:
    chip = _chip(sram_bytes, sram_bw)
    return StepModel(load_model("qwen3-8b"), system_of_chip(chip, 1), ParallelConfig(), PrecisionConfig(dtype="bf16"))


@settings(max_examples=15, deadline=None)
@given(s1=st.floats(0, 40e9), s2=st.floats(0, 40e9), decode=st.integers(1, 64), ctx=st.integers(16, 8192),
       prefill=st.integers(1, 4096))
def test_more_sram_never_slows_a_step(s1, s2, decode, ctx, prefill):
    lo, hi = sorted((s1, s2))
    batch = StepBatch(((1, prefill, prefill),), decode, float(ctx))
    t_lo, t_hi = (_step_model(s, 8e12).step(batch).time_s for s in (lo, hi))
    assert t_hi <= t_lo * (1 + 1e-9)


def test_model_that_fits_on_chip_is_bound_by_sram_not_dram():
    # A design with 44 GB of SRAM (the wafer-scale class) at 20 TB/s, 20x its 1 TB/s DRAM, 100 TFLOP/s.
    sm = _step_model(44e9, 20e12)
    assert sm.coster.residency.weights_on_chip
    result = sm.step(StepBatch((), 1, 1024.0))
    gemms = {name: row for name, row in result.breakdown.items() if name.endswith(("proj", "lm_head"))}
    assert gemms and all(row.bound in ("sram", "latency") for row in gemms.values())
    assert any(row.bound == "sram" for row in gemms.values())
    sram_s = sum(row.bytes + row.onchip_bytes for row in result.breakdown.values()) / 20e12
    assert result.time_s >= sram_s  # never faster than the SRAM can deliver
    streamed = _step_model(0.0, 20e12).step(StepBatch((), 1, 1024.0))
    # qwen3-8b in bf16 is > 15 GB: streamed from DRAM a decode step takes > 15 ms, held on chip < 1/4 of that
    assert streamed.time_s > 15e-3 and result.time_s < streamed.time_s / 4
    assert all(row.bound != "sram" for row in streamed.breakdown.values())
