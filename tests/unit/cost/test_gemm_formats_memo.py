"""The chip cost's memo of GEMM operand formats (`ChipCost.gemm_formats`) is an exact cache of `gemm_kind` and the
operand widths: a GEMM's work and estimate with the memo filled equal those of a chip cost that never saw it."""

import pytest

from tokenfab.cost.chip_cost import ChipCost, chip_cost
from tokenfab.cost.gemm import estimate_gemm, gemm_work
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.unit

FORMATS = [("bf16", "bf16", ""), ("fp8", "fp8", ""), ("bf16", "int4", ""), ("fp8", "fp4", ""), ("int8", "int8", ""),
           ("fp32", "fp32", ""), ("fp4", "fp4", ""), ("fp8", "fp8", "block"), ("tf32", "bf16", "")]


@pytest.mark.parametrize("chip", ["h100-sxm", "a100-sxm", "b200", "l40s"])
def test_remembered_gemm_formats_equal_a_fresh_chip_cost(chip):
    warm = chip_cost(load_chip(chip))
    for act, weight, variant in FORMATS:
        for m, n, k in ((1, 4096, 4096), (300, 1024, 8192), (70_000, 28_672, 8192)):
            first = gemm_work(warm, m, n, k, act, weight, variant)
            assert (act, weight, variant) in warm.gemm_formats
            fresh = ChipCost(warm.chip, warm.resolved)  # an empty memo: every format worked out anew
            assert gemm_work(warm, m, n, k, act, weight, variant) == first == gemm_work(fresh, m, n, k, act, weight, variant)
            if variant == "":
                assert estimate_gemm(warm, m, n, k, act, weight) == estimate_gemm(fresh, m, n, k, act, weight)
