"""The cost of one operator: time, work, and why it takes that long."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Bound = Literal["compute", "memory", "network", "latency"]

_ROOFLINE_TOLERANCE = 1e-9


class RooflineViolation(AssertionError):
    """A cost model predicted a time below the physical lower bound: a bug, never user error."""


@dataclass(frozen=True, slots=True)
class OpCost:
    """Cost of one operator on one device.

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

    def __post_init__(self) -> None:
        if self.time_s < self.roofline_s * (1.0 - _ROOFLINE_TOLERANCE):
            raise RooflineViolation(f"{self.op}: {self.time_s:.3e} s is below its roofline {self.roofline_s:.3e} s")


def classify_bound(compute_s: float, memory_s: float, launch_s: float) -> Bound:
    """Which limit dominates a kernel's time."""
    if launch_s > max(compute_s, memory_s):
        return "latency"
    return "compute" if compute_s >= memory_s else "memory"
