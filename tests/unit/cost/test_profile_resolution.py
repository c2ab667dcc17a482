"""Per-class profile resolution (own -> efficiency_reference -> generic) and full-mesh collectives."""

import dataclasses

import pytest
from testkit import IDEAL, make_chip, make_profile

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.collectives import estimate_collective, flat_time_s
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.profile import CollectiveParams, ResolvedProfile, resolve_profile
from tokenfab.hardware.catalog import load_chip, system_of_chip

pytestmark = pytest.mark.unit

SLOW = dataclasses.replace(IDEAL, compute_eff=0.5)


def _partial_resolved() -> ResolvedProfile:
    """Own profile with only an fp8-block GEMM and no elementwise/collectives; reference has bf16."""
    own = dataclasses.replace(make_profile(SLOW), gemm={"fp8-block": SLOW}, attention_prefill={}, attention_decode={},
                              elementwise=None, collectives={})
    ref = make_profile(IDEAL)
    generic = dataclasses.replace(make_profile(IDEAL), name="generic")
    return ResolvedProfile(own, generic, "fitted", 100, "partial", reference=ref)


def test_missing_class_falls_back_to_reference_before_generic():
    r = _partial_resolved()
    assert r.gemm("fp8-block") == (SLOW, "fitted")
    assert r.gemm("bf16") == (IDEAL, "inherited")
    assert r.attention("decode", "bf16")[1] == "inherited"
    assert r.elementwise()[1] == "inherited"
    assert r.collective("all_reduce", 8)[1] == "inherited"
    assert r.has_collective("all_gather") and not r.has_collective("all_reduce_oneshot")


def test_without_reference_missing_class_is_generic():
    r = dataclasses.replace(_partial_resolved(), reference=None)
    assert r.gemm("bf16")[1] == "generic"
    assert r.elementwise()[1] == "generic"


def test_fitted_class_is_used_in_cost():
    chip = make_chip(sram=64e6)  # the GEMM's panels fit on chip, so it reads its operands once (cost.onchip)
    cc = ChipCost(chip, _partial_resolved())
    # 2*1024^3 FLOP at 200 TFLOP/s fp8 and compute_eff 0.5 -> compute time doubles the roofline
    c = estimate_gemm(cc, 1024, 1024, 1024, "fp8", variant="block")
    assert c.source == "fitted"
    assert c.time_s == pytest.approx(2 * 1024**3 / 200e12 / 0.5, rel=1e-3)
    assert estimate_gemm(cc, 1024, 1024, 1024, "bf16").source == "inherited"


def test_full_mesh_collective_uses_n_minus_1_links_in_one_step():
    p = CollectiveParams(small_latency_s=1e-5, small_bus_eff=1.0, latency_s=1e-5, bus_eff=1.0, per_step_latency_s=1e-6)
    size, link = 64e6, 196e9
    # 4 of 8 in a full mesh: 3 of 7 links; all-gather moves 3/4 of the message; one step
    t, bound = flat_time_s("all_gather", 4, size, link, p, mesh_domain=8)
    bw = link * 3 / 7
    assert bound == pytest.approx(0.75 * size / bw)
    assert t == pytest.approx(1e-6 + 1e-5 + 0.75 * size / bw)
    # all-reduce: two direct phases, 2(n-1)/n of the message
    t, bound = flat_time_s("all_reduce", 8, size, link, p, mesh_domain=8)
    assert t == pytest.approx(2e-6 + 1e-5 + 1.75 * size / link)


def test_full_mesh_bus_bandwidth_grows_with_group_size():
    chip = load_chip("ascend-910b")
    assert chip.scale_up.topology == "full-mesh"
    ideal = make_profile(IDEAL)
    cc = ChipCost(chip, ResolvedProfile(ideal, ideal, "fitted", 24, "ideal"))
    busbw = []
    for n in (2, 4, 8):
        c = estimate_collective(cc, system_of_chip(chip, n), "all_reduce", n, 1e9)
        busbw.append(2 * (n - 1) / n * 1e9 / c.time_s)
    assert busbw[1] / busbw[0] == pytest.approx(3.0, rel=1e-3) and busbw[2] / busbw[0] == pytest.approx(7.0, rel=1e-3)


@pytest.mark.parametrize("name", ["ascend-910b", "h20", "mi355x", "mi308x"])
def test_vendor_chips_resolve_to_their_own_fit(name):
    r = resolve_profile(load_chip(name))
    assert r.provenance == "fitted" and r.profile.name == name
    assert (r.reference is not None) == (name == "h20")


def test_h20_bf16_gemm_is_inherited_from_h100_and_fp8_block_fitted():
    r = resolve_profile(load_chip("h20"))
    assert r.gemm("bf16")[1] == "inherited" and r.gemm("fp8-block")[1] == "fitted"
    h100 = resolve_profile(load_chip("h100-sxm"))
    assert r.gemm("bf16")[0] == h100.gemm("bf16")[0]


def test_remembered_elementwise_and_collective_fits_equal_the_search():
    """`elementwise()` and `collective()` remember their answer per profile: a second ask gives the same objects the
    uncached search gives, for every group size a collective is asked at, on a partial and on catalog profiles."""
    from tokenfab.cost.chip_cost import chip_cost

    resolved = [_partial_resolved()] + [chip_cost(load_chip(name)).resolved for name in ("h100-sxm", "a100-sxm", "l40s")]
    for r in resolved:
        assert r.elementwise() == r._elementwise() and r.elementwise() is r.elementwise()
        for name in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
            if not r.has_collective(name):
                continue
            for n in (1, 2, 3, 4, 8, 16, 64):
                first = r.collective(name, n)
                assert first == r._collective(name, n) and r.collective(name, n) is first
