"""The plan file, as validated data: what to plan over and under which uncertainties.

A `PlanSpec` is plain, frozen data. Cross-references (periods named in demand, options
named in scenarios, currencies named in prices) are checked here, so a plan that
validates can be planned; catalog look-ups (chip names) happen in `load_plan` and the
planner, which raise `UnknownNameError` with the nearest names.

Per-period values ("a number or a mapping period -> number") follow one rule
everywhere: a number applies to every period; in a mapping, a period that is not listed
takes the value of the latest listed period before it (a step function), and the
first period must be listed. So `{2026H1: 100, 2027H1: 200}` means 100, 100, 200, ...

Money is in the plan's single `currency`. A price may instead be written as
`{value, currency, source}` in another currency; it is converted at the rate the file
states in `exchange_rates` (plan-currency units per one unit of the other currency).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tokenfab.fleet.capacity import CapacityEntrySpec, SLOSpec
from tokenfab.fleet.resources import (
    BillOfMaterialsSpec,
    ComponentSpec,
    Money,
    MoneySpec,  # noqa: F401  (re-exported: fleet.inputs and plan_checks import it from here)
    NreSpec,
    PoolSpec,
    PowerBuildSpec,
    UtilizationSpec,
)
from tokenfab.hardware.catalog import load_chip
from tokenfab.silicon.chip_cost import ChipCostSpec
from tokenfab.silicon.ramp import DefectRampSpec

PerPeriod = float | dict[str, float]
"""A number for every period, or a step function keyed by period label."""

_NAME = r"^[a-z0-9][a-z0-9.+_\-]*$"
_CURRENCY = r"^[A-Z]{3}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExchangeRateSpec(_Frozen):
    """How many plan-currency units one unit of `currency` buys."""

    currency: str = Field(pattern=_CURRENCY, description="The foreign currency, e.g. 'USD'.")
    rate: float = Field(gt=0, description="Plan-currency units per one unit of `currency`.")
    source: str = Field(min_length=1, description="Where the rate comes from (and its date).")


class ModelDemandSpec(_Frozen):
    """Traffic of one model that the fleet must serve, per period, at an SLO."""

    name: str = Field(pattern=_NAME, description="Model name, as the capacity provider knows it.")
    slo: SLOSpec = Field(description="Latency targets the capacity figures must respect.")
    tokens_per_s: PerPeriod | None = Field(
        default=None, description="Demand in tokens/s (the same tokens the capacity figures count)."
    )
    requests_per_s: PerPeriod | None = Field(
        default=None, description="Demand in requests/s (with tokens_per_request)."
    )
    tokens_per_request: float | None = Field(
        default=None, gt=0, description="Tokens per request, to convert requests/s."
    )

    @model_validator(mode="after")
    def _one_demand(self) -> ModelDemandSpec:
        if (self.tokens_per_s is None) == (self.requests_per_s is None):
            raise ValueError(f"model '{self.name}': give exactly one of tokens_per_s or requests_per_s")
        if self.requests_per_s is not None and self.tokens_per_request is None:
            raise ValueError(f"model '{self.name}': requests_per_s needs tokens_per_request")
        return self


class ManufacturedSpec(_Frozen):
    """An in-house chip: unit cost and supply come from the silicon model each period."""

    chip_cost: ChipCostSpec = Field(
        description="Die, node, HBM and packaging (see silicon.ChipCostSpec); die area, die count and HBM "
        "default to the option's catalog chip."
    )
    years_into_ramp_at_start: float = Field(
        default=0.0, ge=0, le=50, description="How far the yield ramp has run when the first period begins, years."
    )
    wafers_per_period: PerPeriod | None = Field(
        default=None,
        description="Wafer starts reserved for this chip per period (None: limited by the bill of materials' "
        "shared wafer component, or unlimited).",
    )
    markup_frac: float = Field(default=0.0, ge=0, le=10, description="Margin over manufacturing cost (0 for in-house).")
    nre: NreSpec | None = Field(
        default=None, description="One-off cost of building the chip at all: a build-or-not decision (a MILP)."
    )


class ChipOptionSpec(_Frozen):
    """One thing the planner may buy: a catalog chip, a chip YAML, or a custom option."""

    name: str = Field(pattern=_NAME, description="Unique option name (used in reports and scenarios).")
    chip: str | None = Field(
        default=None, description="Catalog chip name or chip YAML path; None for a purely custom option."
    )
    price: Money | None = Field(
        default=None, description="Price per chip; default the catalog's price_usd. Exclusive with `manufactured`."
    )
    price_by_period: dict[str, float] | None = Field(
        default=None, description="Step-function price per period, in the same currency as `price`."
    )
    manufactured: ManufacturedSpec | None = Field(default=None, description="Made in-house (see ManufacturedSpec).")
    server_share: Money | None = Field(
        default=None, description="Non-accelerator server cost per chip; default from fleet/data/datacenter.yaml."
    )
    supply: PerPeriod | None = Field(
        default=None, description="Most chips deliverable per period (None: unlimited, or from wafers)."
    )
    lead_time_periods: int = Field(default=0, ge=0, le=40, description="Periods between order and delivery.")
    integer: bool = Field(default=False, description="Buy whole chips (a MILP) rather than fractional ones.")
    existing_units: float = Field(default=0.0, ge=0, description="Chips already installed before the first period.")
    floor_m2_per_chip: float | None = Field(default=None, ge=0, description="Floor space per chip incl. aisles, m^2.")
    depreciation_years: float | None = Field(default=None, gt=0, le=30, description="Service life; default the plan's.")
    bill_of_materials: BillOfMaterialsSpec | None = Field(
        default=None, description="Components one chip consumes (shared HBM, packaging, wafer starts)."
    )
    pool: PoolSpec | None = Field(
        default=None, description="A prefill/decode pool bought as one unit (capacity asked under pool.capacity_key)."
    )

    @property
    def capacity_key(self) -> str:
        """The name the capacity provider and `capacity:` rows know this option by."""
        if self.pool is not None:
            return self.pool.capacity_key
        return self.chip or self.name

    @property
    def chips_per_unit(self) -> float:
        return self.pool.num_chips if self.pool is not None else 1.0

    @model_validator(mode="before")
    @classmethod
    def _die_from_catalog(cls, data: object) -> object:
        """A manufactured catalog chip may omit die area, die count and HBM: the catalog has them."""
        if not isinstance(data, dict) or not data.get("chip") or not isinstance(data.get("manufactured"), dict):
            return data
        cost = data["manufactured"].get("chip_cost")
        if not isinstance(cost, dict) or {"die_area_mm2", "num_dies", "hbm_capacity_bytes"} <= set(cost):
            return data
        chip = load_chip(data["chip"])  # UnknownNameError with the nearest names
        filled = dict(cost)
        if chip.die_area_mm2 is not None:
            filled.setdefault("die_area_mm2", chip.die_area_mm2.value)
        filled.setdefault("num_dies", chip.num_dies)
        if chip.memory.kind.upper().startswith("HBM"):
            filled.setdefault("hbm_capacity_bytes", chip.memory_capacity_bytes)
        return {**data, "manufactured": {**data["manufactured"], "chip_cost": filled}}

    @model_validator(mode="after")
    def _price_source(self) -> ChipOptionSpec:
        if self.manufactured is not None and (self.price is not None or self.price_by_period is not None):
            raise ValueError(f"option '{self.name}': a manufactured option takes its price from the silicon model")
        if self.pool is not None and (self.chip is not None or self.manufactured is not None):
            raise ValueError(f"option '{self.name}': a pool option names its chips in `pool`, not `chip`/`manufactured`")
        if self.chip is None and self.pool is None and self.price is None and self.manufactured is None:
            raise ValueError(f"option '{self.name}': a custom option (no chip) needs price or manufactured")
        return self


class UnavailabilitySpec(_Frozen):
    """Options that cannot be delivered in some periods of a scenario."""

    options: list[str] = Field(min_length=1, description="Option names cut off.")
    from_period: str | None = Field(default=None, description="First period cut off (default: the first).")
    until_period: str | None = Field(default=None, description="Last period cut off (default: the last).")


class ScenarioSpec(_Frozen):
    """One possible future: cut-offs, price and supply shifts, a different yield ramp."""

    name: str = Field(pattern=_NAME, description="Scenario name.")
    probability: float | None = Field(default=None, ge=0, le=1, description="Weight in expected cost (default equal).")
    description: str = Field(default="", description="What this scenario stands for.")
    unavailable: list[UnavailabilitySpec] = Field(default_factory=list, description="Deliveries that do not happen.")
    price_multiplier: dict[str, float] = Field(default_factory=dict, description="Option -> price factor (tariffs).")
    supply_multiplier: dict[str, float] = Field(default_factory=dict, description="Option -> supply factor.")
    demand_multiplier: float = Field(default=1.0, ge=0, le=1000, description="Scales every model's demand.")
    component_supply_multiplier: dict[str, float] = Field(
        default_factory=dict, description="Component -> supply factor (0: cut off, e.g. an HBM export ban)."
    )
    yield_ramps: dict[str, DefectRampSpec] = Field(
        default_factory=dict, description="Manufactured option -> the yield ramp that holds in this scenario."
    )

    @model_validator(mode="after")
    def _factors(self) -> ScenarioSpec:
        for label, factors in (
            ("price_multiplier", self.price_multiplier),
            ("supply_multiplier", self.supply_multiplier),
            ("component_supply_multiplier", self.component_supply_multiplier),
        ):
            bad = {k: v for k, v in factors.items() if not 0 <= v <= 1000}
            if bad:
                raise ValueError(f"scenario '{self.name}': {label} must lie in [0, 1000], got {bad}")
        return self


class BudgetSpec(_Frozen):
    """Capital available for purchases (plan currency), in total and/or per period."""

    total: float | None = Field(default=None, ge=0, description="Capex over the whole horizon.")
    per_period: PerPeriod | None = Field(default=None, description="Capex available in each period.")
    source: str = Field(default="", description="Where the budget figure comes from.")

    @model_validator(mode="after")
    def _something(self) -> BudgetSpec:
        if self.total is None and self.per_period is None:
            raise ValueError("budget needs total or per_period")
        return self


class LimitsSpec(_Frozen):
    """Facility limits on the installed fleet."""

    facility_power_w: PerPeriod | None = Field(
        default=None, description="Grid power for the fleet (chip x server ratio x PUE), W."
    )
    floor_space_m2: PerPeriod | None = Field(default=None, description="White space for the fleet, m^2.")
    power_build: PowerBuildSpec | None = Field(
        default=None, description="Facility power the planner may add (cost per MW, lead time) beyond the limit."
    )


class DatacenterSpec(_Frozen):
    """Overrides of fleet/data/datacenter.yaml (money in the plan currency)."""

    pue: float | None = Field(default=None, ge=1, le=5, description="Power usage effectiveness.")
    electricity_price_per_kwh: float | None = Field(default=None, ge=0, description="Per kWh, plan currency.")
    colocation_per_kw_month: float | None = Field(default=None, ge=0, description="Facility per kW IT, per month.")
    server_power_ratio: float | None = Field(default=None, ge=1, le=5, description="Server wall / chip power.")
    network_frac_of_capex: float | None = Field(default=None, ge=0, lt=1, description="Network share of capex.")
    depreciation_years: float | None = Field(default=None, gt=0, le=30, description="Default service life.")
    floor_m2_per_chip: float | None = Field(default=None, ge=0, description="Default floor space per chip, m^2.")
    floor_cost_per_m2_year: float | None = Field(
        default=None, ge=0, description="Space rent per m^2-year beyond colocation (default 0), plan currency."
    )


class SolverSpec(_Frozen):
    """HiGHS settings and the price of unmet demand."""

    time_limit_s: float = Field(default=60.0, gt=0, le=86400, description="Wall-clock limit for one solve.")
    mip_rel_gap: float = Field(default=1e-4, ge=0, le=1, description="Relative MIP gap at which to stop.")
    unmet_penalty_per_token_per_s_year: float | None = Field(
        default=None, gt=0, description="Cost of 1 token/s of unmet demand for a year (default: far above any chip)."
    )
    threads: int = Field(default=1, ge=1, le=256, description="Solver threads (1 keeps runs reproducible).")
    presolve: Literal["on", "off"] = Field(
        default="on", description="HiGHS presolve; 'off' can speed up large robust MILPs (see bench/plan_speed.py)."
    )


class PlanSpec(_Frozen):
    """A fleet-planning problem: periods, demand, options, scenarios, money, limits."""

    name: str = Field(default="plan", description="A name for reports.")
    description: str = Field(default="", description="What this plan is about.")
    currency: str = Field(default="USD", pattern=_CURRENCY, description="The one currency of every total.")
    exchange_rates: list[ExchangeRateSpec] = Field(default_factory=list, description="Conversions into `currency`.")
    periods: list[str] = Field(min_length=1, max_length=400, description="Ordered period labels, e.g. 2026H1.")
    period_years: float = Field(gt=0, le=10, description="Length of one period, years (0.25 quarter, 0.5 half).")
    models: list[ModelDemandSpec] = Field(min_length=1, description="Demand per model.")
    options: list[ChipOptionSpec] = Field(min_length=1, description="What may be bought.")
    scenarios: list[ScenarioSpec] = Field(default_factory=list, description="Futures (default: one 'base').")
    budget: BudgetSpec | None = Field(default=None, description="Capital limits (required for max_capacity).")
    limits: LimitsSpec = Field(default_factory=LimitsSpec, description="Power and floor-space limits.")
    datacenter: DatacenterSpec = Field(default_factory=DatacenterSpec, description="TCO figure overrides.")
    capacity: list[CapacityEntrySpec] = Field(
        default_factory=list, description="Explicit per-chip capacity; overrides any injected provider."
    )
    components: list[ComponentSpec] = Field(
        default_factory=list, description="Shared parts with limited supply (HBM, packaging, wafer starts)."
    )
    utilization: UtilizationSpec = Field(
        default_factory=UtilizationSpec, description="Usable share of chip capacity and peak headroom."
    )
    regret: bool = Field(
        default=False,
        description="Also solve each scenario alone (perfect foresight) and report each scenario's regret.",
    )
    objective: Literal["min_cost", "max_capacity"] = Field(
        default="min_cost", description="Meet demand at least cost, or serve the largest multiple of it."
    )
    plan_kind: Literal["robust", "two-stage"] = Field(
        default="robust", description="One plan for all scenarios, or shared first stage + per-scenario recourse."
    )
    first_stage_periods: int = Field(default=1, ge=1, description="Two-stage: periods whose purchases are shared.")
    capex_accounting: Literal["cash", "depreciation"] = Field(
        default="cash", description="Count full purchase price, or only the depreciation inside the horizon."
    )
    solver: SolverSpec = Field(default_factory=SolverSpec, description="Solver settings.")

    @model_validator(mode="after")
    def _cross_references(self) -> PlanSpec:
        from tokenfab.fleet.plan_checks import check_plan

        check_plan(self)
        return self

    @property
    def scenario_list(self) -> list[ScenarioSpec]:
        """The scenarios, or a single 'base' scenario when the file gives none."""
        return list(self.scenarios) or [ScenarioSpec(name="base", probability=1.0)]
