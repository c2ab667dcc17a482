"""The step model's and layer coster's memos keep flat records (plain tuples the garbage collector stops tracking)
instead of slotted objects; a memo hit rebuilds the objects. These tests check that the rebuilt answers equal a
cold model's bit for bit, that the flat memo keys of different steps never meet, and that the memos hold nothing
the collector still tracks after two passes (what keeps `predict` loops free of full collections)."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.cost.result import OpCost, cost_record, revive_cost
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import StepModel, StepResult

# dense GQA, MLA, MoE, a chip with a CUDA-graph replay floor, pipelined
DEPLOYMENTS = [("llama-3.1-70b", "h100-sxm", 8, 1), ("deepseek-v3", "h200-sxm", 8, 1), ("qwen3-30b-a3b", "h100-sxm", 2, 1),
               ("llama-3.1-8b", "b200", 2, 2)]

_batches = st.builds(
    StepBatch,
    prefill=st.lists(st.tuples(st.integers(1, 8), st.integers(1, 3000), st.integers(0, 2000)).map(
        lambda g: (g[0], g[1], g[1] + g[2])), max_size=3).map(tuple),
    num_decode=st.integers(0, 64),
    decode_kv_len=st.floats(1.0, 30000.0),
).filter(lambda b: b.num_tokens > 0)


def _fields(r: StepResult) -> tuple:
    """Everything a StepResult says, with its breakdown rows as plain values."""
    rows = {k: (o.time_s, o.flops, o.bytes, o.roofline_s, o.source, o.onchip_bytes, o._bound_time, o.bound)
            for k, o in r.breakdown.items()}
    parts = [(p.time_s, p.roofline_s, p.busy_energy_j, p.rows) for p in r.parts]
    return r.time_s, r.roofline_s, r.energy_j, r.num_tokens, r.flops, r.bytes, rows, parts


def _cold(sm: StepModel) -> StepModel:
    return StepModel(sm.model, sm.system, sm.par, sm.prec)


@pytest.mark.property
@settings(max_examples=25, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), batches=st.lists(_batches, min_size=1, max_size=6))
def test_memo_hits_equal_a_cold_model(dep, batches):
    model, hw, tp, pp = dep
    warm = api.deployment(model, hw, tp=tp, pp=pp).step_model  # memos filled by every earlier example
    for batch in batches:
        first = warm.step(batch)
        again = warm.step(StepBatch(batch.prefill, batch.num_decode, batch.decode_kv_len))  # a memo hit
        cold = _cold(warm).step(batch)
        assert _fields(first) == _fields(again) == _fields(cold)
        assert warm.time_energy(batch) == _cold(warm).time_energy(batch)


@pytest.mark.unit
def test_flat_memo_keys_of_different_steps_differ():
    """Steps whose prefill groups flatten to overlapping numbers must not share a memo entry."""
    sm = _cold(api.deployment("llama-3.1-8b", "h100-sxm").step_model)
    batches = [StepBatch(((2, 64, 64),), 0, 0.0), StepBatch(((2, 64, 64), (1, 1, 1)), 0, 0.0),
               StepBatch(((1, 1, 1), (2, 64, 64)), 0, 0.0), StepBatch(((2, 64, 64),), 1, 64.0),
               StepBatch((), 2, 64.0), StepBatch((), 64, 64.0)]
    for b in batches:
        sm.step(b)
    assert len(sm._cache) == len(batches)
    for b in batches:
        assert _fields(sm.step(b)) == _fields(_cold(sm).step(b))


@pytest.mark.unit
def test_revived_cost_equals_the_original():
    cost = OpCost("mlp.down_proj", 2e-3, 8.9e11, 5.2e9, "memory", 1.5e-3, "fitted", 64.0)
    back = revive_cost(cost_record(cost))
    assert back == cost and back is not cost and type(back) is OpCost
    coster = _cold(api.deployment("llama-3.1-70b", "h100-sxm", tp=8).step_model).coster
    made = coster.gemm("qkv", 4096, 1280, 8192)
    assert coster.gemm("qkv", 4096, 1280, 8192) == made  # revived from the memo's record
    assert coster.collective("tp_all_reduce", "all_reduce", 8, 1e6) == coster.collective("tp_all_reduce", "all_reduce", 8, 1e6)


@pytest.mark.unit
def test_memos_hold_nothing_the_collector_tracks():
    """After a few predictions of new shapes and two collections, no memo key or value is tracked: memo growth does
    not grow the oldest generation (which is what triggers full collections)."""
    d = api.deployment("llama-3.1-70b", "h100-sxm", tp=8)
    sm = _cold(d.step_model)
    from tokenfab.execution.predict import estimate_static_batch
    for batch, inp, out in ((3, 700, 40), (17, 2500, 300), (200, 128, 2), (1, 8000, 512)):
        estimate_static_batch(sm, d.memory, batch, inp, out)
    gc.collect()
    gc.collect()
    memos = [sm._cache, sm._layers_cache, sm._head_cache, sm._core_cache, sm._decode_core_cache, sm._prefill_core_cache,
             sm._static_cache]
    for coster in (sm.coster, sm.graph_coster):
        memos += [coster._gemm_cache, coster._comm_cache, coster._elem_cache]
    entries = [x for memo in memos for item in memo.items() for x in item]
    assert len(entries) > 50
    assert [x for x in entries if gc.is_tracked(x)] == []
