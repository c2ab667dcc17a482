"""Capacity of one chip for one model at an SLO: the seam between planner and predictor.

The planner never computes throughput itself. It asks a *capacity provider*, any
callable `(chip_name, model_name, slo) -> CapacityEstimate`, so that tokenfab's
execution model (or measurements, or a vendor's table) can be plugged in without the
planner knowing which. Calls are cached per (chip, model, SLO) because a predictor
call may take seconds and the planner asks for every option x model pair.

The plan file's `capacity:` section is the documented fallback: explicit
tokens/s and watts per chip per model, which override the injected provider for the
pairs they list. Tests and the bundled example use it, so planning works without
the predictor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenfab.errors import TokenfabError, InvalidInputError
from tokenfab.units import ms_to_s


class SLOSpec(BaseModel):
    """Latency targets a capacity figure must meet (time to first token, time per output token).

    Stored in seconds; the plan file may write `ttft_ms` / `tpot_ms` instead.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ttft_s: float = Field(gt=0, le=3600, description="Time to first token target, seconds.")
    tpot_s: float = Field(gt=0, le=60, description="Time per output token target, seconds.")
    input_tokens: int = Field(default=1024, ge=1, description="Typical prompt length the capacity is estimated at.")
    output_tokens: int = Field(default=256, ge=1, description="Typical output length the capacity is estimated at.")

    @model_validator(mode="before")
    @classmethod
    def _from_ms(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("ttft", "tpot"):
            if f"{name}_ms" in data:
                if f"{name}_s" in data:
                    raise ValueError(f"give {name}_ms or {name}_s, not both")
                ms = data.pop(f"{name}_ms")
                data[f"{name}_s"] = ms_to_s(float(ms)) if isinstance(ms, int | float) else ms
        return data


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    """Sustained throughput of one chip for one model within its SLO, and its power."""

    tokens_per_s_per_chip: float
    avg_power_w_per_chip: float
    source: str
    wall_power: bool = False  # the power is the server's at the wall per chip (host, fans, PSU) rather than the chip's
    tokens_per_s_per_chip_lo: float | None = None  # error band of the capacity, where the provider gives one
    tokens_per_s_per_chip_hi: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tokens_per_s_per_chip) and self.tokens_per_s_per_chip >= 0):
            raise InvalidInputError(f"capacity must be finite and >= 0 tokens/s, got {self.tokens_per_s_per_chip}")
        if not (math.isfinite(self.avg_power_w_per_chip) and self.avg_power_w_per_chip > 0):
            raise InvalidInputError(f"average power must be finite and > 0 W, got {self.avg_power_w_per_chip}")


CapacityProvider = Callable[[str, str, SLOSpec], CapacityEstimate]
"""(chip_name, model_name, slo) -> CapacityEstimate. Raise an TokenfabError for a pair it cannot serve."""


class CapacityEntrySpec(BaseModel):
    """One row of a plan file's `capacity:` section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chip: str = Field(min_length=1, description="The option's chip (catalog name or path) or, if custom, its name.")
    model: str = Field(min_length=1, description="Model name as in the plan's `models`.")
    tokens_per_s_per_chip: float = Field(ge=0, description="Tokens/s one chip sustains within the SLO (0: cannot).")
    avg_power_w_per_chip: float = Field(gt=0, description="Average chip power at that load, W.")
    source: str = Field(min_length=1, description="Where the figure comes from (or 'placeholder: ...').")


class TableCapacityProvider:
    """Capacity from explicit (chip, model) rows; the SLO is the plan's, so it is not a key."""

    def __init__(self, entries: Iterable[CapacityEntrySpec]):
        self._rows: dict[tuple[str, str], CapacityEstimate] = {}
        for entry in entries:
            key = (entry.chip, entry.model)
            if key in self._rows:
                raise InvalidInputError(f"capacity: chip '{entry.chip}' and model '{entry.model}' appear twice")
            self._rows[key] = CapacityEstimate(entry.tokens_per_s_per_chip, entry.avg_power_w_per_chip, entry.source)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._rows

    def __call__(self, chip_name: str, model_name: str, slo: SLOSpec) -> CapacityEstimate:
        try:
            return self._rows[(chip_name, model_name)]
        except KeyError:
            raise InvalidInputError(
                f"no capacity for chip '{chip_name}' serving model '{model_name}': "
                "add it to the plan's capacity: section or pass a capacity provider"
            ) from None


class CachedCapacityProvider:
    """Memoises a provider per (chip, model, SLO); counts real calls (for tests and logs)."""

    def __init__(self, provider: CapacityProvider):
        self._provider = provider
        self._cache: dict[tuple[str, str, SLOSpec], CapacityEstimate] = {}
        self.num_calls = 0

    def __call__(self, chip_name: str, model_name: str, slo: SLOSpec) -> CapacityEstimate:
        key = (chip_name, model_name, slo)
        if key not in self._cache:
            self.num_calls += 1
            estimate = self._provider(chip_name, model_name, slo)
            if not isinstance(estimate, CapacityEstimate):
                raise TypeError(f"capacity provider returned {type(estimate).__name__}, not CapacityEstimate")
            self._cache[key] = estimate
        return self._cache[key]


def combined_provider(entries: Iterable[CapacityEntrySpec], provider: CapacityProvider | None) -> CapacityProvider:
    """The plan's table first, then the (cached) injected provider for pairs it lacks."""
    table = TableCapacityProvider(entries)
    if provider is None:
        return table
    cached = provider if isinstance(provider, CachedCapacityProvider) else CachedCapacityProvider(provider)

    def lookup(chip_name: str, model_name: str, slo: SLOSpec) -> CapacityEstimate:
        if (chip_name, model_name) in table:
            return table(chip_name, model_name, slo)
        try:
            return cached(chip_name, model_name, slo)
        except TokenfabError:
            raise
        except Exception as exc:  # a provider bug: name the pair, keep the cause
            raise RuntimeError(f"capacity provider failed for chip '{chip_name}', model '{model_name}'") from exc

    return lookup
