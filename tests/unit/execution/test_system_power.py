"""Wall power: the node's host share, fans and power-supply losses on top of the accelerators."""

from __future__ import annotations

import pytest

from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import StepModel
from tokenfab.hardware.catalog import load_chip, node_power_of, system_of_chip
from tokenfab.workload.hf_config import load_model


@pytest.mark.unit
def test_wall_energy_hand_computed():
    chip = load_chip("h100-sxm")
    with_node = system_of_chip(chip, 2)
    bare = with_node.model_copy(update={"node_power": None})
    model, par, prec = load_model("llama-3.1-8b"), ParallelConfig(tp=2), PrecisionConfig()
    batch = StepBatch(((4, 512, 512),), 16, 900.0)
    wall, dev = StepModel(model, with_node, par, prec).step(batch), StepModel(model, bare, par, prec).step(batch)
    node, per_node = node_power_of("h100-sxm")
    assert per_node == 8
    host_w = node.host_busy_w.value * 2 / 8  # two of the eight GPUs' share of the host
    factor = (1 + node.cooling_frac.value) / node.psu_efficiency_frac.value
    assert wall.time_s == dev.time_s
    assert wall.energy_j == pytest.approx((dev.energy_j + host_w * dev.time_s) * factor, rel=1e-12)


@pytest.mark.unit
def test_chip_without_node_entry_is_accelerators_only():
    assert node_power_of("ascend-910b") is None
    assert system_of_chip(load_chip("ascend-910b"), 1).node_power is None
