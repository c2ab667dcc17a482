"""Fused MoE layer: routing distributions and the grouped-expert kernel against hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from testkit import make_cost

from tokenfab.cost.moe import MoEShape, estimate_moe, expert_load, moe_kind, moe_work, parse_distribution
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def test_balanced_load_many_tokens_fills_every_local_expert():
    # 64 tokens x top-2 over 8 experts = 128 picks, 16 per expert; EP 2 -> 4 local experts, 64 rows.
    load = expert_load(MoEShape(64, 16, 32, 2, 8, ep=2))
    assert load.rows == pytest.approx(64.0)
    assert load.active_experts == pytest.approx(4.0)
    assert load.tile_rows == pytest.approx(4 * 16.0)


def test_balanced_load_few_tokens_hits_distinct_experts():
    # 1 token x top-4 over 64 experts on EP 4: 4 picks, one per rank on average, each a distinct expert.
    load = expert_load(MoEShape(1, 16, 32, 4, 64, ep=4))
    assert load.rows == pytest.approx(1.0)
    assert load.active_experts == pytest.approx(1.0)


def test_uniform_active_experts_is_one_minus_miss_probability():
    uni = expert_load(MoEShape(3, 16, 32, 2, 8, distribution="uniform"))
    assert uni.active_experts == pytest.approx(8 * (1 - (1 - 2 / 8) ** 3))
    assert uni.rows == pytest.approx(6.0)


def test_power_law_is_deterministic_and_loads_the_busiest_rank_more():
    bal = expert_load(MoEShape(4096, 16, 32, 8, 256, ep=8))
    pl1 = expert_load(MoEShape(4096, 16, 32, 8, 256, ep=8, distribution="power-law:1.2"))
    pl2 = expert_load(MoEShape(4096, 16, 32, 8, 256, ep=8, distribution="power_law_1.2"))
    assert pl1 == pl2
    assert pl1.rows > bal.rows  # the busiest rank of a skewed routing gets more than its even share
    assert pl1.rows <= 4096 * 8


def test_parse_distribution_rejects_unknown_names():
    assert parse_distribution("power-law:1.01") == ("power-law", 1.01)
    with pytest.raises(InvalidInputError, match="balanced"):
        parse_distribution("zipf")
    with pytest.raises(InvalidInputError):
        parse_distribution("power-law:1")


def test_work_counts_flops_and_only_active_expert_weights():
    cc = make_cost()
    # 64 tokens, top-2, 8 experts, EP 2, MoE-TP 2: 64 rows on 4 local experts, width 16, gated up 32.
    shape = MoEShape(64, 16, 32, 2, 8, moe_tp=2, ep=2)
    w = moe_work(cc, shape, "bf16")
    assert w.flops == pytest.approx(2 * 64 * 16 * (32 + 16))
    weights = 4 * (16 * 32 + 16 * 16) * 2
    tokens = 64 * 16 * 3 * 2 + 64 * 16 * 2 * 2 + 64 * 16 * 2 * 2 + 64 * 16 * 2 + 64 * 8 * 2
    assert w.dram_bytes == pytest.approx(weights + tokens)
    assert w.kind == "bf16"


def test_eight_bit_activations_add_the_input_quantisation_of_every_token():
    cc = make_cost()
    # Same shape, fp8 activations and weights: the 64 rows move 1-byte inputs, and all 64 tokens' 16-bit
    # hidden states (width 16) are read (2 B) and written as fp8 (1 B) before the permute.
    shape = MoEShape(64, 16, 32, 2, 8, moe_tp=2, ep=2)
    w = moe_work(cc, shape, "fp8")
    weights = 4 * (16 * 32 + 16 * 16) * 1
    tokens = 64 * 16 * 3 * 1 + 64 * 16 * 2 * 2 + 64 * 16 * 2 * 2 + 64 * 16 * 2 + 64 * 8 * 2 + 64 * 16 * (2 + 1)
    assert w.dram_bytes == pytest.approx(weights + tokens)


def test_row_tiles_count_every_row_block_of_each_expert():
    from tokenfab.cost.gemm import TILE

    cc = make_cost()
    # 1024 tokens x top-2 over 8 experts on EP 2: 4 local experts with 256 rows each = 2 row blocks of 128.
    # Up width 2 x 256 = 512 -> 4 tile columns. Per active expert: 4 units; per row block: 4 x 2 x 4 = 32.
    shape = MoEShape(1024, 64, 256, 2, 8, ep=2)
    assert TILE == 128
    assert moe_work(cc, shape, "bf16").work_units == pytest.approx(4 * 4)
    assert moe_work(cc, shape, "bf16", row_tiles=True).work_units == pytest.approx(4 * 2 * 4)
    # Thin experts (fewer rows than a tile) have one row block each: both counts agree.
    thin = MoEShape(8, 64, 256, 2, 8, ep=2)
    assert moe_work(cc, thin, "bf16", row_tiles=True).work_units == moe_work(cc, thin, "bf16").work_units


def test_resident_bytes_count_each_buffer_once():
    cc = make_cost()
    # Same shape as above: the traffic writes and re-reads the permuted input and the intermediates; the
    # bytes a warm re-run must keep on chip count each buffer once: weights, permuted input (16-bit),
    # intermediate (16-bit, width 16), GEMM-2 output (16-bit), layer output and router scores.
    w = moe_work(cc, MoEShape(64, 16, 32, 2, 8, moe_tp=2, ep=2), "bf16")
    weights = 4 * (16 * 32 + 16 * 16) * 2
    assert w.resident_bytes == pytest.approx(weights + 64 * (16 * 2 + 16 * 2 + 16 * 2) + 64 * 16 * 2 + 64 * 8 * 2)
    assert w.resident_bytes < w.dram_bytes


def test_warm_layer_whose_resident_set_fits_is_served_from_cache():
    from tokenfab.cost.chip_cost import warm_cache_bytes
    from tokenfab.cost.kernel import KernelParams
    # Cache 4x DRAM bandwidth for a working set up to the whole SRAM: a layer whose traffic exceeds the
    # SRAM but whose resident set fits runs from cache; cold (a model's forward pass) it never does.
    params = KernelParams(launch_s=0.0, compute_eff=1.0, memory_eff=1.0, overlap_exp=20.0, half_occupancy_per_unit=0.0,
                          cache_bw_factor=4.0, cache_capacity_frac=1.0)
    cc = make_cost(kernel=params)
    shape = MoEShape(4096, 1024, 16, 2, 8)  # memory bound, token traffic dominates the weights
    w = moe_work(cc, shape)
    sram = (w.resident_bytes + w.dram_bytes) / 2  # fits the resident set, not the traffic
    assert w.resident_bytes < sram < w.dram_bytes
    assert warm_cache_bytes(sram, w.dram_bytes, w.resident_bytes) == pytest.approx(sram * w.dram_bytes / w.resident_bytes)
    assert warm_cache_bytes(sram, w.dram_bytes, 0.0) == sram
    cc.sram_bytes = sram
    warm, cold = estimate_moe(cc, shape, warm_cache=True), estimate_moe(cc, shape)
    assert warm.time_s == pytest.approx(cold.time_s / 4.0, rel=0.02)


def test_partitioned_cache_holds_a_copy_per_partition_so_the_layer_leaves_it_at_half_the_sram():
    # A100's two L2 partitions each cache what their SMs read: a working set of 0.6x the SRAM runs from cache
    # on a unified cache and from DRAM on a two-partition one (it needs 1.2x the SRAM).
    from tokenfab.cost.kernel import KernelParams
    from tokenfab.hardware.spec import ChipSpec

    params = KernelParams(launch_s=0.0, compute_eff=1.0, memory_eff=1.0, overlap_exp=20.0, half_occupancy_per_unit=0.0,
                          cache_bw_factor=4.0, cache_capacity_frac=1.0)
    shape = MoEShape(16, 1024, 256, 2, 8)
    unified = make_cost(kernel=params)
    base = moe_work(unified, shape).resident_bytes
    data = unified.chip.model_dump()
    data["onchip_sram_bytes"] = {"value": base / 0.6, "source": "test", "basis": "assumption"}
    data["num_onchip_sram_partitions"] = {"value": 2, "source": "test", "basis": "assumption"}
    split_chip = ChipSpec.model_validate(data)
    assert split_chip.sram_partitions == 2
    split = make_cost(split_chip, kernel=params)
    assert moe_work(split, shape).resident_bytes == pytest.approx(2 * base)
    unified.sram_bytes = base / 0.6
    cold = estimate_moe(unified, shape).time_s
    assert estimate_moe(unified, shape, warm_cache=True).time_s == pytest.approx(cold / 4.0, rel=0.02)
    assert estimate_moe(split, shape, warm_cache=True).time_s == pytest.approx(cold)


def test_cache_partitions_must_be_a_whole_number():
    from pydantic import ValidationError

    from tokenfab.hardware.spec import ChipSpec

    data = make_cost().chip.model_dump()
    for bad in (0, 1.5):
        data["num_onchip_sram_partitions"] = {"value": bad, "source": "test", "basis": "assumption"}
        with pytest.raises(ValidationError, match="whole number"):
            ChipSpec.model_validate(data)
    assert make_cost().chip.sram_partitions == 1  # absent: one unified cache


def test_ungated_experts_have_a_single_up_projection():
    cc = make_cost()
    gated = moe_work(cc, MoEShape(64, 16, 32, 2, 8), "bf16")
    plain = moe_work(cc, MoEShape(64, 16, 32, 2, 8, gated=False), "bf16")
    assert plain.flops == pytest.approx(gated.flops * 2 / 3)


def test_mxfp4_weights_with_fp8_activations_run_at_the_fp8_rate():
    cc = make_cost()
    assert moe_kind(cc, "fp8", "fp4") == ("w4a8", "fp8")
    four = moe_work(cc, MoEShape(1, 64, 64, 1, 1), "fp8", "fp4")
    eight = moe_work(cc, MoEShape(1, 64, 64, 1, 1), "fp8", "fp8")
    assert four.peak == eight.peak == 200e12
    assert four.dram_bytes < eight.dram_bytes


def test_ideal_kernel_time_is_the_roofline():
    cc = make_cost()
    shape = MoEShape(4096, 1024, 2048, 8, 64, ep=4)
    cost = estimate_moe(cc, shape)
    w = moe_work(cc, shape)
    assert cost.time_s == pytest.approx(max(w.flops / 100e12, w.dram_bytes / 1e12), rel=0.05)
    assert cost.time_s >= cost.roofline_s


def test_one_grouped_kernel_is_cheaper_than_one_launch_per_expert():
    from tokenfab.cost.kernel import KernelParams
    slow = KernelParams(launch_s=10e-6, compute_eff=0.8, memory_eff=0.8, overlap_exp=2.0, half_occupancy_per_unit=0.5)
    cc = make_cost(kernel=slow)
    cost = estimate_moe(cc, MoEShape(8, 1024, 512, 8, 64))
    assert cost.time_s < 64 * 10e-6  # one fixed cost, not one per expert


def test_ep_not_dividing_experts_uses_redundant_slots():
    shape = MoEShape(1, 16, 32, 8, 256, ep=144)
    assert shape.local_experts == math.ceil(256 / 144) == 2
    assert np.isfinite(expert_load(shape).rows)


def test_bad_shapes_are_rejected():
    with pytest.raises(InvalidInputError, match="topk"):
        MoEShape(1, 16, 32, 9, 8)
    with pytest.raises(InvalidInputError, match="moe-tp"):
        MoEShape(1, 16, 30, 2, 8, moe_tp=4)


def test_absorbed_mla_decode_uses_its_fitted_curve_else_the_decode_curve_with_prefill_compute():
    from tokenfab.cost.attention import decode_curve
    from tokenfab.cost.chip_cost import chip_cost
    from tokenfab.cost.profile import load_profile
    from tokenfab.hardware.catalog import load_chip

    h20, h100 = chip_cost(load_chip("h20")), chip_cost(load_chip("h100-sxm"))
    assert decode_curve(h20, "mla", 576)[0] == load_profile("h20").attention_decode["mla"]  # fitted on H20 MLA rows
    own = load_profile("h100-sxm")  # no MLA rows: the GQA decode curve with the prefill curve's compute efficiency
    assert decode_curve(h100, "mla", 576)[0] == dataclasses.replace(
        own.attention_decode["bf16"], compute_eff=own.attention_prefill["bf16"].compute_eff)
    assert decode_curve(h100, "bf16", None)[0] == load_profile("h100-sxm").attention_decode["bf16"]  # GQA unchanged


def test_unmeasured_format_takes_the_nearest_measured_format_of_the_same_layer():
    from tokenfab.cost.profile import nearest_moe_kind

    fitted = ["bf16", "fp8", "w4a8", "bf16-cutlass"]
    assert nearest_moe_kind("fp8", fitted) == "fp8"  # measured: itself
    assert nearest_moe_kind("fp4", fitted) == "w4a8"  # 4-bit weights first, then 8-bit activations
    assert nearest_moe_kind("w4a16", fitted) == "w4a8"
    assert nearest_moe_kind("w8a16", fitted) == "fp8"  # 8-bit weights (bf16 is 16-bit)
    assert nearest_moe_kind("fp32", ["bf16", "fp8"]) == "bf16"
    assert nearest_moe_kind("fp8-cutlass", ["bf16-cutlass", "fp8"]) == "bf16-cutlass"  # backend before format
    assert nearest_moe_kind("bf16", ["bf16-cutlass", "fp8"]) == "fp8"
    assert nearest_moe_kind("bf16", ["bf16-cutlass"]) == "bf16-cutlass"  # another backend only when nothing else


def test_a_chips_own_moe_fit_of_another_format_beats_the_generic_fit_of_this_format():
    from tokenfab.cost.chip_cost import chip_cost
    from tokenfab.cost.profile import load_profile
    from tokenfab.hardware.catalog import load_chip

    b200 = chip_cost(load_chip("b200"))
    own, gemm = load_profile("b200").moe, load_profile("b200").gemm
    assert "fp4" not in own and "w4a8" in own  # B200's rows are MXFP4 x MXFP8 only
    assert b200.resolved.moe_row_tiles("fp8") == ("w4a8" in load_profile("b200").moe_row_tiles)  # as its fit
    assert b200.resolved.moe("fp4")[0] == own["w4a8"]  # NVFP4 experts: 4-bit weights as the fit's, unchanged
    fp8, source = b200.resolved.moe("fp8")  # its own fit, not the pooled fp8 table, moved by B200's own GEMMs
    assert source == "fitted" and fp8.launch_s == own["w4a8"].launch_s
    assert fp8.memory_eff == pytest.approx(min(1.0, own["w4a8"].memory_eff * gemm["fp8"].memory_eff / gemm["fp4"].memory_eff))
    assert fp8.compute_eff == pytest.approx(min(1.0, own["w4a8"].compute_eff * gemm["fp8"].compute_eff / gemm["fp4"].compute_eff))


def test_moe_gemm_kind_maps_formats_to_their_dense_gemm_tables():
    from tokenfab.cost.profile import moe_gemm_kind

    assert moe_gemm_kind("bf16-cutlass") == "bf16"  # the backend variant is the MoE kernel's, not the GEMM's
    assert moe_gemm_kind("w4a8") == "fp4"  # 4-bit weights: the 4-bit GEMM's streaming efficiency
    assert moe_gemm_kind("fp8") == "fp8"


def test_pooled_moe_fixed_cost_is_counted_in_the_chips_own_cycles():
    import dataclasses as dc

    from tokenfab.cost.kernel import KernelParams
    from tokenfab.cost.profile import EfficiencyProfile, ResolvedProfile

    gemm = KernelParams(launch_s=4e-6, compute_eff=0.8, memory_eff=0.8, overlap_exp=2.0, half_occupancy_per_unit=0.1)
    moe = KernelParams(launch_s=30e-6, compute_eff=0.5, memory_eff=0.7, overlap_exp=1.0, half_occupancy_per_unit=0.0)
    generic = EfficiencyProfile("generic", "", 100.0, 1e15, {"bf16": dc.replace(gemm, launch_s=3e-6),
                                                              "fp8": dc.replace(gemm, memory_eff=0.4)},
                                {}, {}, None, moe={"bf16": moe}, moe_launch_kilocycles={"bf16": 60.0},
                                gemm_launch_kilocycles=6.0)
    own = EfficiencyProfile("chip", "", 100.0, 1e15, {"bf16": gemm}, {}, {}, None)
    resolved = ResolvedProfile(own, generic, "fitted", 100.0, "", clock_hz=2e9)
    params, source = resolved.moe("bf16")
    assert source == "generic" and params.launch_s == pytest.approx(60e3 / 2e9)  # 60,000 cycles at 2 GHz: 30 us
    # A chip without a stated clock: its own GEMM fixed cost (4 us) over the pooled chips' (6 kilocycles) is its
    # kilocycle, 0.667 us, so the chain takes 60 x 0.667 = 40 us (not from generic's 3 us GEMM)
    unclocked = ResolvedProfile(own, generic, "fitted", 100.0, "")
    assert unclocked.moe("bf16")[0].launch_s == pytest.approx(40e-6)
    # A kind the pool lacks takes the pooled 16-bit curve, its efficiencies moved by the chip's GEMMs
    # (fp8 resolves to the generic fp8 GEMM here: memory 0.4 against bf16's 0.8, so half the MoE's 0.7).
    fp8, _ = resolved.moe("fp8-cutlass")
    assert fp8.memory_eff == pytest.approx(0.35) and fp8.launch_s == pytest.approx(30e-6)
    # The work-unit form follows the fit the kind resolves to (here the pooled bf16 curve).
    tiled = ResolvedProfile(own, dc.replace(generic, moe_row_tiles=frozenset({"bf16"})), "fitted", 100.0, "")
    assert tiled.moe_row_tiles("fp8-cutlass") and not resolved.moe_row_tiles("fp8-cutlass")
    # A captured-graph floor caps the GEMM's fixed cost but neither the MoE kernel chain nor the clock it counts in.
    assert resolved.with_launch_floor(1e-6).moe("bf16")[0].launch_s == pytest.approx(30e-6)
    assert unclocked.with_launch_floor(1e-6).moe("bf16")[0].launch_s == pytest.approx(40e-6)


def test_balanced_busiest_rank_computes_whole_rows():
    # 1 token x top-22 over 512 experts on EP 128: 4 local experts hold 22 * 4 / 512 = 0.17 picks on average,
    # but the busiest rank (the benchmark's rank 0, which holds token 0's first pick) computes one whole row.
    load = expert_load(MoEShape(1, 16, 32, 22, 512, ep=128))
    assert load.rows == 1.0 and load.active_experts == 1.0
    # 3 picks per rank on average stay 3; 3.5 round up to 4 on the busiest rank.
    assert expert_load(MoEShape(3, 16, 32, 4, 64, ep=4)).rows == 3.0
    assert expert_load(MoEShape(7, 16, 32, 2, 16, ep=4)).rows == 4.0


def test_a_pooled_fit_that_never_ran_trtllm_gen_counts_its_padded_tiles_on_blackwell_only():
    import dataclasses as dc

    from tokenfab.cost.chip_cost import ChipCost
    from tokenfab.cost.kernel import KernelParams
    from tokenfab.cost.moe import gen_kernel, resolved_moe_form
    from tokenfab.cost.profile import EfficiencyProfile, ResolvedProfile
    from tokenfab.hardware.catalog import load_chip

    gemm = KernelParams(launch_s=4e-6, compute_eff=0.8, memory_eff=0.8, overlap_exp=2.0, half_occupancy_per_unit=0.1)
    moe = KernelParams(launch_s=30e-6, compute_eff=0.5, memory_eff=0.7, overlap_exp=1.0, half_occupancy_per_unit=0.0)
    pooled = EfficiencyProfile("generic", "", 100.0, 1e15, {"bf16": gemm}, {}, {}, None, moe={"bf16": moe},
                               moe_launch_kilocycles={"bf16": 60.0})

    def cost(chip: str, prof: EfficiencyProfile) -> ChipCost:
        spec = load_chip(chip)
        return ChipCost(spec, ResolvedProfile(prof, prof, "generic", 100.0, "", clock_hz=spec.clock))

    b200, h100 = cost("b200", pooled), cost("h100-sxm", pooled)
    assert gen_kernel(b200, "w4a8") and not gen_kernel(h100, "w4a8")  # Hopper has no block-scaled FP4 tensor cores
    assert not gen_kernel(b200, "fp8")
    assert not gen_kernel(cost("rtx-pro-6000-server", pooled), "w4a8")  # sm_120: FP4 tensor cores, not sm_100's kernels
    assert resolved_moe_form(b200, "w4a8") == "tile-ladder"  # the pooled bf16 fit, the kernel's own tiling
    assert resolved_moe_form(h100, "w4a8") == "columns" == resolved_moe_form(b200, "bf16")  # as the fit
    # a fit of w4a8 itself keeps the form it was fitted in, whatever the chip
    fitted = dc.replace(pooled, moe={"bf16": moe, "w4a8": moe}, moe_row_tiles=frozenset({"w4a8"}))
    assert resolved_moe_form(cost("b200", fitted), "w4a8") == "row-tiles"
    # and the estimate counts the padded rows: 64 tokens x top-4 over 32 experts at EP 8 pick 4 local experts for
    # 8 rows each, but the token tile is sized as if all 256 picks were local (64 rows), so 8x the FLOPs
    shape = MoEShape(64, 1024, 512, 4, 32, ep=8)
    ladder = estimate_moe(b200, shape, "fp8", "fp4").flops
    plain = estimate_moe(cost("b200", fitted), shape, "fp8", "fp4").flops
    assert ladder == pytest.approx(8.0 * plain)
