"""Fleet planning under supply uncertainty: TCO per chip, capacity per chip and model,
and an LP/MILP (HiGHS) that decides what to buy, when, under which scenarios.

Public entry points: `load_plan(path) -> PlanSpec`, `plan_fleet(spec, capacity_provider=None)
-> PlanResult` (with `to_dict()`), `estimate_tco(TcoSpec) -> TcoEstimate`.
"""

from infersim.fleet.capacity import (
    CachedCapacityProvider,
    CapacityEntrySpec,
    CapacityEstimate,
    CapacityProvider,
    SLOSpec,
    TableCapacityProvider,
)
from infersim.fleet.loader import load_plan, parse_plan
from infersim.fleet.planner import plan_fleet
from infersim.fleet.result import PlanResult, UnmetDemand
from infersim.fleet.spec import (
    BudgetSpec,
    ChipOptionSpec,
    DatacenterSpec,
    ExchangeRateSpec,
    LimitsSpec,
    ManufacturedSpec,
    ModelDemandSpec,
    MoneySpec,
    PlanSpec,
    ScenarioSpec,
    SolverSpec,
    UnavailabilitySpec,
)
from infersim.fleet.tco import TcoEstimate, TcoSpec, datacenter_defaults, estimate_tco

__all__ = [
    "BudgetSpec",
    "CachedCapacityProvider",
    "CapacityEntrySpec",
    "CapacityEstimate",
    "CapacityProvider",
    "ChipOptionSpec",
    "DatacenterSpec",
    "ExchangeRateSpec",
    "LimitsSpec",
    "ManufacturedSpec",
    "ModelDemandSpec",
    "MoneySpec",
    "PlanResult",
    "PlanSpec",
    "SLOSpec",
    "ScenarioSpec",
    "SolverSpec",
    "TableCapacityProvider",
    "TcoEstimate",
    "TcoSpec",
    "UnavailabilitySpec",
    "UnmetDemand",
    "datacenter_defaults",
    "estimate_tco",
    "load_plan",
    "parse_plan",
    "plan_fleet",
]
