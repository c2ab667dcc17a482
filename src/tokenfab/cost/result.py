"""The cost of one operator: time, work, and why it takes that long."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Bound = Literal["compute", "memory", "sram", "network", "latency"]  # sram: data held on chip

_ROOFLINE_TOLERANCE = 1e-9


class RooflineViolation(AssertionError):
    """A cost model predicted a time below the physical lower bound: a bug, never user error."""


@dataclass(slots=True, unsafe_hash=True)
class OpCost:
    """Cost of one operator on one device (a record that is never changed after it is made: caches share it).

    A slotted dataclass rather than a frozen one: a frozen dataclass sets each field through
    `object.__setattr__`, which made building one ~5x slower, and a `predict` call builds a few dozen.
    Hashable and compared by value, as the frozen record was.

    `roofline_s` is the physical lower bound max(FLOPs/peak, bytes/bandwidth) (or the
    link bound for collectives); `time_s` is never below it. `source` says where the
    efficiency came from: 'fitted' (this chip's measurements), 'inherited' (a measured
    chip of the same family), 'generic' (pooled fit), or 'analytic' (no fitted factor).
    """

    op: str
    time_s: float
    flops: float
    bytes: float
    bound: Bound
    roofline_s: float
    source: str
    onchip_bytes: float = 0.0  # bytes read from data held on chip (pinned weights, resident KV), not in `bytes`

    def __post_init__(self) -> None:
        if self.time_s < self.roofline_s * (1.0 - _ROOFLINE_TOLERANCE):
            raise RooflineViolation(f"{self.op}: {self.time_s:.3e} s is below its roofline {self.roofline_s:.3e} s")


def checked_cost(op: str, time_s: float, flops: float, nbytes: float, bound: Bound, roofline_s: float, source: str,
                 onchip_bytes: float = 0.0, _new=object.__new__) -> OpCost:
    """`OpCost(op, time_s, flops, nbytes, bound, roofline_s, source, onchip_bytes)` for the kernel estimators, which
    build one per new operator shape: the same roofline check, then the slots filled directly (a fifth faster than
    the dataclass constructor and its `__post_init__` call)."""
    if time_s < roofline_s * (1.0 - _ROOFLINE_TOLERANCE):
        raise RooflineViolation(f"{op}: {time_s:.3e} s is below its roofline {roofline_s:.3e} s")
    cost = _new(OpCost)
    cost.op = op
    cost.time_s = time_s
    cost.flops = flops
    cost.bytes = nbytes
    cost.bound = bound
    cost.roofline_s = roofline_s
    cost.source = source
    cost.onchip_bytes = onchip_bytes
    return cost


def cost_record(cost: OpCost) -> tuple:
    """An OpCost as a flat tuple of its fields, for memos: the garbage collector stops tracking such a tuple at its
    first pass, where a memo of OpCost objects grows the oldest generation and so triggers full collections
    (`tokenfab.execution.step.PartRecord` says more). `revive_cost` makes the OpCost again."""
    return cost.op, cost.time_s, cost.flops, cost.bytes, cost.bound, cost.roofline_s, cost.source, cost.onchip_bytes


def revive_cost(record: tuple, _new=object.__new__) -> OpCost:
    """The OpCost of a `cost_record`, equal to the one it was made from. Its roofline was checked when that one was
    built, so the slots are filled directly (a quarter faster than the constructor)."""
    cost = _new(OpCost)
    cost.op, cost.time_s, cost.flops, cost.bytes, cost.bound, cost.roofline_s, cost.source, cost.onchip_bytes = record
    return cost


def classify_bound(compute_s: float, memory_s: float, launch_s: float, onchip_s: float = 0.0) -> Bound:
    """Which limit dominates a kernel's time (`onchip_s`: all bytes through the on-chip level
    when the kernel reads data held there; 'sram' when that, not DRAM, is the memory limit)."""
    mem = max(memory_s, onchip_s)
    if launch_s > max(compute_s, mem):
        return "latency"
    if compute_s >= mem:
        return "compute"
    return "sram" if onchip_s > memory_s else "memory"
