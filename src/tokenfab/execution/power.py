"""Power and energy: each device draws between its idle power and its TDP by how busy it is.

P(op) = P_idle + (P_TDP - P_idle) x activity, where activity is the larger of the op's
compute utilisation (FLOPs / (peak x time)) and memory utilisation (bytes / (bandwidth x
time)); collectives count the bytes they move through memory. A device idles at P_idle
while it waits (pipeline bubbles). Energy is power x time summed over operators.
"""

from __future__ import annotations

from typing import Protocol

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.hardware.spec import ChipSpec


class _Row(Protocol):
    time_s: float
    flops: float
    bytes: float


class PowerModel:
    def __init__(self, chip: ChipSpec, cc: ChipCost):
        self.idle_w = chip.power.idle_w.value
        self.tdp_w = max(chip.power.tdp_w.value, self.idle_w)
        self.peak = cc.peak("bf16")
        self.bandwidth = cc.bandwidth_bytes_per_s
        self.onchip_bandwidth = cc.onchip.bandwidth_bytes_per_s

    def op_power_w(self, row: _Row) -> float:
        if row.time_s <= 0:
            return self.idle_w
        activity = max(row.flops / (self.peak * row.time_s), row.bytes / (self.bandwidth * row.time_s))
        onchip = getattr(row, "onchip_bytes", 0.0)  # data held on chip keeps the memory system as busy
        if onchip > 0.0:
            activity = max(activity, (row.bytes + onchip) / (self.onchip_bandwidth * row.time_s))
        return self.idle_w + (self.tdp_w - self.idle_w) * min(1.0, activity)
