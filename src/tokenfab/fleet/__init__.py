"""Fleet planning under supply uncertainty: TCO per chip, capacity per chip and model,
and an LP/MILP (HiGHS) that decides what to buy, when, under which scenarios.

Public entry points: `load_plan(path) -> PlanSpec`, `plan_fleet(spec, capacity_provider=None)
-> PlanResult` (with `to_dict()`), `estimate_tco(TcoSpec) -> TcoEstimate`.
"""

from tokenfab.fleet.capacity import (
    CachedCapacityProvider,
    CapacityEntrySpec,
    CapacityEstimate,
    CapacityProvider,
    SLOSpec,
    TableCapacityProvider,
)
from tokenfab.fleet.loader import load_plan, parse_plan
from tokenfab.fleet.planner import plan_fleet
from tokenfab.fleet.result import PlanResult, UnmetDemand
from tokenfab.fleet.spec import (
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
from tokenfab.fleet.tco import TcoEstimate, TcoSpec, datacenter_defaults, estimate_tco

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
