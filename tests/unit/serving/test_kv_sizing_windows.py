"""How an engine sizes its KV pool for a sliding-window model: window-aware (vLLM, SGLang), or as if every layer were
full attention (TensorRT-LLM: kvCacheManager.cpp calculateMaxNumBlocks does not use the per-window shares)."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.hardware.catalog import load_chip
from tokenfab.serving.engines import engine_spec

pytestmark = pytest.mark.unit

# GPT-OSS-20B: 24 layers, half of them with a 128-token window; 8 KV heads of 64 at FP8 on B200.
_RUN = dict(model="gpt-oss-20b", hardware="b200", dtype="fp4", kv_dtype="fp8", offline=True, num_requests=4,
            input_len=1000, output_len=1000, max_num_seqs=64, max_batched_tokens=2048)


def _capacity(engine: str) -> tuple[int, object]:
    res = api.simulate(engine=engine, **_RUN)
    return res.config["kv_capacity_tokens"], res


def test_trtllm_pool_holds_the_tokens_of_an_all_full_attention_model():
    """TensorRT-LLM's pool: its free KV bytes over every layer's per-token cost (2 x 24 x 8 x 64 x 1 B = 24,576 B),
    the capacity `kv_capacity_tokens` gives without a context length (under the engine's own memory policy: 0.9 of
    what CUDA's total leaves), rounded down to whole 32-token blocks."""
    tokens, _ = _capacity("trtllm")
    policy = engine_spec("trtllm", load_chip("b200").device_memory_bytes).memory.memory_model_kwargs()
    d = api.deployment("gpt-oss-20b", "b200", None, 1, 1, dtype="fp4", kv_dtype="fp8", **policy)
    assert d.memory.kv_bytes_per_token == pytest.approx(2 * 24 * 8 * 64)
    full = d.memory.kv_capacity_tokens(2048, 64)
    assert tokens == full // 32 * 32


def test_a_window_aware_pool_holds_more_tokens_of_the_same_model():
    """At 2,000-token sequences the windowed layers hold 128 of them, so a window-aware pool holds about
    24 / (12 + 12 x 128 / 2000) = 1.88 x the tokens an all-full pool of the same bytes would."""
    d = api.deployment("gpt-oss-20b", "b200", None, 1, 1, dtype="fp4", kv_dtype="fp8", kv_free_memory_frac=0.9)
    aware, full = d.memory.kv_capacity_tokens(2048, 64, context_len=2000.0), d.memory.kv_capacity_tokens(2048, 64)
    assert aware / full == pytest.approx(24 / (12 + 12 * 128 / 2000), rel=1e-3)
