"""Skewed expert popularity ('zipf:S', cost.moe_popularity) against hand-computed loads, and the fitted model routing."""

from __future__ import annotations

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
