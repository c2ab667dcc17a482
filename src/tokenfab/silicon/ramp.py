"""Yield ramp: how a node's defect density falls from first silicon to maturity.

A new process (or a known process at a new fab) starts with a high D0 that learning
drives down toward a mature floor. Two shapes cover what is reported:

- `exponential`: D0(t) = D_mature + (D_initial - D_mature) * exp(-t / tau), the usual
  learning-curve fit (fast early gains that taper off);
- `logistic`: a slow start, a steep middle at `midpoint_years`, then saturation,
  normalised so that D0(0) = D_initial exactly.

Time is in years since the ramp started (the plan converts period indices to years).
A faster or slower ramp is then one number, `time_constant_years`, which is what the
planner's "foundry yield ramps slow / fast" scenarios change.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenfab.errors import InvalidInputError


class DefectRampSpec(BaseModel):
    """A defect-density learning curve for one process at one fab."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_defect_density_per_cm2: float = Field(
        gt=0, le=100, description="D0 at the start of the ramp (t = 0), fatal defects per cm^2."
    )
    mature_defect_density_per_cm2: float = Field(
        gt=0, le=100, description="The floor D0 approaches once the process is mature, per cm^2."
    )
    shape: Literal["exponential", "logistic"] = Field(
        default="exponential", description="Learning-curve shape (see the module docstring)."
    )
    time_constant_years: float = Field(
        gt=0, le=50, description="e-folding time (exponential) or transition width (logistic), years."
    )
    midpoint_years: float = Field(
        default=0.0, ge=0, le=50, description="Logistic only: when D0 falls fastest, years after the start."
    )
    source: str = Field(default="", description="Where the ramp figures come from, or how they were derived.")

    @model_validator(mode="after")
    def _falls(self) -> DefectRampSpec:
        if self.mature_defect_density_per_cm2 > self.initial_defect_density_per_cm2:
            raise ValueError(
                f"mature D0 {self.mature_defect_density_per_cm2} exceeds initial D0 "
                f"{self.initial_defect_density_per_cm2}: a yield ramp cannot make defects more frequent"
            )
        if self.shape == "exponential" and self.midpoint_years:
            raise ValueError("midpoint_years applies only to the logistic shape")
        return self


def defect_density_at(ramp: DefectRampSpec, years_since_start: float) -> float:
    """D0 (defects/cm^2) `years_since_start` years into the ramp; flat at D_initial before it."""
    if not math.isfinite(years_since_start):
        raise InvalidInputError(f"ramp time must be finite, got {years_since_start}")
    t = max(0.0, years_since_start)
    start = ramp.initial_defect_density_per_cm2
    floor = ramp.mature_defect_density_per_cm2
    tau = ramp.time_constant_years
    if ramp.shape == "exponential":
        remaining_frac = math.exp(-t / tau)
    else:
        mid = ramp.midpoint_years
        # 1 / (1 + e^((t - mid)/tau)) rescaled so that it equals 1 at t = 0.
        exponent = min((t - mid) / tau, 700.0)  # beyond e^700 the fraction is 0 anyway
        remaining_frac = (1.0 + math.exp(-mid / tau)) / (1.0 + math.exp(exponent))
    return floor + (start - floor) * remaining_frac
