"""Speculative decoding in `simulate`: the same iteration model as `predict`, in the serving loop."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.hardware.catalog import load_chip
from tokenfab.serving.engines import DEFAULT_ENGINE, engine_spec

BASE = dict(model="llama-3.1-8b", hardware="h100-sxm", input_len=1024, output_len=128)


@pytest.mark.unit
@pytest.mark.parametrize("acceptance", [0.0, 0.6, 1.0])
def test_single_request_equals_predict(acceptance):
    spec = dict(spec_method="eagle", spec_tokens=3, spec_acceptance=acceptance)
    sim = api.simulate(**BASE, concurrency=1, num_requests=5, **spec).summary
    pred = api.predict(**BASE, batch=1, **spec)
    # simulate adds the default engine's host time once per iteration, i.e. per tau tokens (predict has no engine)
    oh = engine_spec(DEFAULT_ENGINE, load_chip("h100-sxm").device_memory_bytes).step_overhead_s
    tau = sum(acceptance ** i for i in range(4))
    assert sim["tpot_s"]["mean"] == pytest.approx(pred.tpot_s + oh / tau, rel=0.01)


@pytest.mark.unit
def test_zero_acceptance_never_helps_and_tpot_falls_with_acceptance():
    plain = api.simulate(**BASE, concurrency=16, num_requests=64).summary["tpot_s"]["mean"]
    tpots = [api.simulate(**BASE, concurrency=16, num_requests=64, spec_method="eagle", spec_tokens=3,
                          spec_acceptance=a).summary["tpot_s"]["mean"] for a in (0.0, 0.4, 0.8, 1.0)]
    assert tpots[0] >= plain
    assert all(a > b for a, b in zip(tpots, tpots[1:]))
    # full acceptance emits at most k + 1 tokens per verify step: never more than 4x fewer iterations
    assert tpots[-1] >= plain / 4


@pytest.mark.unit
def test_drafter_memory_comes_out_of_the_kv_pool():
    target = dict(BASE, model="llama-3.1-70b", hardware="h100-sxm", tp=4)
    plain = api.simulate(**target, rate=1.0, num_requests=3).config["kv_capacity_tokens"]
    spec = api.simulate(**target, rate=1.0, num_requests=3, spec_method="draft", spec_draft_model="llama-3.1-8b",
                        spec_tokens=2, spec_acceptance=0.5)
    assert spec.config["kv_capacity_tokens"] < plain


@pytest.mark.unit
@pytest.mark.parametrize("engine", ["trtllm", "sglang", "vllm"])
def test_shared_prefix_with_each_engines_block_size(engine):
    """Prefix hashes cover whole KV blocks whatever the engine's block size (TensorRT-LLM 32, SGLang 1, vLLM 16):
    every block comes back and every request completes once (the simulator checks conservation at the end)."""
    r = api.simulate(model="qwen3-1.7b", hardware="l40s", engine=engine, concurrency=32, warmup_requests=32,
                     num_requests=200, replicas=2, router="prefix-affinity", shared_prefix_tokens=1024,
                     input_len=1500, output_len=32)
    assert r.summary["completed"] == 200 and r.summary["prefix_cache_hit_rate"] > 0.5
