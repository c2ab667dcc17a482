"""One step model: every fast path the simulator uses is an exact memo of `StepModel.step`."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.execution.layers import StepBatch

DEPLOYMENTS = [("qwen3-1.7b", "l40s", 1, 1), ("llama-3.1-8b", "h100-sxm", 2, 1), ("llama-3.1-8b", "a100-sxm", 1, 2),
               ("llama-3.1-8b", "b200", 2, 2),  # a chip with a fitted CUDA-graph replay floor, pipelined
               ("llama-3.1-8b", "l40s", 1, 4),  # four stages: micro-batches of unequal decodes and prompts
               ("qwen3-30b-a3b", "h100-sxm", 2, 1)]

prefill_group = st.tuples(st.integers(1, 4), st.integers(1, 3000), st.integers(0, 4000)).map(lambda g: (g[0], g[1], g[1] + g[2]))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1e-30)


@pytest.mark.property
@settings(max_examples=60, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), prefill=st.lists(prefill_group, max_size=3).map(tuple),
       num_decode=st.integers(0, 300), kv=st.floats(1.0, 30000.0))
def test_fast_step_equals_step(dep, prefill, num_decode, kv):
    model, hw, tp, pp = dep
    sm = api.deployment(model, hw, tp=tp, pp=pp).step_model
    if not prefill and num_decode == 0:
        num_decode = 1
    batch = StepBatch(prefill, num_decode, kv if num_decode else 0.0)
    ref = sm.step(batch)
    t, e = sm.fast_step(prefill, num_decode, batch.decode_kv_len)
    assert _close(t, ref.time_s) and _close(e, ref.energy_j)
    t2, e2 = sm.time_energy(batch)
    assert _close(t2, ref.time_s) and _close(e2, ref.energy_j)


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), num_decode=st.integers(1, 300), kv=st.floats(1.0, 30000.0), run=st.integers(0, 4000))
def test_decode_pair_equals_step(dep, num_decode, kv, run):
    model, hw, tp, pp = dep
    sm = api.deployment(model, hw, tp=tp, pp=pp).step_model
    t0, e0, t1, e1 = sm.decode_pair(num_decode, kv, kv + run)
    first, last = sm.step(StepBatch((), num_decode, kv)), sm.step(StepBatch((), num_decode, kv + run))
    assert _close(t0, first.time_s) and _close(e0, first.energy_j)
    assert _close(t1, last.time_s) and _close(e1, last.energy_j)


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), prefill=st.lists(prefill_group, max_size=3).map(tuple),
       num_decode=st.integers(0, 300), kv=st.floats(1.0, 30000.0), run=st.integers(0, 4000))
def test_step_memos_of_the_simulator_equal_their_cold_evaluation(dep, prefill, num_decode, kv, run):
    """fast_step and decode_pair are memoised on the quantised context: a hit (here a context that quantises to
    the same value, looked up after the first) gives the bits the uncached evaluation gives."""
    from tokenfab.execution.step import quantise_context

    model, hw, tp, pp = dep
    sm = api.deployment(model, hw, tp=tp, pp=pp).step_model
    if not prefill and num_decode == 0:
        num_decode = 1
    kv_q = quantise_context(kv)
    near = kv_q + 0.25 if kv_q >= 256.0 else kv  # quantises to kv_q again
    first = sm.fast_step(prefill, num_decode, kv)
    assert sm.fast_step(prefill, num_decode, near) == first
    if pp == 1:
        assert first == sm._fast_step_cold(prefill, num_decode, kv_q if num_decode else 0.0)
    if num_decode:
        pair = sm.decode_pair(num_decode, kv, kv + run)
        assert sm.decode_pair(num_decode, near, kv + run) == pair
        if pp == 1:
            assert pair == sm._decode_pair_cold(num_decode, kv_q, quantise_context(kv + run))


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS + [("deepseek-v3", "h200-sxm", 8, 1), ("gpt-oss-20b", "h100-sxm", 1, 1)]), num_decode=st.integers(1, 300),
       kvs=st.lists(st.floats(1.0, 60000.0), min_size=1, max_size=6))
def test_vectorised_decode_times_equal_step(dep, num_decode, kvs):
    model, hw, tp, pp = dep
    sm = api.deployment(model, hw, tp=tp, pp=pp).step_model
    times, energies = sm.decode_times(num_decode, kvs)
    for kv, t, e in zip(kvs, times, energies):
        ref = sm.step(StepBatch((), num_decode, kv))
        assert abs(t - ref.time_s) <= 1e-9 * ref.time_s and abs(e - ref.energy_j) <= 1e-9 * ref.energy_j


def _sram_step_model():
    """A design whose weights and short contexts' KV stay in its 44 GB of on-chip memory (the wafer-scale class)."""
    from tokenfab.execution.config import ParallelConfig, PrecisionConfig
    from tokenfab.execution.step import StepModel
    from tokenfab.hardware.catalog import system_of_chip
    from tokenfab.workload.hf_config import load_model
    from testkit import make_chip

    chip = make_chip()
    bw = chip.memory.bandwidth_bytes_per_s
    chip = chip.model_copy(update={"onchip_sram_bytes": bw.model_copy(update={"value": 44e9}),
                                   "onchip_sram_bandwidth_bytes_per_s": bw.model_copy(update={"value": 20e12})})
    return StepModel(load_model("qwen3-8b"), system_of_chip(chip, 1), ParallelConfig(), PrecisionConfig(dtype="bf16"))


@pytest.mark.property
@settings(max_examples=25, deadline=None)
@given(num_decode=st.integers(1, 64), kvs=st.lists(st.floats(1.0, 200_000.0), min_size=1, max_size=6))
def test_vectorised_decode_times_equal_step_with_kv_on_chip(num_decode, kvs):
    """Contexts whose KV stays on chip and contexts whose KV does not, in one call (the on-chip check is taken on
    the shortest context, exact because holding more tokens never fits where fewer did not)."""
    sm = _sram_step_model()
    assert sm.coster.residency.weights_on_chip
    times, energies = sm.decode_times(num_decode, kvs)
    for kv, t, e in zip(kvs, times, energies):
        ref = sm.step(StepBatch((), num_decode, kv))
        assert abs(t - ref.time_s) <= 1e-9 * ref.time_s and abs(e - ref.energy_j) <= 1e-9 * ref.energy_j


@pytest.mark.property
@given(kvs=st.lists(st.floats(0.0, 1e7) | st.integers(0, 10**7), max_size=20))
def test_quantise_contexts_is_quantise_context(kvs):
    from tokenfab.execution.step import quantise_context, quantise_contexts

    assert quantise_contexts(kvs) == [quantise_context(float(k)) for k in kvs]


@pytest.mark.property
@given(kvs=st.lists(st.floats(0.0, 1e7) | st.integers(0, 10**7) | st.just(float("nan")), max_size=40),
       start=st.integers(0, 200_000), steps=st.integers(1, 600))
def test_quantise_context_array_is_quantise_contexts(kvs, start, steps):
    """The one-octave numpy rounding (predict's decode contexts) and the element loop give the same floats."""
    from tokenfab.execution.predict import decode_contexts
    from tokenfab.execution.step import quantise_context_array, quantise_contexts

    for arr in (np.array(kvs, dtype=float), decode_contexts(start, steps + 1)):
        got = quantise_context_array(arr)
        want = quantise_contexts(arr.tolist())
        assert got.dtype == np.float64 and [x.hex() for x in got.tolist()] == [float(x).hex() for x in want]
