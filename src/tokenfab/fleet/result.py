"""The answer of `plan_fleet`: what to buy when, what it costs, what binds, what is unmet.

`PlanResult.to_dict()` is the JSON that `tokenfab plan --json` prints; its keys are a
stable interface. Money is in `currency` (the plan's), capacities in tokens/s, chips
in units (fractional unless the option is `integer`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class UnmetDemand:
    """Demand of one model in one period and scenario that the plan cannot serve."""

    model: str
    period: str
    scenario: str
    demand_tokens_per_s: float
    shortfall_tokens_per_s: float

    @property
    def message(self) -> str:
        frac = self.shortfall_tokens_per_s / self.demand_tokens_per_s if self.demand_tokens_per_s else 1.0
        return (
            f"{self.model} in {self.period} under scenario '{self.scenario}': short by "
            f"{self.shortfall_tokens_per_s:,.0f} tokens/s of {self.demand_tokens_per_s:,.0f} demanded ({frac:.1%})"
        )

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "period": self.period,
            "scenario": self.scenario,
            "demand_tokens_per_s": self.demand_tokens_per_s,
            "shortfall_tokens_per_s": self.shortfall_tokens_per_s,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class PlanResult:
    """A solved fleet plan (see `to_dict` for the JSON form)."""

    status: str  # "optimal" | "infeasible" (some demand unmet) | "time_limit"
    name: str
    objective_kind: str
    plan_kind: str
    currency: str
    objective: float
    objective_meaning: str
    total_capex: float
    expected_capex: float
    budget: float | None
    budget_per_period: list[float | None] | None
    periods: list[str]
    models: list[str]
    options: list[str]
    by_period: list[dict]
    fleet: list[dict]
    scenarios: list[dict]
    unmet_demand: list[UnmetDemand]
    binding_constraints: list[dict]
    shadow_prices: list[dict]
    unit_economics: list[dict]
    capacity: list[dict]
    silicon: list[dict]
    stats: dict
    notes: list[str] = field(default_factory=list)
    build_decisions: list[dict] = field(default_factory=list)
    power_build: list[dict] = field(default_factory=list)
    component_use: list[dict] = field(default_factory=list)
    regret: list[dict] | None = None

    @property
    def unmet_lines(self) -> list[str]:
        """One line per unmet (model, period, scenario), for people."""
        return [item.message for item in self.unmet_demand]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (infinities become None)."""
        out = {
            "status": self.status,
            "name": self.name,
            "objective_kind": self.objective_kind,
            "plan_kind": self.plan_kind,
            "currency": self.currency,
            "objective": self.objective,
            "objective_meaning": self.objective_meaning,
            "total_capex": self.total_capex,
            "expected_capex": self.expected_capex,
            "budget": self.budget,
            "budget_per_period": self.budget_per_period,
            "periods": self.periods,
            "models": self.models,
            "options": self.options,
            "by_period": self.by_period,
            "fleet": self.fleet,
            "scenarios": self.scenarios,
            "unmet_demand": [item.to_dict() for item in self.unmet_demand],
            "binding_constraints": self.binding_constraints,
            "shadow_prices": self.shadow_prices,
            "unit_economics": self.unit_economics,
            "capacity": self.capacity,
            "silicon": self.silicon,
            "stats": self.stats,
            "notes": self.notes,
            "build_decisions": self.build_decisions,
            "power_build": self.power_build,
            "component_use": self.component_use,
            "regret": self.regret,
        }
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        return _json_safe(value.item())
    return value
