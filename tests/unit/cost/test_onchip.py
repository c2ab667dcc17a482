"""On-chip memory model (tokenfab.cost.onchip) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from tokenfab.cost.attention import estimate_decode_attention, prefill_attention_work
from tokenfab.cost.gemm import estimate_gemm, gemm_work
from tokenfab.cost.onchip import (
    MIN_TILE, OnChipMemory, gemm_operand_passes, gemm_traffic_bytes, memory_time_s, onchip_memory, plan_residency,
    prefill_kv_passes,
)
from tokenfab.hardware.catalog import load_chip
from testkit import make_chip, make_cost, sourced

pytestmark = pytest.mark.unit


def test_square_gemm_rereads_panels_that_do_not_fit():
    # 50 MB / k=8192 -> 6103.5 B of panel per unit k -> square side 6103.5 / 4 = 1525.9 -> ceil(8192/1525.9) = 6
    assert gemm_operand_passes(8192, 8192, 8192, 2.0, 2.0, 50e6) == (6, 6)


def test_decode_gemm_reads_weights_once_and_activations_twice():
    # m=1: tm=1; side 12207/4 = 3051.8; spare 12207 - 2 - 6103.5 = 6101.6 -> tn = 3051.8 + 3050.8 = 6102.5
    passes_a, passes_w = gemm_operand_passes(1, 8192, 4096, 2.0, 2.0, 50e6)
    assert (passes_a, passes_w) == (2, 1)


def test_no_onchip_memory_falls_back_to_one_tile():
    assert gemm_operand_passes(1024, 2048, 512, 2.0, 2.0, 0.0) == (2048 // MIN_TILE, 1024 // MIN_TILE)


def test_everything_fits_reads_each_operand_once():
    m, n, k = 256, 512, 1024
    dram, onchip = gemm_traffic_bytes(m, n, k, 2.0, 1.0, 2.0, 1e9)
    assert dram == m * k * 2.0 + k * n * 1.0 + m * n * 2.0 and onchip == 0.0


def test_weights_on_chip_leave_dram_only_activations():
    dram, onchip = gemm_traffic_bytes(4096, 4096, 4096, 2.0, 2.0, 2.0, 0.0, weights_on_chip=True)
    assert dram == 4096 * 4096 * 2.0 * 2 and onchip == 4096 * 4096 * 2.0


def test_prefill_kv_passes():
    assert prefill_kv_passes(10e6, 32, 8, 16, 50e6, 132) == 1  # fits: one read
    assert prefill_kv_passes(100e6, 32, 8, 16, 50e6, 10) == math.ceil(4 * 16 / 10)  # 64 readers, 10 at a time


def test_memory_time_uses_onchip_bandwidth_only_for_held_data():
    assert memory_time_s(1e9, 0.0, 1e12, 10e12) == pytest.approx(1e-3)
    assert memory_time_s(0.0, 1e9, 1e12, 10e12) == pytest.approx(1e-4)
    assert memory_time_s(1e9, 1e9, 1e12, 10e12) == pytest.approx(1e-3)


def test_bandwidth_assumption_is_stated():
    chip = make_chip(sram=64e6)
    assert onchip_memory(chip) == OnChipMemory(64e6, 1e12, "assumed-equal-to-dram", 64e6)
    unknown = onchip_memory(make_chip())  # no published capacity: operands read once, nothing held on chip
    assert unknown.reuse_capacity_bytes == math.inf and unknown.capacity_bytes == 0.0
    fast = chip.model_copy(update={"onchip_sram_bandwidth_bytes_per_s": chip.memory.bandwidth_bytes_per_s.model_copy(
        update={"value": 8e12})})
    assert onchip_memory(fast).bandwidth_basis == "sourced"
    assert onchip_memory(load_chip("hanguang-800")).capacity_bytes == 0.0  # its main memory already is the SRAM


def test_residency_plan():
    fast = OnChipMemory(1e9, 10e12, "sourced")
    plan = plan_residency(fast, 1e12, 0.6e9, 1e3)
    assert plan.weights_on_chip and plan.kv_budget_bytes == pytest.approx(0.4e9)
    assert plan.kv_on_chip(4e5) and not plan.kv_on_chip(4.1e5)
    assert not plan_residency(fast, 1e12, 1.1e9, 1e3).weights_on_chip
    slow = OnChipMemory(1e9, 0.5e12, "sourced")  # slower than DRAM: never worth holding data there
    assert not plan_residency(slow, 1e12, 0.1e9, 1e3).weights_on_chip


def _fast_sram_chip(sram_bytes: float, sram_bw: float = 20e12):
    chip = make_chip(sram=sram_bytes)
    return chip.model_copy(update={"onchip_sram_bandwidth_bytes_per_s": chip.memory.bandwidth_bytes_per_s.model_copy(
        update={"value": sram_bw})})


def test_gemm_with_weights_on_chip_is_bound_by_sram_bandwidth():
    cc = make_cost(_fast_sram_chip(1e9))
    held = estimate_gemm(cc, 1, 8192, 8192, weights_on_chip=True)
    streamed = estimate_gemm(cc, 1, 8192, 8192)
    assert held.bound == "sram" and streamed.bound == "memory"
    assert held.time_s == pytest.approx((8192 * 8192 * 2 + 8192 * 2 * 2) / 20e12, rel=1e-6)
    assert held.onchip_bytes == 8192 * 8192 * 2.0 and held.time_s < streamed.time_s


def test_decode_kv_on_chip():
    cc = make_cost(_fast_sram_chip(1e9))
    held = estimate_decode_attention(cc, 8, 4096, 32, 8, 128, kv_on_chip=True)
    streamed = estimate_decode_attention(cc, 8, 4096, 32, 8, 128)
    assert held.bound == "sram" and held.time_s < streamed.time_s
    assert held.bytes + held.onchip_bytes == pytest.approx(streamed.bytes)


def test_gpu_l2_leaves_small_gemms_and_prefill_attention_unchanged():
    cc = make_cost(make_chip(sram=50e6))
    w = gemm_work(cc, 16, 4096, 4096)
    assert w.dram_bytes == 16 * 4096 * 2 + 4096 * 4096 * 2 + 16 * 4096 * 2
    a = prefill_attention_work(cc, 1, 8192, 8192, 32, 8, 128)
    assert a.dram_bytes == 8192 * 32 * (128 * 2 + 128 * 2) + 2 * 8192 * 8 * 256 * 2
