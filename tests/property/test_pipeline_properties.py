"""Physical invariants of pipeline parallelism: weights per device, the throughput bound, the division into
micro-batches, and one stage left as it was."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.pipeline import micro_batches, num_micro_batches
from tokenfab.hardware.catalog import load_system
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.property

prefill_group = st.tuples(st.integers(1, 9), st.integers(1, 3000), st.integers(0, 2000)).map(lambda g: (g[0], g[1], g[1] + g[2]))


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "qwen3-30b-a3b", "gemma-3-27b", "gpt-j-6b", "qwen3-next-80b-a3b"]),
       pp=st.integers(1, 16), more=st.integers(1, 16), dtype=st.sampled_from(["bf16", "fp8", "fp4"]))
def test_more_stages_never_raise_weights_per_device(model, pp, more, dtype):
    spec = load_model(model)
    system = load_system("b200", 8)
    prec = PrecisionConfig(dtype=dtype)
    fewer = MemoryModel(spec, system, ParallelConfig(pp=pp), prec)
    deeper = MemoryModel(spec, system, ParallelConfig(pp=pp + more), prec)
    assert deeper.weights_bytes <= fewer.weights_bytes
    assert deeper.kv_bytes_per_token <= fewer.kv_bytes_per_token  # each stage caches only its layers


DEPLOYMENTS = [("llama-3.1-8b", "h100-sxm", 1), ("llama-3.1-8b", "l40s", 2), ("qwen3-8b", "b200", 1)]


@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), pp=st.sampled_from([2, 4, 8]), prefill=st.lists(prefill_group, max_size=3).map(tuple),
       num_decode=st.integers(0, 600), kv=st.floats(16.0, 20000.0))
def test_pipelined_throughput_never_exceeds_pp_times_one_stage(dep, pp, prefill, num_decode, kv):
    """With up to pp micro-batches in flight, a step's tokens per second are at most pp times those of one device
    holding every layer and running the busiest micro-batch alone: each stage adds at most its own pass."""
    model, hw, tp = dep
    if not prefill and num_decode == 0:
        num_decode = 1
    batch = StepBatch(prefill, num_decode, kv if num_decode else 0.0)
    piped = api.deployment(model, hw, tp=tp, pp=pp).step_model
    one = api.deployment(model, hw, tp=tp, pp=1).step_model
    shapes = micro_batches(batch, num_micro_batches(pp, batch.num_sequences))
    busiest = max(one.step(mb).time_s for mb, _ in shapes)
    biggest = max(mb.num_tokens for mb, _ in shapes)
    step = piped.step(batch)
    assert batch.num_tokens / step.time_s <= pp * biggest / busiest * (1 + 1e-9)
    assert step.time_s >= busiest * (1 - 1e-9)  # one micro-batch's token still needs every layer


@settings(max_examples=60, deadline=None)
@given(prefill=st.lists(prefill_group, max_size=6).map(tuple), num_decode=st.integers(0, 3000),
       kv=st.floats(1.0, 50000.0), pp=st.integers(2, 16))
def test_micro_batches_conserve_the_work_and_balance_the_decodes(prefill, num_decode, kv, pp):
    if not prefill and num_decode == 0:
        num_decode = 1
    batch = StepBatch(prefill, num_decode, kv if num_decode else 0.0)
    micro = num_micro_batches(pp, batch.num_sequences)
    shapes = micro_batches(batch, micro)
    assert sum(n for _, n in shapes) == micro
    assert all(mb.num_sequences >= 1 for mb, _ in shapes)  # no empty micro-batch in flight
    assert sum(mb.num_sequences * n for mb, n in shapes) == batch.num_sequences
    assert sum(mb.prefill_tokens * n for mb, n in shapes) == batch.prefill_tokens
    for q, k in {(q, k) for _, q, k in prefill}:  # every prompt shape kept, sequence for sequence
        want = sum(n for n, q2, k2 in prefill if (q2, k2) == (q, k))
        assert sum(c * n for mb, c in shapes for n, q2, k2 in mb.prefill if (q2, k2) == (q, k)) == want
    decodes = [mb.num_decode for mb, _ in shapes]
    assert max(decodes) - min(decodes) <= 1
    # longest-first to the least loaded: no micro-batch holds more prompt tokens than the mean plus one prompt
    longest = max((q for _, q, _ in prefill), default=0)
    assert max(mb.prefill_tokens for mb, _ in shapes) <= batch.prefill_tokens / micro + longest


@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), prefill=st.lists(prefill_group, max_size=3).map(tuple),
       num_decode=st.integers(0, 400), kv=st.floats(1.0, 20000.0))
def test_one_stage_is_unchanged_by_the_pipeline_terms(dep, prefill, num_decode, kv):
    """pp = 1: the step is its one stage, its parts' times summed, busy throughout; no fill; the engines' limits
    stay theirs."""
    from tokenfab.serving.engines import engine_spec

    model, hw, tp = dep
    if not prefill and num_decode == 0:
        num_decode = 1
    batch = StepBatch(prefill, num_decode, kv if num_decode else 0.0)
    sm = api.deployment(model, hw, tp=tp, pp=1).step_model
    step = sm.step(batch)
    assert step.time_s == 0.0 + step.part_records[0][0] + step.part_records[1][0] + step.part_records[2][0]
    assert len(step.part_records) == 3  # no hop of activations
    busy = 0.0 + step.part_records[0][2] + step.part_records[1][2] + step.part_records[2][2]
    assert step.energy_j == sm.power.to_wall(busy * sm.par.num_devices, step.time_s)
    assert sm.pipeline_fill(batch) == (0.0, 0.0)
    for name in ("trtllm", "vllm", "sglang"):
        eng = engine_spec(name, 80e9, tp)
        assert eng.pipelined(1) is eng
