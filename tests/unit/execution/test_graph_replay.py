"""Decode-only steps at the fitted kernel floor of CUDA-graph replay; mixed steps at the op-table floors."""

import pytest

from tokenfab.cost.chip_cost import chip_cost
from tokenfab.execution import graph_replay
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import StepModel
from tokenfab.hardware.catalog import load_chip, load_system
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit

FLOOR_S = 1e-6


def test_launch_floor_caps_compute_kernels_only():
    resolved = chip_cost(load_chip("b200")).resolved
    capped = resolved.with_launch_floor(FLOOR_S)
    fp8, _ = resolved.gemm("fp8")
    capped_fp8, _ = capped.gemm("fp8")
    assert fp8.launch_s > FLOOR_S and capped_fp8.launch_s == FLOOR_S
    assert capped_fp8.memory_eff == fp8.memory_eff and capped_fp8.compute_eff == fp8.compute_eff
    assert capped.attention("decode", "bf16")[0].launch_s == FLOOR_S
    assert capped.elementwise()[0].launch_s == FLOOR_S
    assert capped.profile.moe == resolved.profile.moe  # fused MoE kernels: not in the dense fit
    assert capped.collective("all_reduce", 8) == resolved.collective("all_reduce", 8)
    roomy = resolved.with_launch_floor(1.0)  # a floor above every launch changes nothing
    assert roomy.gemm("fp8")[0] == fp8


def test_reference_chip_inherits_the_floor(monkeypatch):
    monkeypatch.setattr(graph_replay, "fitted_floors", lambda: {"h100-sxm": 7e-6})
    assert graph_replay.kernel_floor_s(load_chip("h100-sxm")) == 7e-6
    assert load_chip("h20").efficiency_reference == "h100-sxm"
    assert graph_replay.kernel_floor_s(load_chip("h20")) == 7e-6
    assert graph_replay.kernel_floor_s(load_chip("a100-sxm")) is None


def _step_model(monkeypatch, floors: dict) -> StepModel:
    monkeypatch.setattr(graph_replay, "fitted_floors", lambda: floors)
    return StepModel(load_model("llama-3.1-8b"), load_system("l40s", 1), ParallelConfig(), PrecisionConfig())


def test_decode_only_steps_pay_the_replay_floor(monkeypatch):
    eager = _step_model(monkeypatch, {})
    graphed = _step_model(monkeypatch, {"l40s": FLOOR_S})
    launch = chip_cost(load_chip("l40s")).resolved.elementwise()[0].launch_s
    decode = StepBatch((), 8, 1000.0)
    a, b = eager.step(decode).breakdown, graphed.step(decode).breakdown
    # 2 norms per layer x 32 layers + the final norm, each FLOOR_S instead of the elementwise launch
    assert a["norm"].time_s - b["norm"].time_s == pytest.approx(65 * (launch - FLOOR_S), rel=1e-9)
    assert graphed.step(decode).time_s < eager.step(decode).time_s
    mixed = StepBatch(((1, 512, 512),), 8, 1000.0)  # a prefill chunk beside decodes runs eagerly
    assert graphed.step(mixed).time_s == eager.step(mixed).time_s
    assert graphed.fast_step(mixed.prefill, 8, 1000.0) == eager.fast_step(mixed.prefill, 8, 1000.0)


def test_fast_paths_equal_step_with_a_floor(monkeypatch):
    sm = _step_model(monkeypatch, {"l40s": FLOOR_S})
    for batch in (StepBatch((), 16, 3000.0), StepBatch(((2, 100, 400),), 16, 3000.0)):
        ref = sm.step(batch)
        assert sm.fast_step(batch.prefill, batch.num_decode, batch.decode_kv_len) == pytest.approx((ref.time_s, ref.energy_j), rel=1e-12)
        assert sm.time_energy(batch) == pytest.approx((ref.time_s, ref.energy_j), rel=1e-12)
    t0, _, t1, _ = sm.decode_pair(16, 3000.0, 3100.0)
    times, _ = sm.decode_times(16, [3000.0, 3100.0])
    assert (t0, t1) == pytest.approx((sm.step(StepBatch((), 16, 3000.0)).time_s, sm.step(StepBatch((), 16, 3100.0)).time_s), rel=1e-12)
    assert list(times) == pytest.approx([t0, t1], rel=1e-12)


def test_fitted_floors_carry_their_provenance():
    import yaml

    data = yaml.safe_load(graph_replay.DATA_PATH.read_text())
    assert "bench/fit_engine_overheads.py" in data["provenance"]["command"]
    for chip, row in data["chips"].items():
        load_chip(chip)  # a catalog chip
        assert row["kernel_floor_s"] is None or row["kernel_floor_s"] in data["provenance"]["floor_grid_s"]
        assert any("held_out_" in k for k in row)  # scored on runs the fit did not see
