"""TensorRT-LLM-gen's token tile (padded expert rows) and stored expert-weight bytes, against hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import pytest

from testkit import make_cost

from tokenfab.cost.moe import GEN_TILE_LADDER, MOE_FORMS, MoEShape, expert_load, gen_tile_tokens, moe_work

pytestmark = pytest.mark.unit


def test_gen_tile_is_the_power_of_two_at_or_above_rows_per_local_expert_clamped_to_the_ladder():
    # tokens x top-k / local experts, as if every pick were local (the launcher's computeSelectedTileN)
    assert gen_tile_tokens(1024, 6, 32) == 256  # 192 -> 256
    assert gen_tile_tokens(256, 6, 32) == 64  # 48 -> 64
    assert gen_tile_tokens(64, 6, 32) == 16  # 12 -> 16
    assert gen_tile_tokens(32, 1, 1) == 32  # a power of two stays
    assert gen_tile_tokens(1, 6, 256) == GEN_TILE_LADDER[0]  # 0.02 rows -> the smallest tile, 8
    assert gen_tile_tokens(16384, 6, 128) == GEN_TILE_LADDER[-1]  # 768 -> the largest, 256


def test_tile_ladder_pads_every_active_expert_to_whole_tiles():
    cc = make_cost()
    # 1024 tokens x top-6 over 256 experts on EP 8: 32 local experts with 24 rows each; the tile is 256
    # (1024 x 6 / 32 = 192 -> 256), so each expert computes one 256-row tile: 32 x 256 rows, not 32 x 24.
    shape = MoEShape(1024, 64, 128, 6, 256, ep=8)
    h, width = 64, 128
    plain = moe_work(cc, shape, "bf16")
    padded = moe_work(cc, shape, "bf16", tile_ladder=True)
    assert plain.flops == pytest.approx(2 * 32 * 24 * h * (2 * width + width))
    assert padded.flops == pytest.approx(2 * 32 * 256 * h * (2 * width + width))
    # one CTA per token tile and 128-wide column block of the up projection (2 x 128 = 256 -> 2 blocks)
    assert padded.work_units == pytest.approx(32 * 1 * 2)
    # the padding is compute only: the same weights and token traffic
    assert padded.dram_bytes == pytest.approx(plain.dram_bytes)


def test_with_ep_four_times_the_tokens_can_cost_the_same_padded_compute():
    # The mechanism behind B200's flat 1,024 -> 4,096-token times at EP 8: rows per expert 24 and 96 both fit
    # in the one 256-row tile each expert computes.
    cc = make_cost()
    small, big = (moe_work(cc, MoEShape(t, 64, 128, 6, 256, ep=8), "bf16", tile_ladder=True) for t in (1024, 4096))
    assert small.flops == pytest.approx(big.flops)
    # without EP the tile follows the real rows: 4x the tokens, 4x the padded compute
    one, four = (moe_work(cc, MoEShape(t, 64, 128, 6, 256), "bf16", tile_ladder=True) for t in (1024, 4096))
    assert four.flops == pytest.approx(4 * one.flops)


def test_ladder_rows_never_undercount_the_real_rows_under_any_distribution():
    for dist in ("balanced", "uniform", "power-law:1.2", "zipf:1.1"):
        load = expert_load(MoEShape(300, 64, 128, 4, 64, ep=4, distribution=dist))
        t = gen_tile_tokens(300, 4, 16)
        assert load.ladder_rows >= load.rows * (1 - 1e-9) - 1e-9, dist
        assert load.ladder_rows <= load.rows + t * math.ceil(load.active_experts) + 1e-9, dist


def test_expert_weights_count_their_block_scales():
    cc = make_cost()
    shape = MoEShape(64, 64, 128, 2, 8)
    elements = 8 * (64 * 256 + 128 * 64)  # all 8 experts active, gated up 2 x 128 plus down
    bf16 = moe_work(cc, shape, "bf16")
    mx = moe_work(cc, shape, "bf16", "fp4", weight_bytes_per_element=4.25 / 8)
    nv = moe_work(cc, shape, "bf16", "fp4")  # no format named: fp4's default, NVFP4 (4 + 8/16 bits)
    plain = moe_work(cc, shape, "bf16", "fp4", weight_bytes_per_element=0.5)
    assert mx.dram_bytes - plain.dram_bytes == pytest.approx(elements * 0.25 / 8)
    assert nv.dram_bytes - plain.dram_bytes == pytest.approx(elements * 0.5 / 8)
    assert bf16.dram_bytes - plain.dram_bytes == pytest.approx(elements * 1.5)


def test_resolved_form_follows_the_profile_lists():
    from tokenfab.cost.kernel import KernelParams
    from tokenfab.cost.profile import EfficiencyProfile, ResolvedProfile

    gemm = KernelParams(launch_s=4e-6, compute_eff=0.8, memory_eff=0.8, overlap_exp=2.0, half_occupancy_per_unit=0.1)
    moe = KernelParams(launch_s=30e-6, compute_eff=0.5, memory_eff=0.7, overlap_exp=1.0, half_occupancy_per_unit=0.0)
    own = EfficiencyProfile("chip", "", 100.0, 1e15, {"bf16": gemm, "fp8": gemm, "fp4": gemm}, {}, {}, None,
                            moe={"w4a8": moe, "bf16": moe}, moe_row_tiles=frozenset({"bf16"}),
                            moe_tile_ladder=frozenset({"w4a8"}))
    resolved = ResolvedProfile(own, own, "fitted", 100.0, "")
    assert resolved.moe_form("w4a8") == "tile-ladder" and not resolved.moe_row_tiles("w4a8")
    assert resolved.moe_form("fp4") == "tile-ladder"  # resolves to the chip's nearest fit, w4a8
    assert resolved.moe_form("bf16") == "row-tiles" and resolved.moe_row_tiles("bf16")
    plain = ResolvedProfile(dataclasses.replace(own, moe_row_tiles=frozenset(), moe_tile_ladder=frozenset()), own,
                            "fitted", 100.0, "")
    assert plain.moe_form("bf16") == "columns" and set(MOE_FORMS) == {"columns", "row-tiles", "tile-ladder"}


def test_ladder_rows_count_the_padding_with_redundant_expert_slots_too():
    # EPLB's placement (64 experts + 4 redundant slots over EP 4: 17 slots per rank) pads the same way
    shape = MoEShape(300, 64, 128, 4, 64, ep=4, distribution="zipf:1.1", num_redundant_experts=4)
    load = expert_load(shape)
    t = gen_tile_tokens(300, 4, 17)
    assert t == 128  # 300 x 4 / 17 = 70.6 -> 128
    assert load.rows * (1 - 1e-9) <= load.ladder_rows <= load.rows + t * math.ceil(load.active_experts) + 1e-9
    assert load.ladder_rows >= t * load.active_experts * (1 - 1e-9)  # every active slot computes a whole tile at least
