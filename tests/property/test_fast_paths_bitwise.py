"""The rewritten hot paths of `predict` give the same bits as the general code they replace (issue 9 item 1:
a faster path only as an exact cache or vectorisation, tested equal). Each test compares with `==` on floats,
not within a tolerance: the goldens must not move."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.cost.attention import decode_attention_arrays
from tokenfab.execution.decode_arrays import DecodeCorePlan
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.predict import _breakdown_rows, decode_contexts
from tokenfab.execution.step import OpTotal, StepPart

# dense GQA, a sliding-window model, MLA (absorbed decode), MoE, a chip with a CUDA-graph replay floor, pipelined
DEPLOYMENTS = [("llama-3.1-70b", "h100-sxm", 8, 1), ("gpt-oss-20b", "h100-sxm", 1, 1), ("deepseek-v3", "h200-sxm", 8, 1),
               ("qwen3-30b-a3b", "h100-sxm", 2, 1), ("llama-3.1-8b", "b200", 2, 2), ("qwen3-8b", "l40s", 1, 1)]


def _reference_rows(totals: dict[str, OpTotal], phase: str, scale: float, peak: float, bw: float) -> list[dict]:
    """The rows as `predict` built them before: from the merged `StepResult.breakdown`."""
    rows = []
    for o in sorted(totals.values(), key=lambda r: -r.time_s):
        t = o.time_s * scale
        rows.append({"op": o.op, "phase": phase, "time_s": t, "bound": o.bound, "flops": o.flops * scale,
                     "bytes": o.bytes * scale, "mfu": o.flops * scale / (peak * t) if t > 0 else 0.0,
                     "mbu": o.bytes * scale / (bw * t) if t > 0 and o.bound != "network" else 0.0, "source": o.source})
    return rows


def _reference_aggregate(sm, pairs) -> tuple[dict[str, OpTotal], float, float, float]:
    """`StepModel._aggregate` as written before its inlining and its flat records: OpTotal.add and
    PowerModel.op_power_w, a dict of OpTotal rows and the sums."""
    totals: dict[str, OpTotal] = {}
    time_s = roof = busy = 0.0
    for cost, count in pairs:
        row = totals.get(cost.op)
        if row is None:
            row = totals[cost.op] = OpTotal(cost.op)
        row.add(cost, count)
        t = cost.time_s * count
        time_s += t
        roof += cost.roofline_s * count
        busy += sm.power.op_power_w(cost) * t
    return totals, time_s, roof, busy


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), seqs=st.integers(1, 64), q=st.integers(1, 4000), cached=st.integers(0, 3000),
       num_decode=st.integers(0, 200), kv=st.floats(1.0, 40000.0), scale=st.floats(0.5, 600.0))
def test_breakdown_rows_equal_merged_breakdown(dep, seqs, q, cached, num_decode, kv, scale):
    model, hw, tp, pp = dep
    sm = api.deployment(model, hw, tp=tp, pp=pp).step_model
    peak, bw = sm.cc.peak(sm.prec.dtype), sm.cc.bandwidth_bytes_per_s
    for batch in (StepBatch(((seqs, q, q + cached),), num_decode, kv if num_decode else 0.0),
                  StepBatch((), max(1, num_decode), kv)):
        result = sm.step(batch)
        assert _breakdown_rows(result, "decode", scale, peak, bw) == _reference_rows(result.breakdown, "decode", scale,
                                                                                      peak, bw)


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), seqs=st.integers(1, 64), q=st.integers(1, 8000), num_decode=st.integers(0, 256),
       kv=st.floats(1.0, 60000.0))
def test_aggregate_equals_optotal_add(dep, seqs, q, num_decode, kv):
    model, hw, tp, pp = dep
    sm = api.deployment(model, hw, tp=tp, pp=pp).step_model
    batch = StepBatch(((seqs, q, q),), num_decode, kv if num_decode else 0.0)
    pairs = [(cost, count) for group, count in sm._group_counts for cost in sm.coster.layer_ops(group, batch)]
    fast, (ref_totals, *ref_sums) = StepPart.of(sm._aggregate(pairs)), _reference_aggregate(sm, pairs)
    assert [fast.time_s, fast.roofline_s, fast.busy_energy_j] == ref_sums
    assert list(fast.totals) == list(ref_totals)
    for name, row in fast.totals.items():
        other = ref_totals[name]
        assert (row.time_s, row.flops, row.bytes, row.roofline_s, row.source, row.onchip_bytes, row._bound_time) == (
            other.time_s, other.flops, other.bytes, other.roofline_s, other.source, other.onchip_bytes, other._bound_time)


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(dep=st.sampled_from(DEPLOYMENTS), batch=st.integers(1, 512),
       kvs=st.lists(st.floats(1.0, 200_000.0), min_size=1, max_size=40))
def test_decode_core_plan_equals_decode_attention_arrays(dep, batch, kvs):
    model, hw, tp, pp = dep
    sm = api.deployment(model, hw, tp=tp, pp=pp).step_model
    kv = np.array(kvs)
    for group, _ in sm._group_counts:
        args = sm.graph_coster.decode_core_args(group.attention)
        if args is None:
            continue
        got = DecodeCorePlan.build(sm.graph_coster.cc, **args).arrays(batch, kv)
        want = decode_attention_arrays(sm.graph_coster.cc, batch, kv, **args)
        for a, b in zip(got, want):
            assert a.tobytes() == np.asarray(b, dtype=float).tobytes()


@pytest.mark.property
@given(input_len=st.integers(1, 1 << 20), output_len=st.integers(1, 1 << 17))
def test_decode_contexts_equal_linspace(input_len, output_len):
    steps = output_len - 1
    got = decode_contexts(input_len, output_len)
    if steps <= 0:
        assert len(got) == 0
    elif steps <= 33:
        assert got.tobytes() == (input_len + np.arange(1, steps + 1, dtype=float)).tobytes()
    else:
        assert got.tobytes() == np.linspace(input_len + 1, input_len + steps, 33).tobytes()
