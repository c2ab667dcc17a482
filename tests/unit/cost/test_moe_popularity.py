"""Skewed expert popularity ('zipf:S', cost.moe_popularity) against hand-computed loads, and the fitted model routing."""

from __future__ import annotations

import numpy as np
import pytest

from tokenfab.cost.moe import MoEShape, expert_load, parse_distribution
from tokenfab.cost.moe_popularity import pick_probabilities
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def test_pick_probabilities_are_k_times_the_popularity_share():
    """4 experts, top-2, S = 1: shares 1, 1/2, 1/3, 1/4 of 25/12, times 2: 0.96, 0.48, 0.32, 0.24 (sum 2)."""
    assert pick_probabilities(2, 4, 1.0) == pytest.approx([0.96, 0.48, 0.32, 0.24])


def test_an_expert_cannot_be_picked_twice_by_one_token():
    """3 experts, top-2, S = 2: the first would get 2 x 1/1.3611 = 1.47 > 1, so it is capped at 1 and the other
    two share the remaining pick 0.25 : 0.111 (0.6923, 0.3077)."""
    assert pick_probabilities(2, 3, 2.0) == pytest.approx([1.0, 0.25 / (0.25 + 1 / 9), (1 / 9) / (0.25 + 1 / 9)])


@pytest.mark.parametrize("tokens,ep", [(1, 1), (4, 4), (16, 1), (64, 5), (512, 8)])
def test_zero_skew_is_uniform_routing(tokens, ep):
    uni = expert_load(MoEShape(tokens, 64, 64, 8, 128, 1, ep, True, "uniform"))
    flat = expert_load(MoEShape(tokens, 64, 64, 8, 128, 1, ep, True, "zipf:0"))
    for a, b in zip((uni.rows, uni.active_experts, uni.tile_rows, uni.row_tiles),
                    (flat.rows, flat.active_experts, flat.tile_rows, flat.row_tiles)):
        assert b == pytest.approx(a, rel=1e-12)


def test_skewed_picks_collide_more():
    """One token per expert on average (128 tokens x top-1 over 128 experts): uniform reads 1 - (1 - 1/128)^128 =
    63.3% of the experts; with S = 1 the popular ones soak up the picks and fewer distinct experts are read."""
    uni = expert_load(MoEShape(128, 64, 64, 1, 128, distribution="uniform"))
    skew = expert_load(MoEShape(128, 64, 64, 1, 128, distribution="zipf:1"))
    assert uni.active_experts == pytest.approx(128 * (1 - (1 - 1 / 128) ** 128))
    assert skew.active_experts < uni.active_experts
    assert skew.rows == uni.rows == 128  # every pick is a row on one device


def test_zipf_exponents_outside_the_range_are_refused():
    assert parse_distribution("zipf:0.8") == ("zipf", 0.8)
    for bad in ("zipf:-1", "zipf:x", "zipf:9"):
        with pytest.raises(InvalidInputError, match="zipf exponent"):
            parse_distribution(bad)


def test_model_routing_reads_the_fitted_skew(tmp_path, monkeypatch):
    from tokenfab.execution import moe_routing

    monkeypatch.setattr(moe_routing, "DATA_PATH", tmp_path / "moe_routing.yaml")
    moe_routing.model_routing.cache_clear()
    try:
        assert moe_routing.model_routing() == "uniform"  # no fit: independent uniform picks
        (tmp_path / "moe_routing.yaml").write_text("zipf_skew: 0.8\n")
        moe_routing.model_routing.cache_clear()
        assert moe_routing.model_routing() == "zipf:0.8"
        (tmp_path / "moe_routing.yaml").write_text("zipf_skew: 0.0\n")
        moe_routing.model_routing.cache_clear()
        assert moe_routing.model_routing() == "uniform"
    finally:
        moe_routing.model_routing.cache_clear()


def test_model_routing_takes_a_family_s_own_skew_and_the_global_one_otherwise(tmp_path, monkeypatch):
    from tokenfab.execution import moe_routing

    path = tmp_path / "moe_routing.yaml"
    path.write_text("zipf_skew: 1.1\nfamilies:\n  deepseek_v3: {zipf_skew: 0.3}\n  qwen3_moe: {zipf_skew: 0}\n")
    monkeypatch.setattr(moe_routing, "DATA_PATH", path)
    moe_routing.model_routing.cache_clear()
    try:
        assert moe_routing.model_routing("deepseek_v3") == "zipf:0.3"
        assert moe_routing.model_routing("qwen3_moe") == "uniform"  # a family fitted to uniform routing
        assert moe_routing.model_routing("gpt_oss") == "zipf:1.1"  # not listed: the global skew
        assert moe_routing.model_routing() == "zipf:1.1"
        monkeypatch.setattr(moe_routing, "OVERRIDE", "zipf:0.6")  # the fit's workers, one skew of the grid
        assert moe_routing.model_routing("deepseek_v3") == "zipf:0.6"
    finally:
        moe_routing.model_routing.cache_clear()


def test_replication_gives_each_extra_slot_to_the_highest_load_per_replica():
    """Loads 6, 3, 1 over 5 slots: the 4th slot goes to expert 0 (6 > 3 > 1); then 6/2 = 3 ties expert 1's 3 and
    the lower index wins, so expert 0 gets the 5th too: replicas 3, 1, 1."""
    from tokenfab.cost.moe_popularity import replicate

    assert list(replicate(np.array([6.0, 3.0, 1.0]), 4)) == [2, 1, 1]
    assert list(replicate(np.array([6.0, 3.0, 1.0]), 5)) == [3, 1, 1]


def test_packing_puts_the_heaviest_slot_on_the_lightest_rank_with_room():
    """Slots 5 4 3 2 2 1 1 0 on 2 ranks of 4: 5->r0, 4->r1, 3->r1 (4 < 5), 2->r0 (5 < 7), 2->r0 (7 = 7, first),
    1->r1 (7 < 9), 1->r1 (8 < 9), 0->r0 (r1 full): both ranks carry 9."""
    from tokenfab.cost.moe_popularity import pack

    where = pack(np.array([5.0, 4.0, 3.0, 2.0, 2.0, 1.0, 1.0, 0.0]), 2)
    assert list(where) == [0, 1, 1, 0, 0, 1, 1, 0]


def test_redundant_slots_spread_the_popular_experts_picks():
    """DeepSeek-V3's 256 top-8 experts on EP32 at S = 1.1: rank 0 of the round-robin holds the most popular expert
    of every round and gets 4.4 x the mean rows of a rank (2,048 tokens x 8 / 32 = 512) plus the spread; with
    32 redundant slots placed by EPLB the busiest rank is within 15% of the mean, in 9 slots."""
    plain = expert_load(MoEShape(2048, 7168, 2048, 8, 256, 1, 32, True, "zipf:1.1"))
    eplb = expert_load(MoEShape(2048, 7168, 2048, 8, 256, 1, 32, True, "zipf:1.1", 32))
    assert plain.rows > 4 * 512
    assert 512 < eplb.rows < 1.15 * 512
    assert eplb.active_experts == pytest.approx(9.0, abs=1e-3)  # every slot gets rows at 2,048 tokens
    assert MoEShape(2048, 7168, 2048, 8, 256, 1, 32, True, "zipf:1.1", 32).local_experts == 9


def test_redundant_slots_need_load_routing_and_a_multiple_of_ep():
    with pytest.raises(InvalidInputError, match="valid redundant counts: 0, 32, 64"):
        MoEShape(64, 64, 64, 8, 256, 1, 32, True, "uniform", 16)
    with pytest.raises(InvalidInputError, match="uniform"):
        MoEShape(64, 64, 64, 8, 256, 1, 32, True, "balanced", 32)
