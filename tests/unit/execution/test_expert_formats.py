"""The fused expert kernel's input format: FP4 expert weights on a chip without FP4 tensor cores (Hopper) run against
16-bit activations, as TensorRT-LLM's and vLLM's Hopper MXFP4 MoE kernels do (execution.layers.expert_input_dtype)."""

import pytest

from tokenfab.cost.chip_cost import chip_cost
from tokenfab.cost.moe import MoEShape, estimate_moe
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import LayerCoster, expert_input_dtype
from tokenfab.hardware.catalog import load_chip, load_system
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("chip", "dtype", "weights", "expected"), [
    ("h100-sxm", "fp8", "fp4", "bf16"),   # no FP4 MMA: simulated MXFP4 on BF16 HGMMA
    ("h100-sxm", "bf16", "fp4", "bf16"),
    ("h100-sxm", "fp8", "int4", "fp8"),   # W4A8 AWQ keeps its FP8 path
    ("h100-sxm", "fp8", "fp8", "fp8"),
    ("b200", "fp8", "fp4", "fp8"),        # MXFP8 x MXFP4 on Blackwell's FP8/FP4 tensor cores
    ("b200", "fp4", "fp4", "fp4"),
])
def test_expert_input_dtype(chip, dtype, weights, expected):
    assert expert_input_dtype(chip_cost(load_chip(chip)), PrecisionConfig(dtype=dtype, weight_dtype=weights)) == expected


def _experts(chip: str, dtype: str, weights: str, tokens: int = 512):
    model = load_model("gpt-oss-120b")
    ffn = next(g.ffn for g in model.layers if g.ffn.num_experts > 1)
    cc = chip_cost(load_chip(chip))
    coster = LayerCoster(cc, load_system(chip, 1), ParallelConfig(), PrecisionConfig(dtype=dtype, weight_dtype=weights),
                         model.hidden_size)
    shape = MoEShape(tokens, model.hidden_size, ffn.expert_intermediate_size, ffn.num_experts_per_token, ffn.num_experts,
                     1, 1, ffn.gated, coster.routing, 0)
    return cc, shape, coster.routed_experts(ffn, tokens)


def test_fp8_activations_with_fp4_experts_on_hopper_cost_the_w4a16_kernel():
    cc, shape, fp8_run = _experts("h100-sxm", "fp8", "fp4")
    _, _, bf16_run = _experts("h100-sxm", "bf16", "fp4")
    assert fp8_run.time_s == pytest.approx(bf16_run.time_s, rel=1e-12)
    # and not the FP8 x FP4 kernel at the FP8 rate that cost.moe would pick for these operands
    assert fp8_run.time_s != pytest.approx(estimate_moe(cc, shape, "fp8", "fp4").time_s, rel=1e-3)
    assert fp8_run.time_s == pytest.approx(estimate_moe(cc, shape, "bf16", "fp4").time_s, rel=1e-12)


def test_blackwell_keeps_its_fp8_by_fp4_expert_kernel():
    cc, shape, run = _experts("b200", "fp8", "fp4")
    assert run.time_s == pytest.approx(estimate_moe(cc, shape, "fp8", "fp4").time_s, rel=1e-12)
