"""Evaluating many design points of one model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.spec import ChipSpec
from tokenfab.sweep.evaluate import PointResult, evaluate_point
from tokenfab.workload.spec import ModelSpec


def evaluate_points(chips: list[ChipSpec], knob_sets: list[dict[str, Any]], model: ModelSpec, slo: SLOSpec,
                    progress: Callable[[int, int], None] | None = None) -> list[PointResult]:
    out = []
    for i, (chip, knobs) in enumerate(zip(chips, knob_sets)):
        out.append(evaluate_point(chip, knobs, model, slo))
        if progress:
            progress(i + 1, len(chips))
    return out
