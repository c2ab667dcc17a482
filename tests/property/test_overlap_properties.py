"""Invariants of two-batch overlap (execution.overlap) on random stage times, batches and layouts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenfab import api
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.overlap import LayerStages, layer_stages, split_two, tbo_makespan

pytestmark = pytest.mark.property

SECONDS = st.floats(0.0, 1e-2, allow_nan=False)
STAGES = st.builds(LayerStages, SECONDS, SECONDS, SECONDS, SECONDS, SECONDS)


@given(st.lists(st.tuples(STAGES, STAGES), min_size=1, max_size=8))
def test_makespan_lies_between_the_busier_resource_and_the_serial_sum(layers):
    compute = sum(a.compute_s + b.compute_s for a, b in layers)
    comm = sum(a.comm_s + b.comm_s for a, b in layers)
    span = tbo_makespan(layers)
    assert span >= max(compute, comm) * (1 - 1e-12)
    assert span <= (compute + comm) * (1 + 1e-12)


BATCHES = st.one_of(
    st.builds(lambda n, kv: StepBatch(num_decode=n, decode_kv_len=float(kv)), st.integers(2, 512), st.integers(1, 8192)),
    st.builds(lambda n, q: StepBatch(prefill=((n, q, q),)), st.integers(1, 16), st.integers(2, 4096)),
)


@given(BATCHES, st.sampled_from([2, 4, 8]), st.sampled_from(["normal", "low-latency"]))
def test_moe_layer_time_between_bounds_on_real_costs(batch, ep, dispatch):
    """Per MoE layer of a real deployment (attention-DP, tokens move): the overlapped layer is no faster than
    either resource's work over both halves, and no slower than all of it back to back."""
    sm = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, dp=ep, ep=ep, moe_dispatch=dispatch,
                        two_batch_overlap=True).step_model
    halves = split_two(batch)
    coster = sm.graph_coster if not batch.prefill else sm.coster
    a, b = (layer_stages(coster.layer_ops(sm.model.layers[0], h, with_core=True)) for h in halves)
    assert a.comm_s > 0 and b.comm_s > 0
    span = tbo_makespan([(a, b)])
    assert span >= max(a.compute_s + b.compute_s, a.comm_s + b.comm_s) * (1 - 1e-12)
    assert span <= (a.compute_s + b.compute_s + a.comm_s + b.comm_s) * (1 + 1e-12)


@given(BATCHES, st.sampled_from([(2, 2), (4, 2), (4, 4), (8, 8), (8, 2)]))
def test_no_token_movement_adds_no_comm(batch, tp_ep):
    """With dp = 1 every device holds every token: the halves exchange nothing, and the TBO step is the halves'
    compute run back to back (plus embedding and LM head), never an exchange."""
    tp, ep = tp_ep
    sm = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=tp, ep=ep, two_batch_overlap=True).step_model
    res = sm.step(batch)
    assert not {"moe.dispatch", "moe.combine"} & set(res.breakdown)
    assert res.time_s == pytest.approx(sum(p.time_s for p in res.parts), rel=1e-9)


@given(st.sampled_from([1, 2, 4, 8]), st.booleans())
def test_ep1_is_rejected(dp, tp_split):
    from tokenfab.errors import ParallelismError

    tp = 2 if tp_split else 1
    with pytest.raises(ParallelismError, match="needs expert parallelism"):
        api.deployment("qwen3-30b-a3b", "h100-sxm", tp=tp, dp=dp, ep=1, two_batch_overlap=True)


@given(BATCHES, st.sampled_from([2, 8]))
def test_overlapped_energy_between_idle_floor_and_serial_energy(batch, ep):
    """Overlap hides time, not work: the step's energy stays at or above the idle floor over its time and at or
    below its operators' energy run back to back."""
    sm = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, dp=ep, ep=ep, two_batch_overlap=True).step_model
    res = sm.step(batch)
    devices, wall = sm.par.num_devices, sm.power.to_wall
    assert res.energy_j >= wall(sm.power.idle_w * res.time_s * devices, res.time_s) * (1 - 1e-9)
    assert res.energy_j <= wall(sum(p.busy_energy_j for p in res.parts) * devices, res.time_s) * (1 + 1e-9)
