"""Invariants of the MoE cost and expert-parallel layouts, on random shapes and layouts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import make_cost

from tokenfab import api
from tokenfab.cost.gemm import gemm_work
from tokenfab.cost.moe import MoEShape, estimate_moe, expert_load, moe_work
from tokenfab.execution.config import ParallelConfig
from tokenfab.execution.layers import StepBatch

pytestmark = pytest.mark.property

DISTS = st.sampled_from(["balanced", "uniform", "power-law:1.2", "power-law:1.01"])


@given(st.integers(1, 4096), st.sampled_from([64, 256, 1024]), st.sampled_from([64, 128, 512]), st.booleans())
def test_one_expert_top1_does_the_work_of_a_dense_mlp(tokens, hidden, width, gated):
    """EP = 1 with a single expert every token picks is a dense MLP: same FLOPs, same weight bytes."""
    cc = make_cost()
    w = moe_work(cc, MoEShape(tokens, hidden, width, 1, 1, gated=gated))
    up = gemm_work(cc, tokens, (2 if gated else 1) * width, hidden)
    down = gemm_work(cc, tokens, hidden, width)
    assert w.flops == pytest.approx(up.flops + down.flops)
    dense_weights = ((2 if gated else 1) * width * hidden + width * hidden) * 2
    assert w.dram_bytes >= dense_weights


@given(st.sampled_from([1, 2, 4, 8]), st.integers(1, 512), st.sampled_from(["decode", "prefill"]))
def test_ep1_default_layout_is_the_dense_equivalent_one(tp, tokens, phase):
    """--ep 1 splits experts like dense layers (moe_tp = tp x dp): no token moves, same cost as saying so."""
    implicit = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=tp, ep=1).step_model
    explicit = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=tp, ep=1, moe_tp=tp).step_model
    batch = StepBatch(num_decode=tokens, decode_kv_len=512.0) if phase == "decode" else StepBatch(prefill=((1, tokens, tokens),))
    a, b = implicit.step(batch), explicit.step(batch)
    assert a.time_s == pytest.approx(b.time_s, rel=1e-12)
    assert not {"moe.dispatch", "moe.combine"} & set(a.breakdown)


@given(st.sampled_from([(1, 1), (2, 2), (1, 4), (2, 4), (4, 2), (8, 8), (2, 8), (1, 8)]), st.integers(1, 4096),
       st.sampled_from(["normal", "low-latency"]))
def test_no_all_to_all_bytes_when_no_token_moves(tp_ep, tokens, dispatch):
    """With dp = 1 every device already holds every token: dispatch and combine move nothing."""
    tp, ep = tp_ep
    if ep > tp:
        return
    d = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=tp, ep=ep, moe_dispatch=dispatch)
    coster, ffn = d.step_model.coster, d.step_model.model.layers[0].ffn
    assert coster.token_exchange(ffn, tokens) == (None, None)


@given(st.sampled_from([2, 4, 8]), st.sampled_from([1, 2, 4, 8]), st.integers(1, 4096))
def test_attention_dp_moves_tokens(dp, ep, tokens):
    if ep > dp:
        return
    d = api.deployment("qwen3-30b-a3b", "h100-sxm", tp=1, dp=dp, ep=ep)
    dispatch, combine = d.step_model.coster.token_exchange(d.step_model.model.layers[0].ffn, tokens)
    assert dispatch.bytes > 0 and combine.bytes > 0


@given(st.sampled_from(["qwen3-30b-a3b", "deepseek-v3", "mixtral-8x7b"]), st.sampled_from([1, 2, 4, 8]))
def test_more_ep_never_raises_expert_weight_memory(model, group):
    """Within one tp x dp group, trading MoE-TP for EP (ep dividing the experts) never adds weight bytes
    per device, and a wider EP group (more devices) holds fewer."""
    num_experts = api.deployment(model, "h100-sxm").step_model.model.layers[-1].ffn.num_experts
    eps = [e for e in (1, 2, 4, 8) if group % e == 0 and num_experts % e == 0]
    weights = [api.deployment(model, "h100-sxm", tp=1, dp=group, ep=e).memory.weights_bytes for e in eps]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(weights, weights[1:]))
    wide = [api.deployment(model, "h100-sxm", tp=1, dp=e, ep=e).memory.weights_bytes for e in (1, 2, 4, 8)
            if num_experts % e == 0]
    assert all(b < a for a, b in zip(wide, wide[1:]))


@given(st.integers(1, 16384), st.sampled_from([(64, 4), (128, 8), (256, 8), (8, 2)]), st.sampled_from([1, 2, 4, 8, 16]),
       DISTS)
def test_routed_rows_are_conserved_and_bounded(tokens, experts_topk, ep, dist):
    """The busiest rank gets at least its even share of the picks and never more than all of them;
    active experts never exceed the local slots or the rows."""
    experts, topk = experts_topk
    load = expert_load(MoEShape(tokens, 64, 64, topk, experts, ep=ep, distribution=dist))
    picks = tokens * topk
    assert load.rows <= picks * (1 + 1e-9)
    assert load.rows >= picks / ep * (1 - 1e-9) - 1.0
    assert load.active_experts <= min(-(-experts // ep), load.rows + 1e-9) + 1e-9


@given(st.integers(1, 8192), st.sampled_from([1, 2, 4, 8]), DISTS)
def test_fused_moe_never_beats_its_roofline(tokens, ep, dist):
    from tokenfab.cost.chip_cost import chip_cost
    from tokenfab.hardware.catalog import load_chip

    cc = chip_cost(load_chip("h100-sxm"))
    c = estimate_moe(cc, MoEShape(tokens, 2048, 768, 8, 128, ep=ep, distribution=dist), "bf16")
    assert c.time_s >= max(c.flops / cc.peak("bf16"), c.bytes / cc.bandwidth_bytes_per_s) * (1 - 1e-9)


def test_parallel_config_defaults_follow_the_layout_rule():
    assert ParallelConfig(tp=8).expert_tp == 8
    assert ParallelConfig(tp=1, dp=8, ep=8).expert_tp == 1
    assert ParallelConfig(tp=2, dp=4, ep=2).expert_tp == 4


@given(st.integers(1, 4096), st.sampled_from([(64, 4), (128, 4), (128, 8), (256, 8), (8, 2)]), st.sampled_from([1, 2, 8]))
def test_independent_routing_reads_no_more_experts_than_round_robin(tokens, experts_topk, ep):
    """The model routing (independent top-k picks, uniform or skewed) hits at most the experts round-robin hits on
    one device (picks collide), on any EP rank never more than its local experts or the step's picks, and at least
    one wherever a token is routed. (Under skew the costed rank holds the popular experts, so on EP it may receive
    more distinct experts than round-robin's even share: the bound per rank is the picks, not that share.)"""
    from tokenfab.execution.layers import MODEL_ROUTING

    experts, topk = experts_topk
    independent = expert_load(MoEShape(tokens, 512, 256, topk, experts, 1, ep, True, MODEL_ROUTING))
    round_robin = expert_load(MoEShape(tokens, 512, 256, topk, experts, 1, ep, True, "balanced"))
    local = -(-experts // ep)
    if ep == 1:
        assert independent.active_experts <= round_robin.active_experts + 1e-9
    assert independent.active_experts <= min(local, tokens * topk) + 1e-9
    assert independent.active_experts >= min(1.0, local) * (1.0 - (1.0 - topk / experts) ** tokens) - 1e-9


@given(st.integers(1, 2048), st.sampled_from([(64, 4), (128, 8), (256, 8), (8, 2)]), st.floats(0.0, 2.0),
       st.floats(0.0, 1.0))
def test_more_skewed_popularity_never_reads_more_experts_on_one_device(tokens, experts_topk, skew, more):
    """With all experts on one device, a more skewed popularity (larger Zipf exponent) concentrates the same picks on
    fewer experts: the expected distinct experts never grow, the rows stay tokens x top-k."""
    experts, topk = experts_topk
    lo = expert_load(MoEShape(tokens, 64, 64, topk, experts, 1, 1, True, f"zipf:{skew}"))
    hi = expert_load(MoEShape(tokens, 64, 64, topk, experts, 1, 1, True, f"zipf:{skew + more}"))
    assert hi.active_experts <= lo.active_experts + 1e-9
    assert lo.rows == pytest.approx(tokens * topk) and hi.rows == pytest.approx(tokens * topk)


@given(st.sampled_from([(64, 4), (128, 8), (256, 8), (160, 6)]), st.sampled_from([2, 4, 8, 16, 32]),
       st.integers(1, 4), st.floats(0.0, 2.0))
def test_eplb_placement_keeps_every_pick_and_fills_every_rank_alike(experts_topk, ep, rounds, skew):
    """EPLB's slots carry all k picks of a token between them (replicas split their expert's share), every expert
    has at least one slot, every rank holds (experts + redundant) / ep slots, and no rank's expected load falls
    below the mean (the costed, busiest rank carries at least k / ep picks per token)."""
    import numpy as np

    from tokenfab.cost.moe_popularity import eplb_placement, eplb_rank_probabilities, pick_probabilities

    experts, topk = experts_topk
    redundant = (-experts) % ep + ep * rounds
    slots = experts + redundant
    q = pick_probabilities(topk, experts, skew)
    slot_q, where = eplb_placement(q, slots, ep)
    assert slot_q.sum() == pytest.approx(topk)
    assert list(np.bincount(where, minlength=ep)) == [slots // ep] * ep
    busiest = eplb_rank_probabilities(topk, experts, skew, slots, ep)
    assert len(busiest) == slots // ep
    assert busiest.sum() >= topk / ep - 1e-9
    assert busiest.sum() == pytest.approx(np.bincount(where, weights=slot_q, minlength=ep).max())


@given(st.integers(1, 4096), st.sampled_from([(256, 8, 32), (128, 4, 8), (64, 4, 16)]), st.floats(0.0, 2.0))
def test_redundant_slots_never_leave_the_busiest_rank_more_rows_than_its_picks(tokens, shape, skew):
    """With EPLB the costed rank's rows lie between the even share of the picks and all picks, and it reads at most
    its slots' worth of experts."""
    experts, topk, ep = shape
    load = expert_load(MoEShape(tokens, 64, 64, topk, experts, 1, ep, True, f"zipf:{skew}", ep))
    assert tokens * topk / ep - 1e-6 <= load.rows <= tokens * topk + 1e-6
    assert load.active_experts <= (experts + ep) // ep + 1e-9
