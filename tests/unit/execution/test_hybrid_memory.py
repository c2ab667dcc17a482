"""KV memory of sliding-window, linear-attention and DSA layers, and their step costs."""

import pytest

from tokenfab import api
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.memory import MemoryModel
from tokenfab.hardware.catalog import load_system
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit


def _mem(name: str, tp: int = 1) -> MemoryModel:
    return MemoryModel(load_model(name), load_system("h100-sxm", tp), ParallelConfig(tp=tp), PrecisionConfig())


def test_sliding_window_layers_reserve_only_their_window():
    mem = _mem("gemma-3-27b")
    full_layer = 16 * (128 + 128) * 2  # bytes per token of one layer: 16 kv heads x (k + v) x bf16
    assert mem.kv_growing_bytes_per_token == 10 * full_layer  # only the 10 global layers grow with the context
    # 4 sequences of 8192 tokens: global layers hold 8192 tokens, local layers 1024
    assert mem.kv_bytes(8192, 4) == 4 * (8192 * 10 + 1024 * 52) * full_layer
    # below the window every layer holds the whole context
    assert mem.kv_bytes(512, 1) == 512 * 62 * full_layer
    assert mem.kv_bytes_per_token_at(1e6) == pytest.approx(mem.kv_growing_bytes_per_token, rel=0.01)
    assert mem.kv_bytes_per_token == 62 * full_layer  # a pool that does not evict outside the window


def test_gpt_oss_windowed_kv_halves_at_long_context():
    mem = _mem("gpt-oss-20b")
    assert mem.kv_bytes(65536, 1) < 0.52 * mem.kv_bytes_per_token * 65536
    assert mem.kv_capacity_tokens(context_len=65536) > 1.9 * mem.kv_capacity_tokens()


def test_linear_attention_keeps_a_state_not_a_cache():
    mem = _mem("qwen3-next-80b-a3b", tp=4)
    # 12 full-attention layers x 2 kv heads (replicated: 1 per device at tp 4) x (256 + 256) x 2 bytes
    assert mem.kv_growing_bytes_per_token == mem.kv_bytes_per_token == 12 * 1 * 512 * 2
    state = 36 * (32 * 128 * 128 * 4.0 + 3 * (2 * 16 * 128 + 32 * 128) * 2.0) / 4
    assert mem.state_bytes_per_sequence == pytest.approx(state)
    assert mem.kv_bytes(1000, 2) == pytest.approx(2 * (1000 * mem.kv_growing_bytes_per_token + state))


def test_linear_decode_cost_does_not_grow_with_context_and_dsa_core_is_capped():

    lin = api.step("qwen3-next-80b-a3b", "h100-sxm", tp=4, batch=8, context_len=1000).to_dict()
    lin_long = api.step("qwen3-next-80b-a3b", "h100-sxm", tp=4, batch=8, context_len=100000).to_dict()
    assert lin["breakdown"]["attn.core"]["time_s"] > 0
    # only the 12 full layers grow with the context: far less than 100x
    assert lin_long["breakdown"]["attn.core"]["time_s"] < 20 * lin["breakdown"]["attn.core"]["time_s"]
    v3 = api.step("deepseek-v3", "h200-sxm", tp=8, dtype="fp8", batch=8, context_len=100000).to_dict()["breakdown"]
    v32 = api.step("deepseek-v3.2-exp", "h200-sxm", tp=8, dtype="fp8", batch=8, context_len=100000).to_dict()["breakdown"]
    # 2048 of 100000 tokens attended: 2% of the work, plus the per-layer kernel launches
    assert v32["attn.core"]["time_s"] < 0.2 * v3["attn.core"]["time_s"]
    assert "attn.indexer" in v32 and "attn.indexer" not in v3


def test_every_new_family_predicts():
    for model, hw, tp in [("glm-4.5-air", "h100-sxm", 4), ("minimax-m2", "h200-sxm", 4), ("gemma-3-27b", "h100-sxm", 1),
                          ("baichuan2-13b", "l40s", 1), ("qwen3.5-397b-a17b", "h200-sxm", 8), ("glm-4.5", "h200-sxm", 8)]:
        r = api.predict(model=model, hardware=hw, tp=tp, batch=4, input_len=2048, output_len=64)
        assert r.ttft_s > 0 and r.tpot_s > 0 and r.memory.kv_cache_bytes > 0


@pytest.mark.parametrize("model, hw, tp", [("qwen3-next-80b-a3b", "h100-sxm", 4), ("deepseek-v3.2-exp", "h200-sxm", 8),
                                           ("gemma-3-27b", "h100-sxm", 1)])
def test_vectorised_decode_equals_step_for_hybrid_layers(model, hw, tp):
    from tokenfab.api.deployment import deployment
    from tokenfab.execution.layers import StepBatch
    sm = deployment(model, hw, None, tp).step_model
    contexts = [300.0, 5000.0, 70000.0]
    times, energies = sm.decode_times(6, contexts)
    for c, t, e in zip(contexts, times, energies):
        step = sm.step(StepBatch(num_decode=6, decode_kv_len=c))
        assert t == pytest.approx(step.time_s, rel=1e-9) and e == pytest.approx(step.energy_j, rel=1e-9)
