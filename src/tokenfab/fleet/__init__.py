"""Fleet planning under supply uncertainty: TCO per chip, capacity per chip and model,
and an LP/MILP (HiGHS) that decides what to buy, when, under which scenarios.

Shared resources (components with limited supply consumed through bills of materials, NRE
as a build-or-not binary, facility power built with a lead time, prefill/decode pools as
options) are specified in `fleet.resources`.

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
from tokenfab.fleet.resources import (
    BillOfMaterialsSpec,
    ComponentSpec,
    NreSpec,
    PoolSpec,
    PowerBuildSpec,
    UtilizationSpec,
    parse_pool_key,
)
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
    "BillOfMaterialsSpec",
    "BudgetSpec",
    "CachedCapacityProvider",
    "CapacityEntrySpec",
    "CapacityEstimate",
    "CapacityProvider",
    "ChipOptionSpec",
    "ComponentSpec",
    "DatacenterSpec",
    "ExchangeRateSpec",
    "LimitsSpec",
    "ManufacturedSpec",
    "ModelDemandSpec",
    "MoneySpec",
    "NreSpec",
    "PlanResult",
    "PlanSpec",
    "PoolSpec",
    "PowerBuildSpec",
    "SLOSpec",
    "ScenarioSpec",
    "SolverSpec",
    "TableCapacityProvider",
    "TcoEstimate",
    "TcoSpec",
    "UnavailabilitySpec",
    "UnmetDemand",
    "UtilizationSpec",
    "datacenter_defaults",
    "estimate_tco",
    "load_plan",
    "parse_pool_key",
    "parse_plan",
    "plan_fleet",
]
