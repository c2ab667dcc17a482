"""`predict`'s fast paths give the bits of the code they replace (issue 9 item 1: a faster path only as an exact cache
or vectorisation, tested equal). Compared with `==` on floats: the goldens must not move."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.api.predict import speculative_model
from tokenfab.cost.result import OpCost
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import OpTotal, StepPart
from tokenfab.execution.predict import (
    _breakdown_rows, _speculative_rows, _trapezoid_means, decode_contexts, dominant_source, estimate_static_batch,
)

# dense GQA, a sliding-window model, MLA, MoE, attention-DP, a chip with a CUDA-graph replay floor, pipelined
DEPLOYMENTS = [("llama-3.1-70b", "h100-sxm", 8, 1, 1), ("gpt-oss-20b", "h100-sxm", 1, 1, 1),
               ("deepseek-v3", "h200-sxm", 8, 1, 1), ("qwen3-30b-a3b", "h100-sxm", 1, 1, 2),
               ("llama-3.1-8b", "b200", 2, 2, 1), ("qwen3-8b", "l40s", 1, 1, 1)]
SPECULATIVE = [("llama-3.1-8b", "h100-sxm", "eagle", 3, 0.7), ("deepseek-v3", "h200-sxm", "mtp", 1, None)]

_shapes = st.tuples(st.integers(1, 256), st.integers(1, 8192), st.integers(1, 512))


def _eager_rows(sm, batch: int, input_len: int, output_len: int, spec=None) -> list[dict]:
    """The breakdown rows as `estimate_static_batch` built them before they were made on demand."""
    per_replica = -(-batch // sm.par.dp)
    peak, bw = sm.cc.peak(sm.prec.dtype), sm.cc.bandwidth_bytes_per_s
    prefill = sm.step(StepBatch(prefill=((per_replica, input_len, input_len),)))
    rows = _breakdown_rows(prefill, "prefill", 1.0, peak, bw)
    contexts = decode_contexts(input_len, output_len)
    if len(contexts) and spec is None:
        decode_s = (output_len - 1) * _trapezoid_means(contexts, *sm.decode_times(per_replica, contexts))[0]
        mid = sm.step(StepBatch(num_decode=per_replica, decode_kv_len=float(contexts[len(contexts) // 2])))
        scale = decode_s / mid.time_s if mid.time_s > 0 else 0.0
        rows += _breakdown_rows(mid, "decode", scale, peak, bw)
    elif len(contexts):
        rows += _speculative_rows(sm, spec, per_replica, float(contexts[len(contexts) // 2]), output_len - 1, peak, bw)
    return rows


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), shape=_shapes, other=_shapes)
def test_breakdown_on_demand_equals_the_eager_rows(dep, shape, other):
    """Rows built on first access, after other predictions have filled the memos, are the rows built at once; so
    are the efficiency source read from them and the largest batch."""
    model, hw, tp, pp, dp = dep
    d = api.deployment(model, hw, tp=tp, pp=pp, dp=dp)
    sm = d.step_model
    batch, input_len, output_len = shape
    input_len = min(input_len, sm.model.max_position_embeddings - output_len)
    result = estimate_static_batch(sm, d.memory, batch, input_len, output_len)
    b, i, o = other
    estimate_static_batch(sm, d.memory, b, min(i, sm.model.max_position_embeddings - o), o).to_dict()
    want = _eager_rows(sm, batch, input_len, output_len)
    assert result.breakdown == want
    assert result.breakdown is result.breakdown  # built once
    assert result.efficiency_source == dominant_source(want, sm.provenance)
    assert result.max_batch_that_fits == d.memory.max_batch(input_len, output_len, dp)
    assert [{k: r[k] for k in want[0]} for r in result.to_dict()["breakdown"]] == want  # less the bands it adds


@pytest.mark.property
@settings(max_examples=10, deadline=None)
@given(case=st.sampled_from(SPECULATIVE), shape=_shapes)
def test_speculative_breakdown_on_demand_equals_the_eager_rows(case, shape):
    model, hw, method, tokens, acceptance = case
    d = api.deployment(model, hw, tp=8 if model == "deepseek-v3" else 1)
    sm = d.step_model
    spec = speculative_model(sm, method, tokens, acceptance, None)
    batch, input_len, output_len = shape
    result = estimate_static_batch(sm, d.memory, batch, input_len, output_len, spec)
    assert result.breakdown == _eager_rows(sm, batch, input_len, output_len, spec)


_costs = st.lists(st.tuples(
    st.builds(OpCost, op=st.sampled_from(["a", "b", "c"]), time_s=st.floats(0.0, 1.0), flops=st.floats(0.0, 1e12),
              bytes=st.floats(0.0, 1e10), bound=st.sampled_from(["compute", "memory", "network"]), roofline_s=st.just(0.0),
              source=st.sampled_from(["fitted", "generic", ""]), onchip_bytes=st.sampled_from([0.0, 1e6])),
    st.sampled_from([1.0, 0.5, 80.0])), max_size=12)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(pairs=_costs)
def test_aggregate_with_mixed_limits_equals_optotal_add(pairs):
    """The flat part record sums as OpTotal.add does, operators whose time has several limits included."""
    sm = api.deployment("llama-3.1-8b", "h100-sxm").step_model
    totals: dict[str, OpTotal] = {}
    time_s = roof = busy = 0.0
    for cost, count in pairs:
        totals.setdefault(cost.op, OpTotal(cost.op)).add(cost, count)
        t = cost.time_s * count
        time_s += t
        roof += cost.roofline_s * count
        busy += sm.power.op_power_w(cost) * t
    part = StepPart.of(sm._aggregate(pairs))
    assert [part.time_s, part.roofline_s, part.busy_energy_j] == [time_s, roof, busy]
    got = part.totals
    assert list(got) == list(totals)
    for name, row in got.items():
        want = totals[name]
        assert (row.time_s, row.flops, row.bytes, row.roofline_s, row.source, row.onchip_bytes, row._bound_time) == (
            want.time_s, want.flops, want.bytes, want.roofline_s, want.source, want.onchip_bytes, want._bound_time)
        assert list(row._bound_time) == list(want._bound_time)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(input_len=st.integers(1, 200_000), output_len=st.integers(2, 600), seed=st.integers(0, 2**32 - 1),
       as_list=st.booleans())
def test_trapezoid_means_equal_numpy_trapezoid(input_len, output_len, seed, as_list):
    """Both series' means in one 2-D pass are np.trapezoid's of each (lists: the speculative path's)."""
    contexts = decode_contexts(input_len, output_len)
    rng = np.random.default_rng(seed)
    times, energies = rng.uniform(1e-4, 1.0, len(contexts)), rng.uniform(1e-2, 1e4, len(contexts))
    span = contexts[-1] - contexts[0] if len(contexts) > 1 else 1.0
    want = ((float(times[0]), float(energies[0])) if len(contexts) == 1 else
            (float(np.trapezoid(times, contexts) / span), float(np.trapezoid(energies, contexts) / span)))
    args = (times.tolist(), energies.tolist()) if as_list else (times, energies)
    assert _trapezoid_means(contexts, *args) == want


@pytest.mark.unit
def test_a_pickled_result_carries_its_figures_not_the_step_model():
    import pickle

    result = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=3, input_len=700, output_len=90)
    copy = pickle.loads(pickle.dumps(result))
    assert copy.deferred is None
    assert copy.to_dict() == result.to_dict()
