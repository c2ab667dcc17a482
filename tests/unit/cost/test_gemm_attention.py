"""Operator costs against hand-computed values on a tiny chip with known efficiencies."""

import pytest
from testkit import IDEAL, make_chip, make_cost

from tokenfab.cost.attention import estimate_decode_attention, estimate_prefill_attention
from tokenfab.cost.elementwise import estimate_elementwise
from tokenfab.cost.gemm import estimate_gemm, gemm_kind
from tokenfab.cost.kernel import KernelParams, kernel_time_s
from tokenfab.cost.result import OpCost, RooflineViolation
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def test_ideal_gemm_is_its_roofline(ideal_cost):
    # 100 TFLOP/s, 1 TB/s. m=n=k=4096 bf16: 137.4 GFLOP -> 1.374 ms; bytes 3 x 32 MiB = 100.7 MB -> 0.1 ms
    c = estimate_gemm(ideal_cost, 4096, 4096, 4096)
    flops = 2 * 4096**3
    assert c.flops == flops
    assert c.bytes == 3 * 4096 * 4096 * 2
    assert c.time_s == pytest.approx(flops / 100e12, rel=1e-3)
    assert c.bound == "compute"


def test_decode_gemm_is_memory_bound(ideal_cost):
    # m=1, n=k=8192 bf16 weights: 134 MB at 1 TB/s = 134 us; 134 MFLOP at 100 TF = 1.3 us
    c = estimate_gemm(ideal_cost, 1, 8192, 8192)
    assert c.bound == "memory"
    assert c.time_s == pytest.approx((8192 * 8192 * 2 + 8192 * 2 + 8192 * 2) / 1e12, rel=1e-3)


def test_no_overlap_adds_compute_and_memory():
    cc = make_cost(make_chip(sram=256e6), kernel=KernelParams(launch_s=2e-6, compute_eff=0.5, memory_eff=0.8,
                                                              overlap_exp=1.0, half_occupancy_per_unit=0.0))
    c = estimate_gemm(cc, 256, 1024, 1024)  # operands fit on chip: each read once
    flops, dram = 2 * 256 * 1024 * 1024, (256 * 1024 + 1024 * 1024 + 256 * 1024) * 2
    assert c.time_s == pytest.approx(2e-6 + flops / (100e12 * 0.5) + dram / (1e12 * 0.8), rel=1e-9)


def test_occupancy_slows_thin_gemms():
    k = KernelParams(launch_s=0.0, compute_eff=1.0, memory_eff=1.0, overlap_exp=20.0, half_occupancy_per_unit=1.0)
    cc = make_cost(kernel=k)  # 100 units: w_half = 100 tiles
    fat = estimate_gemm(cc, 8192, 12800, 4096)  # w = 128*12800/128^2 = 100 tiles -> u = 0.5
    assert fat.time_s == pytest.approx(2 * 8192 * 12800 * 4096 / 100e12 / 0.5, rel=0.02)


def test_weight_only_quantisation_runs_at_16_bit_rate_with_fewer_bytes(ideal_cost):
    assert gemm_kind(ideal_cost, "bf16", "int4") == ("w4a16", "bf16")
    assert gemm_kind(ideal_cost, "fp8", "fp8") == ("fp8", "fp8")
    int4 = estimate_gemm(ideal_cost, 1, 8192, 8192, "bf16", "int4")
    bf16 = estimate_gemm(ideal_cost, 1, 8192, 8192)
    assert int4.bytes < bf16.bytes / 3
    no_fp4 = make_cost(make_chip())  # the tiny chip has no fp4 rate: fp4 falls back to weight-only
    assert gemm_kind(no_fp4, "fp4", "fp4") == ("w4a16", "bf16")


def test_prefill_attention_flops_and_bytes(ideal_cost):
    # b=2, q=kv=1024, 8 heads, 2 kv heads, d=128: causal mean keys per query = 1024 - 1023/2 = 512.5
    c = estimate_prefill_attention(ideal_cost, 2, 1024, 1024, 8, 2, 128)
    assert c.flops == pytest.approx(2 * 2 * 8 * 1024 * 512.5 * 256)
    qo = 1024 * 8 * (128 * 2 + 128 * 2)
    kv_read = 1024 * 2 * 256 * 2
    kv_write = 1024 * 2 * 256 * 2
    assert c.bytes == pytest.approx(2 * (qo + kv_read + kv_write))


def test_decode_attention_reads_the_cache_once_per_kv_head(ideal_cost):
    c = estimate_decode_attention(ideal_cost, 4, 2048, 32, 8, 128)
    cache = 4 * 2048 * 8 * 256 * 2
    assert c.bytes == pytest.approx(cache + 4 * 32 * 256 * 2 + 4 * 8 * 256 * 2)
    assert c.bound == "memory"
    mla = estimate_decode_attention(ideal_cost, 4, 2048, 16, 1, 576, 512, latent_dim=576)
    assert mla.bytes == pytest.approx(4 * 2048 * 576 * 2 + 4 * 16 * (576 + 512) * 2 + 4 * (576 + 512) * 2)


def test_sliding_window_caps_decode_reads(ideal_cost):
    full = estimate_decode_attention(ideal_cost, 1, 100_000, 8, 8, 64)
    windowed = estimate_decode_attention(ideal_cost, 1, 100_000, 8, 8, 64, window=128)
    assert windowed.bytes < full.bytes / 500


def test_elementwise_is_bytes_over_bandwidth(ideal_cost):
    c = estimate_elementwise(ideal_cost, "norm", 1e9)
    assert c.time_s == pytest.approx(1e-3)


def test_roofline_violation_raises():
    with pytest.raises(RooflineViolation):
        OpCost("x", 1.0, 0, 0, "compute", 2.0, "analytic")


def test_kernel_params_are_bounded():
    with pytest.raises(InvalidInputError):
        KernelParams(0.0, 1.2, 1.0, 2.0, 0.0)
    with pytest.raises(InvalidInputError):
        KernelParams(-1.0, 1.0, 1.0, 2.0, 0.0)


def test_warm_cache_only_for_working_sets_that_fit():
    k = KernelParams(0.0, 1.0, 1.0, 20.0, 0.0, cache_bw_factor=4.0, cache_capacity_frac=0.5)
    small, roof = kernel_time_s(0.0, 10e6, 1e14, 1e12, k, 1.0, 100, cache_bytes=50e6)
    big, _ = kernel_time_s(0.0, 30e6, 1e14, 1e12, k, 1.0, 100, cache_bytes=50e6)
    assert small == pytest.approx(10e6 / 4e12) and roof == pytest.approx(small)
    assert big == pytest.approx(30e6 / 1e12)
    cold, _ = kernel_time_s(0.0, 10e6, 1e14, 1e12, k, 1.0, 100)
    assert cold == pytest.approx(10e6 / 1e12)
    assert IDEAL.cache_bw_factor == 1.0
