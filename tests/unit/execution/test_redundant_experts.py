"""Redundant expert slots (EPLB) as a layout option: validation, the weight memory they take, and the step they cost."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.api.deployment import checked_deployment
from tokenfab.errors import ParallelismError
from tokenfab.execution.config import ParallelConfig, PrecisionConfig, check_parallelism
from tokenfab.execution.memory import MemoryModel
from tokenfab.hardware.catalog import load_system
from tokenfab.workload.hf_config import load_model
from tokenfab.workload.params import mlp_params

pytestmark = pytest.mark.unit


def _weights(ep: int, redundant: int) -> float:
    model, system = load_model("deepseek-v3"), load_system("h100-sxm", 32)
    par = ParallelConfig(tp=1, dp=32, ep=ep, num_redundant_experts=redundant)
    return MemoryModel(model, system, par, PrecisionConfig(dtype="fp8")).weights_bytes


def test_each_redundant_slot_per_rank_holds_one_more_expert_per_moe_layer():
    """DeepSeek-V3 on EP32: 256 experts are 8 a rank; 32 redundant slots make 9, i.e. one more expert of
    3 x 7168 x 2048 FP8 weights (block scales included) in each of its 58 MoE layers."""
    model = load_model("deepseek-v3")
    ffn = model.layers[-1].ffn
    moe_layers = sum(g.num_layers for g in model.layers if g.ffn.kind == "moe")
    extra = _weights(32, 32) - _weights(32, 0)
    per_expert = mlp_params(ffn, model.hidden_size, ffn.expert_intermediate_size)
    assert per_expert == 3 * 7168 * 2048
    assert moe_layers == 58
    assert extra / (moe_layers * per_expert) == pytest.approx(1.0, rel=0.01)  # ~1 byte per FP8 weight


@pytest.mark.parametrize("layout,match", [
    (dict(tp=8, ep=1, num_redundant_experts=32), "needs expert parallelism"),
    (dict(tp=1, dp=32, ep=32, num_redundant_experts=16), "valid: 0, 32, 64"),
])
def test_redundant_slots_are_refused_where_no_engine_runs_them(layout, match):
    with pytest.raises(ParallelismError, match=match):
        check_parallelism(load_model("deepseek-v3"), load_system("h100-sxm", 32), ParallelConfig(**layout))


def test_a_dense_model_takes_no_redundant_experts():
    with pytest.raises(ParallelismError, match="dense"):
        check_parallelism(load_model("llama-3.1-8b"), load_system("h100-sxm", 8),
                          ParallelConfig(tp=8, num_redundant_experts=8))


def test_zero_redundant_slots_cost_what_the_layout_without_them_costs():
    a = api.predict(model="deepseek-v3", hardware="h100-sxm", tp=1, dp=32, ep=32, dtype="fp8", batch=64,
                    input_len=512, output_len=8).to_dict()
    b = api.predict(model="deepseek-v3", hardware="h100-sxm", tp=1, dp=32, ep=32, dtype="fp8", batch=64,
                    input_len=512, output_len=8, num_redundant_experts=0).to_dict()
    assert a == b


def test_eplb_shortens_a_skewed_expert_parallel_step_and_takes_more_memory():
    """With a skewed popularity the busiest EP rank waits for the hot experts' rows; spreading them over replicas
    (EPLB) shortens a large prefill step. Routing is pinned to zipf:1.1 so the check does not hang on the fit."""
    from tokenfab.execution import moe_routing

    old = moe_routing.OVERRIDE
    moe_routing.OVERRIDE = "zipf:1.1"
    try:
        kw = dict(model="deepseek-v3", hardware="h100-sxm", tp=1, dp=32, ep=32, dtype="fp8", batch=64,
                  input_len=2048, output_len=2)
        checked_deployment.cache_clear()
        plain, eplb = api.predict(**kw), api.predict(**kw, num_redundant_experts=32)
    finally:
        moe_routing.OVERRIDE = old
        checked_deployment.cache_clear()
    assert eplb.ttft_s < 0.8 * plain.ttft_s
    assert eplb.memory.weights_bytes > plain.memory.weights_bytes


def test_the_cli_refuses_a_slot_count_ep_does_not_divide_in_one_line(capsys):
    from testkit import run_cli

    code, _out, err = run_cli(["predict", "--model", "deepseek-v3", "--hardware", "h100-sxm", "--tp", "1", "--dp", "32",
                               "--ep", "32", "--dtype", "fp8", "--num-redundant-experts", "16", "--json"], capsys)
    assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0
    assert "valid: 0, 32, 64" in err
