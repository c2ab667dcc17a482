"""Power and energy: each device draws between its idle power and its TDP by how busy it is.

P(op) = P_idle + (P_TDP - P_idle) x activity, where activity is the larger of the op's
compute utilisation (FLOPs / (peak x time)) and memory utilisation (bytes / (bandwidth x
time)); collectives count the bytes they move through memory. A device idles at P_idle
while it waits (pipeline bubbles). Energy is power x time summed over operators.
"""

from __future__ import annotations

from typing import Protocol

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.hardware.catalog import node_power_of
from tokenfab.hardware.spec import ChipSpec


class _Row(Protocol):
    time_s: float
    flops: float
    bytes: float


class PowerModel:
    """Device power per operator, plus the node's share beyond the accelerators (wall power).

    With a node power spec, wall energy = (device energy + host watts x time) x (1 + cooling) / PSU
    efficiency, the host's watts attributed per accelerator of a standard node (an 8-GPU server's host
    split 8 ways), so a deployment on fewer devices carries its share."""

    def __init__(self, chip: ChipSpec, cc: ChipCost, system=None, num_devices: int = 1):
        self.idle_w = chip.power.idle_w.value
        self.tdp_w = max(chip.power.tdp_w.value, self.idle_w)
        self.peak = cc.peak("bf16")
        self.bandwidth = cc.bandwidth_bytes_per_s
        self.onchip_bandwidth = cc.onchip.bandwidth_bytes_per_s
        self.host_busy_w = self.host_idle_w = 0.0
        self.wall_factor = 1.0
        node = getattr(system, "node_power", None)
        if node is not None:
            per_node = (node_power_of(chip.name) or (None, system.chips_per_node))[1]
            self.host_busy_w = node.host_busy_w.value * num_devices / per_node
            self.host_idle_w = node.host_idle_w.value * num_devices / per_node
            self.wall_factor = node.wall_factor()

    def to_wall(self, device_energy_j, time_s):
        """Wall energy of a step: the devices' energy plus the host's share, with cooling and PSU losses."""
        if self.wall_factor == 1.0 and self.host_busy_w == 0.0:
            return device_energy_j
        return (device_energy_j + self.host_busy_w * time_s) * self.wall_factor

    def idle_wall_w(self, device_idle_w: float) -> float:
        """Wall power of the deployment while it waits."""
        return (device_idle_w + self.host_idle_w) * self.wall_factor

    def op_power_w(self, row: _Row) -> float:
        if row.time_s <= 0:
            return self.idle_w
        activity = max(row.flops / (self.peak * row.time_s), row.bytes / (self.bandwidth * row.time_s))
        onchip = getattr(row, "onchip_bytes", 0.0)  # data held on chip keeps the memory system as busy
        if onchip > 0.0:
            activity = max(activity, (row.bytes + onchip) / (self.onchip_bandwidth * row.time_s))
        return self.idle_w + (self.tdp_w - self.idle_w) * min(1.0, activity)
