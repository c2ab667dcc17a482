"""Serving capacity of one design point at an SLO: the sweep's one seam to the capacity function.

A design point's capacity is what `plan` buys with, applied to a ChipSpec instead of a catalog
name: `search.plan_capacity.capacity_on_chip`, the best steady state of a continuous-batching
engine (the default engine's limits and memory policy) over the TP degrees of the chip's
scale-up domain, with open-loop arrivals and the SLO checked at the 99th percentile. That is
why `sweep` sits above `search` in the layer contract: a design is scored by its best
deployment, which is what search computes. `sweep.fast` gives the same numbers for many
points at once (an exact vectorisation, tested equal to this function point by point).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.spec import ChipSpec
from tokenfab.search.capacity import CapacityResult
from tokenfab.search.plan_capacity import capacity_on_chip
from tokenfab.workload.spec import ModelSpec

SLO_PERCENTILE = 99.0  # the percentile plan checks the SLO at (`capacity_per_chip`)


@dataclass(frozen=True, slots=True)
class PointCapacity:
    """Best steady-state serving of one model on one design within the SLO, per chip (latencies at the
    SLO percentile)."""

    tokens_per_s_per_chip: float
    avg_power_w_per_chip: float
    tp: int
    batch: int  # mean running sequences per replica
    ttft_s: float
    tpot_s: float

    @classmethod
    def of(cls, result: CapacityResult, tp: int) -> PointCapacity:
        """The sweep's figures of a capacity result at TP degree `tp`."""
        s = result.state
        return cls(result.tokens_per_s_per_chip, result.power_w_per_chip, tp, s.batch, s.ttft_s, s.tpot_s)


def capacity_at_slo(chip: ChipSpec, model: ModelSpec, slo: SLOSpec) -> PointCapacity:
    """Best output tokens/s per chip within the SLO (`capacity_on_chip`, as `plan` computes it);
    DoesNotFitError when no TP degree meets it."""
    result, tp = capacity_on_chip(chip, model, slo.ttft_s, slo.tpot_s, slo.input_tokens, slo.output_tokens,
                                  percentile=SLO_PERCENTILE)
    return PointCapacity.of(result, tp)
