"""`tokenfab sweep`: chip designs around a base chip, each scored by serving and silicon cost.

The design points are a full grid of the `--vary` ranges, or a seeded low-discrepancy sample
of them (`scipy.stats.qmc` Sobol or Latin hypercube) of `--points` points. Every point is the
base chip with its knobs replaced (`sweep.knobs.apply_knobs`); each is scored for every model
(`sweep.evaluate`), then the Pareto front (tokens/s per chip and per watt up, CNY per Mtok and
cost per good die down) and each output's sensitivity to each knob are computed per model.
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tokenfab.errors import InvalidInputError
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.catalog import load_chip
from tokenfab.hardware.spec import ChipSpec
from tokenfab.sweep.analysis import OBJECTIVES, OUTPUTS, pareto_mask, sensitivity
from tokenfab.sweep.evaluate import PointResult, cny_per_usd, good_die_cost_usd
from tokenfab.sweep.distribute import evaluate_all
from tokenfab.sweep.knobs import KnobRange, apply_knobs, check_base, parse_vary
from tokenfab.workload.hf_config import load_model

Sample = Literal["grid", "sobol", "lhs"]
MAX_POINTS = 1_000_000


def design_points(ranges: list[KnobRange], sample: Sample, num_points: int | None, seed: int) -> list[dict[str, Any]]:
    """The knob values of every design point."""
    if sample == "grid":
        total = int(np.prod([len(r.grid()) for r in ranges]))
        if total > MAX_POINTS:
            raise InvalidInputError(f"the grid has {total:,} points (> {MAX_POINTS:,}); use --sample sobol --points N")
        return [dict(zip([r.path for r in ranges], combo)) for combo in itertools.product(*(r.grid() for r in ranges))]
    if not num_points or not 1 <= num_points <= MAX_POINTS:
        raise InvalidInputError(f"--sample {sample} needs --points between 1 and {MAX_POINTS:,}")
    from scipy.stats import qmc

    d = len(ranges)
    if sample == "sobol":
        with warnings.catch_warnings():  # a point count that is not a power of two is the user's choice
            warnings.simplefilter("ignore", UserWarning)
            u = qmc.Sobol(d, scramble=True, seed=seed).random(num_points)
    elif sample == "lhs":
        u = qmc.LatinHypercube(d, seed=seed).random(num_points)
    else:
        raise InvalidInputError(f"unknown sample '{sample}' (valid: grid, sobol, lhs)")
    return [{r.path: r.at(float(row[j])) for j, r in enumerate(ranges)} for row in u]


@dataclass
class SweepResult:
    """All points of a sweep with their Pareto front and sensitivities (per model)."""

    base: str
    models: list[str]
    slo: SLOSpec
    sample: str
    ranges: list[KnobRange]
    points: list[PointResult]
    sweep_wall_s: float
    pareto: list[PointResult] = field(default_factory=list)
    sensitivity: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        rate = cny_per_usd()
        return {
            "base": self.base, "models": self.models, "sample": self.sample, "num_points": len(self.points),
            "slo": {"ttft_s": self.slo.ttft_s, "tpot_s": self.slo.tpot_s, "input_tokens": self.slo.input_tokens,
                    "output_tokens": self.slo.output_tokens},
            "knobs": [{"path": r.path, "lo": r.lo, "hi": r.hi, "num_points": r.num_points, "choices": list(r.choices)}
                      if r.categorical else {"path": r.path, "lo": r.lo, "hi": r.hi, "num_points": r.num_points}
                      for r in self.ranges],
            "units": {"cost_per_good_die": "USD per good packaged chip", "cost_per_mtok": "CNY per million output tokens",
                      "cny_per_usd": rate.value, "cny_per_usd_source": rate.source},
            "sweep_wall_s": self.sweep_wall_s,
            "points": [p.to_dict() for p in self.points],
            "pareto": [p.to_dict() for p in self.pareto],
            "sensitivity": self.sensitivity,
        }


def run_sweep(
    base: str, vary: list[str], models: list[str], slo: SLOSpec, *, sample: Sample = "grid",
    num_points: int | None = None, seed: int = 0, progress: Callable[[int, int], None] | None = None,
    workers: int = 1, ray_address: str | None = None,
) -> SweepResult:
    """Evaluate every design point for every model (see module doc), here, in `workers` local processes, or
    on the Ray cluster at `ray_address` ('local' starts one); the result does not depend on where it ran."""
    if not vary:
        raise InvalidInputError("give at least one --vary FIELD=LO:HI:N")
    if not models:
        raise InvalidInputError("give at least one --model")
    chip = load_chip(base)
    ranges = [parse_vary(v) for v in vary]
    check_base(chip, ranges)
    specs = [load_model(m) for m in models]
    t0 = time.perf_counter()
    knob_sets = design_points(ranges, sample, num_points, seed)
    chips: list[ChipSpec] = [apply_knobs(chip, k) for k in knob_sets]
    good_die_cost_usd(chips[0])  # a base without die area or cost data fails here, before any work
    points: list[PointResult] = []
    for spec in specs:
        points += evaluate_all(chip, chips, knob_sets, spec, slo, workers, ray_address, progress)
    wall = time.perf_counter() - t0
    result = SweepResult(base, models, slo, sample, ranges, points, wall)
    _analyse(result, ranges)
    return result


def _analyse(result: SweepResult, ranges: list[KnobRange]) -> None:
    numeric = [r for r in ranges if not r.categorical]
    for model in result.models:
        rows = [p for p in result.points if p.model == model]
        objectives = np.array([[getattr(p, k) for k in OBJECTIVES] for p in rows], dtype=float)
        mask = pareto_mask(objectives, list(OBJECTIVES.values()))
        front = [p for p, keep in zip(rows, mask) if keep]
        result.pareto += sorted(front, key=lambda p: -p.tokens_per_s_per_chip)
        x = np.array([[float(p.knobs[r.path]) for r in numeric] for p in rows], dtype=float).reshape(len(rows), -1)
        outputs = {o: np.array([getattr(p, o) for p in rows], dtype=float) for o in OUTPUTS}
        result.sensitivity[model] = sensitivity(x, outputs, [r.path for r in numeric])
