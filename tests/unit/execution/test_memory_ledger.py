"""The memory ledger: device-reported capacity, each engine's KV policy, and published engine logs."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.hardware.catalog import load_chip

MIB = 2**20


@pytest.mark.unit
def test_h100_reports_81559_mib():
    assert load_chip("h100-sxm").device_memory_bytes == 81559 * MIB


@pytest.mark.unit
@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_ledger_adds_up_to_capacity(engine):
    r = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", engine=engine, rate=1.0, num_requests=3,
                     input_len=64, output_len=4)
    led = r.config["memory_bytes"]
    parts = led["weights"] + led["activations"] + led["kv_cache"] + led["unused"]
    assert parts == pytest.approx(led["capacity"], rel=1e-9)
    assert r.config["kv_capacity_tokens"] * api.deployment("llama-3.1-8b", "h100-sxm").memory.kv_bytes_per_token <= led["kv_cache"] + 1


@pytest.mark.unit
def test_sglang_kv_pool_hand_computed():
    """SGLang: weights + KV pool = mem_fraction_static x device memory, so the pool is 0.88 x 85.52 GB - weights."""
    d = api.deployment("llama-3.1-8b", "h100-sxm", static_memory_frac=0.88)
    expected = (0.88 * 81559 * MIB - d.memory.weights_bytes) / d.memory.kv_bytes_per_token
    assert d.memory.kv_capacity_tokens() == int(expected)


@pytest.mark.unit
def test_sglang_published_log_qwen3_235b_fp8_tp4_h100():
    """github.com/vllm-project/vllm/issues/21348: SGLang, Qwen3-235B-A22B-FP8, 4 x H100, --mem-fraction-static 0.93,
    logged 'KV Cache is allocated. #tokens: 367404'. The ledger has no term for the CUDA context, NCCL and cuBLAS
    buffers SGLang holds before sizing the pool (about 2.7 GB here), so it over-counts by about 15%."""
    r = api.simulate(model="qwen3-235b-a22b", hardware="h100-sxm", tp=4, dtype="fp8", engine="sglang",
                     static_memory_frac=0.93, rate=1.0, num_requests=2, input_len=64, output_len=2)
    assert r.config["kv_capacity_tokens"] == pytest.approx(367_404, rel=0.20)
