"""`kernels_not_inherited`: a kernel class whose reference fit describes another kernel family resolves as a kind
nobody measured (the nearest 16-bit curve), for the RTX PRO 6000's NVFP4 GEMMs (sm_120 mma.sync kernels) against
B200's sm_100 tcgen05 fit; every other class, and every other chip, resolves as before."""

import pytest

from tokenfab.cost.profile import load_profile, resolve_profile
from tokenfab.hardware.catalog import load_chip
from tokenfab.hardware.spec import ChipSpec

pytestmark = pytest.mark.unit


def test_rtx_fp4_gemm_takes_the_references_16_bit_curve():
    resolved = resolve_profile(load_chip("rtx-pro-6000-server"))
    b200 = load_profile("b200")
    assert resolved.provenance == "inherited" and "not gemm.fp4" in resolved.note
    assert resolved.gemm("fp4") == (b200.gemm["bf16"], "inherited")
    assert resolved.gemm("fp4")[0] != b200.gemm["fp4"]
    for kind in ("bf16", "fp8"):
        assert resolved.gemm(kind) == (b200.gemm[kind], "inherited")
    assert resolved.attention("decode", "fp8") == (b200.attention_decode["fp8"], "inherited")


def test_b200_keeps_its_own_fp4_fit():
    assert resolve_profile(load_chip("b200")).gemm("fp4") == (load_profile("b200").gemm["fp4"], "fitted")


def test_the_launch_floor_copy_keeps_the_exclusion():
    resolved = resolve_profile(load_chip("rtx-pro-6000-server")).with_launch_floor(2e-6)
    assert resolved.gemm("fp4")[0].compute_eff == load_profile("b200").gemm["bf16"].compute_eff


def test_a_chips_own_fit_still_answers_an_excluded_class():
    """The exclusion is of other chips' fits: B200 declaring its own fp4 class foreign keeps its own fit."""
    data = load_chip("b200").model_dump()
    chip = ChipSpec.model_validate({**data, "kernels_not_inherited": {"gemm.fp4": "test"}})
    assert resolve_profile(chip).gemm("fp4") == (load_profile("b200").gemm["fp4"], "fitted")


@pytest.mark.parametrize("key, why, match", [("fp4", "x", "not 'table.kind'"), ("moe.fp4", "x", "not 'table.kind'"),
                                             ("gemm.", "x", "not 'table.kind'"), ("gemm.fp4", " ", "needs a reason")])
def test_bad_keys_are_refused(key, why, match):
    data = load_chip("rtx-pro-6000-server").model_dump()
    with pytest.raises(ValueError, match=match):
        ChipSpec.model_validate({**data, "kernels_not_inherited": {key: why}})
