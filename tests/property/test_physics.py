"""Physical invariants of the cost and execution models, checked on random inputs."""

import pytest
from testkit import make_chip
from hypothesis import given
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.cost.attention import estimate_decode_attention, estimate_prefill_attention
from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.profile import resolve_profile
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.step import StepModel
from tokenfab.hardware.catalog import chip_names, load_chip, system_of_chip
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.property

CHIPS = [n for n in chip_names() if load_chip(n).supports("bf16")]
dims = st.integers(min_value=1, max_value=32768)


def _scaled_chip(base: str, *, flops: float = 1.0, bandwidth: float = 1.0):
    chip = load_chip(base)
    data = chip.model_dump()
    for v in data["peak_flop_per_s"].values():
        v["value"] *= flops
    data["memory"]["bandwidth_bytes_per_s"]["value"] *= bandwidth
    data["name"] = f"{base}-x"
    scaled = type(chip).model_validate(data)
    return ChipCost(scaled, resolve_profile(chip))  # same efficiency curves, other peaks


@given(st.sampled_from(CHIPS), dims, dims, dims, st.sampled_from(["bf16", "fp8", "int8"]), st.booleans())
def test_gemm_never_beats_the_roofline(name, m, n, k, dtype, warm):
    cc = ChipCost(load_chip(name), resolve_profile(load_chip(name)))
    c = estimate_gemm(cc, m, n, k, dtype, warm_cache=warm)
    peak = cc.peak(dtype if cc.supports(dtype) else "bf16")
    assert c.time_s >= c.roofline_s
    if not warm:
        assert c.time_s >= max(c.flops / peak, c.bytes / cc.bandwidth_bytes_per_s) * (1 - 1e-9)


@given(st.sampled_from(["h100-sxm", "mi300x", "ascend-910b"]), st.integers(1, 256), st.integers(1, 32768),
       st.sampled_from([(32, 8), (64, 8), (16, 1), (32, 32)]))
def test_attention_never_beats_the_roofline(name, batch, kv, heads):
    cc = ChipCost(load_chip(name), resolve_profile(load_chip(name)))
    h, kvh = heads
    for c in (estimate_decode_attention(cc, batch, kv, h, kvh, 128),
              estimate_prefill_attention(cc, min(batch, 8), min(kv, 8192), min(kv, 8192), h, kvh, 128)):
        assert c.time_s >= max(c.flops / cc.peak("bf16"), c.bytes / cc.bandwidth_bytes_per_s) * (1 - 1e-9)


@given(st.sampled_from(["h100-sxm", "l40s", "mi300x"]), dims, dims, dims, st.floats(1.0, 8.0), st.floats(1.0, 8.0))
def test_more_flops_or_bandwidth_is_never_slower(name, m, n, k, fx, bx):
    base = _scaled_chip(name)
    faster = _scaled_chip(name, flops=fx, bandwidth=bx)
    assert estimate_gemm(faster, m, n, k).time_s <= estimate_gemm(base, m, n, k).time_s * (1 + 1e-12)


@given(st.sampled_from(["llama-3.1-8b", "qwen3-30b-a3b", "mixtral-8x7b"]), st.integers(1, 128), st.integers(64, 8192))
def test_decode_step_monotone_in_batch_and_context(model, batch, context):
    sm = StepModel(load_model(model), system_of_chip(load_chip("h100-sxm"), 1), ParallelConfig(), PrecisionConfig())
    t = sm.step(StepBatch(num_decode=batch, decode_kv_len=context)).time_s
    assert sm.step(StepBatch(num_decode=batch + 1, decode_kv_len=context)).time_s >= t * (1 - 1e-9)
    assert sm.step(StepBatch(num_decode=batch, decode_kv_len=context * 2)).time_s >= t * (1 - 1e-9)


@given(st.integers(1, 64), st.integers(16, 4096))
def test_prefill_monotone_in_batch_and_length(batch, length):
    a = api.predict(model="qwen3-8b", hardware="h100-sxm", batch=batch, input_len=length, output_len=2)
    b = api.predict(model="qwen3-8b", hardware="h100-sxm", batch=batch + 1, input_len=length, output_len=2)
    c = api.predict(model="qwen3-8b", hardware="h100-sxm", batch=batch, input_len=length + 64, output_len=2)
    assert b.ttft_s >= a.ttft_s * (1 - 1e-9) and c.ttft_s >= a.ttft_s * (1 - 1e-9)


@given(st.sampled_from(["llama-3.1-70b", "qwen3-235b-a22b", "deepseek-v3", "mixtral-8x22b"]),
       st.sampled_from([1, 2, 4]), st.sampled_from(["bf16", "fp8"]))
def test_tp_never_increases_memory_per_device(model, tp, dtype):
    spec = load_model(model)
    prec = PrecisionConfig(dtype=dtype)
    small = MemoryModel(spec, system_of_chip(load_chip("h200-sxm"), tp), ParallelConfig(tp=tp), prec)
    big = MemoryModel(spec, system_of_chip(load_chip("h200-sxm"), 2 * tp), ParallelConfig(tp=2 * tp), prec)
    assert big.weights_bytes <= small.weights_bytes
    assert big.kv_bytes_per_token <= small.kv_bytes_per_token


def test_tiny_chip_fixture_has_no_fp4():
    assert not make_chip().supports("fp4")
