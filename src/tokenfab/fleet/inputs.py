"""Turn a PlanSpec into arrays: prices, supply, capacity, costs per option, period, scenario.

Everything the optimisation model needs is resolved here, once, in the plan's currency
and SI units, so the LP builder is pure linear algebra and the report can explain
every coefficient. Index order is always (option i, model m, period t, scenario s).

Timing conventions (documented once, used everywhere):
- money for a purchase is spent in the period the order is placed (budgets count it
  there); the chips arrive `lead_time_periods` later;
- supply limits and cut-offs apply to the *delivery* period (a vendor cut off from
  2027 delivers nothing from 2027 on, whatever was ordered before);
- an in-house chip's unit cost and supply are evaluated at the middle of its delivery
  period, with the yield ramp of the scenario;
- chips serve from their delivery period for `depreciation_years` and then retire;
  `existing_units` serve through the whole horizon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tokenfab.errors import DoesNotFitError, InvalidInputError, UnknownNameError
from tokenfab.fleet.capacity import CapacityProvider, combined_provider
from tokenfab.fleet.periods import period_index, resolve_per_period
from tokenfab.fleet.resource_inputs import ResourceData, apply_utilization, build_resource_data
from tokenfab.fleet.spec import ChipOptionSpec, MoneySpec, PlanSpec, ScenarioSpec
from tokenfab.fleet.tco import (
    capex_per_chip,
    datacenter_defaults,
    energy_cost_per_year,
    facility_cost_per_year,
)
from tokenfab.hardware.catalog import load_chip
from tokenfab.silicon.chip_cost import estimate_chip_cost


@dataclass(slots=True)
class DatacenterFigures:
    """Resolved data-center figures, money in the plan currency."""

    pue: float
    electricity_price_per_kwh: float
    colocation_per_kw_month: float
    server_share_per_chip_usd: float  # converted per option, only when an option needs it
    network_frac_of_capex: float
    server_power_ratio: float
    depreciation_years: float
    floor_m2_per_chip: float
    floor_cost_per_m2_year: float


@dataclass(slots=True)
class PlanData:
    """The numeric planning problem (see the module docstring for conventions)."""

    periods: list[str]
    models: list[str]
    options: list[str]
    scenarios: list[str]
    probability: np.ndarray  # (S,)
    period_years: float
    capacity: np.ndarray  # (I, M) tokens/s per chip within the model's SLO
    power_w: np.ndarray  # (I, M) average chip power serving that model
    server_ratio: np.ndarray  # (I, M) server wall / chip power applied to power_w (1 where power_w is at the wall)
    capacity_source: list[list[str]]  # (I, M)
    demand: np.ndarray  # (M, T, S) tokens/s
    unit_capex: np.ndarray  # (I, T, S) capex per chip ordered in t (chip + server + network)
    chip_price: np.ndarray  # (I, T, S) the chip part of unit_capex
    server_share: np.ndarray  # (I,) non-accelerator server cost per chip
    supply: np.ndarray  # (I, T, S) chips deliverable in t (inf: unlimited)
    available: np.ndarray  # (I, T, S) bool: deliveries happen in t
    lead: np.ndarray  # (I,) int periods
    life: np.ndarray  # (I,) int periods in service
    integer: np.ndarray  # (I,) bool
    existing: np.ndarray  # (I,) chips installed before the horizon
    energy_cost: np.ndarray  # (I, M) per chip per period while serving m
    facility_cost: np.ndarray  # (I,) per installed chip per period
    facility_power_w: np.ndarray  # (I,) grid power reserved per installed chip
    floor_m2: np.ndarray  # (I,)
    capex_weight: np.ndarray  # (I, T) share of capex the objective counts (1 for cash accounting)
    budget_total: float | None
    budget_period: np.ndarray  # (T,) inf where unlimited
    power_limit_w: np.ndarray  # (T,)
    floor_limit_m2: np.ndarray  # (T,)
    currency: str
    datacenter: DatacenterFigures
    silicon_rows: list[dict] = field(default_factory=list)
    wafers_per_chip: np.ndarray | None = None  # (I, T, S) by delivery period; NaN where the silicon is unknown
    raw_capacity: np.ndarray | None = None  # (I, M) provider tokens/s before the utilisation cap
    stated_demand: np.ndarray | None = None  # (M, T, S) demand before peak headroom
    resources: ResourceData | None = None  # components, NRE, power build-out (fleet.resource_inputs)


class _Money:
    """Converts figures into the plan currency, asking for a rate only when one is needed."""

    def __init__(self, spec: PlanSpec):
        self.currency = spec.currency
        self.rates = {rate.currency: rate.rate for rate in spec.exchange_rates}

    def rate(self, currency: str, what: str) -> float:
        if currency == self.currency:
            return 1.0
        if currency not in self.rates:
            raise InvalidInputError(
                f"{what} is in {currency}: add exchange_rates entry {currency} -> {self.currency} to the plan"
            )
        return self.rates[currency]

    def convert(self, money: float | MoneySpec, what: str) -> float:
        if isinstance(money, MoneySpec):
            return money.value * self.rate(money.currency, what)
        return float(money)


def build_plan_data(spec: PlanSpec, provider: CapacityProvider | None = None) -> PlanData:
    """Resolve `spec` (catalog, capacity provider, silicon model, data files) into arrays."""
    money = _Money(spec)
    scenarios = spec.scenario_list
    periods, num_t = spec.periods, len(spec.periods)
    figures = _datacenter_figures(spec, money)
    lookup = combined_provider(spec.capacity, provider)
    capacity, power_w, sources, at_wall = _capacity(spec, lookup)
    life = np.array(
        [max(1, round((o.depreciation_years or figures.depreciation_years) / spec.period_years)) for o in spec.options]
    )
    data = PlanData(
        periods=list(periods),
        models=[m.name for m in spec.models],
        options=[o.name for o in spec.options],
        scenarios=[s.name for s in scenarios],
        probability=_probabilities(scenarios),
        period_years=spec.period_years,
        capacity=capacity,
        power_w=power_w,
        server_ratio=np.where(at_wall, 1.0, figures.server_power_ratio),
        capacity_source=sources,
        demand=_demand(spec, scenarios),
        unit_capex=np.zeros((len(spec.options), num_t, len(scenarios))),
        chip_price=np.zeros((len(spec.options), num_t, len(scenarios))),
        server_share=np.zeros(len(spec.options)),
        supply=np.zeros((len(spec.options), num_t, len(scenarios))),
        available=np.ones((len(spec.options), num_t, len(scenarios)), dtype=bool),
        lead=np.array([o.lead_time_periods for o in spec.options], dtype=int),
        life=life.astype(int),
        integer=np.array([o.integer for o in spec.options], dtype=bool),
        existing=np.array([o.existing_units for o in spec.options], dtype=float),
        energy_cost=np.zeros_like(capacity),
        facility_cost=np.zeros(len(spec.options)),
        facility_power_w=np.zeros(len(spec.options)),
        floor_m2=np.array(
            [_or(o.floor_m2_per_chip, figures.floor_m2_per_chip) * o.chips_per_unit for o in spec.options]
        ),
        capex_weight=np.ones((len(spec.options), num_t)),
        budget_total=spec.budget.total if spec.budget else None,
        budget_period=resolve_per_period(spec.budget.per_period if spec.budget else None, periods, "budget"),
        power_limit_w=resolve_per_period(spec.limits.facility_power_w, periods, "limits.facility_power_w"),
        floor_limit_m2=resolve_per_period(spec.limits.floor_space_m2, periods, "limits.floor_space_m2"),
        currency=spec.currency,
        datacenter=figures,
    )
    data.wafers_per_chip = np.full(data.supply.shape, np.nan)
    for i, option in enumerate(spec.options):
        _fill_option(data, spec, i, option, scenarios, money)
    _fill_running_costs(data)
    apply_utilization(data, spec.utilization)
    data.resources = build_resource_data(data, spec, scenarios, money)
    if spec.capex_accounting == "depreciation":
        _fill_capex_weight(data)
    return data


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _datacenter_figures(spec: PlanSpec, money: _Money) -> DatacenterFigures:
    base = datacenter_defaults()
    override = spec.datacenter

    def amount(name: str) -> float:
        given = getattr(override, name)
        if given is not None:
            return float(given)
        return getattr(base, name).value * money.rate(base.currency, f"the default {name} (datacenter.yaml)")

    return DatacenterFigures(
        pue=_or(override.pue, base.pue.value),
        electricity_price_per_kwh=amount("electricity_price_per_kwh"),
        colocation_per_kw_month=amount("colocation_per_kw_month"),
        server_share_per_chip_usd=base.server_share_per_chip.value,
        network_frac_of_capex=_or(override.network_frac_of_capex, base.network_frac_of_capex.value),
        server_power_ratio=_or(override.server_power_ratio, base.server_power_ratio.value),
        depreciation_years=_or(override.depreciation_years, base.depreciation_years.value),
        floor_m2_per_chip=_or(override.floor_m2_per_chip, base.floor_m2_per_chip.value),
        floor_cost_per_m2_year=_or(override.floor_cost_per_m2_year, 0.0),
    )


def _probabilities(scenarios: list[ScenarioSpec]) -> np.ndarray:
    given = [s.probability for s in scenarios]
    if all(p is None for p in given):
        return np.full(len(scenarios), 1.0 / len(scenarios))
    return np.array(given, dtype=float)


def _capacity(spec: PlanSpec, lookup: CapacityProvider) -> tuple[np.ndarray, np.ndarray, list[list[str]], np.ndarray]:
    """Ask the provider once per (chip, model); a model that does not fit counts as 0 tokens/s."""
    capacity = np.zeros((len(spec.options), len(spec.models)))
    power = np.ones_like(capacity)
    at_wall = np.zeros(capacity.shape, dtype=bool)
    sources = [["" for _ in spec.models] for _ in spec.options]
    for i, option in enumerate(spec.options):
        if option.chip is not None:
            load_chip(option.chip)  # UnknownNameError with the nearest catalog names
        key = option.capacity_key
        for m, model in enumerate(spec.models):
            try:
                estimate = lookup(key, model.name, model.slo)
            except DoesNotFitError as exc:
                sources[i][m] = f"does not fit: {exc}"
                continue
            except UnknownNameError:
                if option.pool is None:
                    raise
                raise InvalidInputError(
                    f"no capacity for pool '{key}' serving '{model.name}': add capacity: rows for it, or pass a "
                    "provider that models prefill/decode pools"
                ) from None
            capacity[i, m] = estimate.tokens_per_s_per_chip
            power[i, m] = estimate.avg_power_w_per_chip
            at_wall[i, m] = estimate.wall_power
            sources[i][m] = estimate.source
    if not np.any(capacity > 0):
        raise InvalidInputError("no chip option can serve any model (every capacity is 0 tokens/s)")
    return capacity, power, sources, at_wall


def _demand(spec: PlanSpec, scenarios: list[ScenarioSpec]) -> np.ndarray:
    demand = np.zeros((len(spec.models), len(spec.periods), len(scenarios)))
    for m, model in enumerate(spec.models):
        where = f"demand of model '{model.name}'"
        if model.tokens_per_s is not None:
            tokens = resolve_per_period(model.tokens_per_s, spec.periods, where)
        else:
            assert model.tokens_per_request is not None
            tokens = resolve_per_period(model.requests_per_s, spec.periods, where) * model.tokens_per_request
        for s, scenario in enumerate(scenarios):
            demand[m, :, s] = tokens * scenario.demand_multiplier
    return demand


def _fill_option(
    data: PlanData, spec: PlanSpec, i: int, option: ChipOptionSpec, scenarios: list[ScenarioSpec], money: _Money
) -> None:
    """Prices, supply and availability of option i in every period and scenario."""
    periods, num_t = spec.periods, len(spec.periods)
    server = _server_share(data, option, money)
    if option.manufactured is not None:
        _fill_manufactured(data, spec, i, option, scenarios, money)
    else:
        base = _bought_price(option, money, num_t, periods)
        supply = resolve_per_period(option.supply, periods, f"supply of option '{option.name}'")
        for s, scenario in enumerate(scenarios):
            data.chip_price[i, :, s] = base * scenario.price_multiplier.get(option.name, 1.0)
            data.supply[i, :, s] = _scaled(supply, scenario.supply_multiplier.get(option.name, 1.0))
    for s, scenario in enumerate(scenarios):
        for cut in scenario.unavailable:
            if option.name in cut.options:
                first = period_index(cut.from_period, periods, scenario.name) if cut.from_period else 0
                last = period_index(cut.until_period, periods, scenario.name) if cut.until_period else num_t - 1
                data.available[i, first : last + 1, s] = False
    network = data.datacenter.network_frac_of_capex
    data.server_share[i] = server
    data.unit_capex[i] = capex_per_chip(data.chip_price[i], server, network)


def _scaled(supply: np.ndarray, factor: float) -> np.ndarray:
    return np.zeros_like(supply) if factor == 0 else supply * factor


def _server_share(data: PlanData, option: ChipOptionSpec, money: _Money) -> float:
    if option.server_share is not None:
        return money.convert(option.server_share, f"server_share of option '{option.name}'")
    usd = data.datacenter.server_share_per_chip_usd * option.chips_per_unit
    return usd * money.rate("USD", "the default server share per chip (datacenter.yaml)")


def _bought_price(option: ChipOptionSpec, money: _Money, num_t: int, periods: list[str]) -> np.ndarray:
    """Chip price per order period in the plan currency: explicit, per period, or the catalog's."""
    what = f"price of option '{option.name}'"
    if option.price is not None:
        currency = option.price.currency if isinstance(option.price, MoneySpec) else money.currency
        base = money.convert(option.price, what)
    elif option.pool is not None:  # a pool unit is one prefill chip and r decode chips at catalog prices
        pool = option.pool
        prices = [load_chip(pool.prefill_chip).price_usd, load_chip(pool.decode_chip).price_usd]
        if any(price is None for price in prices):
            raise InvalidInputError(
                f"pool option '{option.name}': give `price` per pool unit (a chip of the pool has no catalog price_usd)"
            )
        usd = prices[0].value + pool.decode_per_prefill * prices[1].value
        currency, base = "USD", usd * money.rate("USD", f"catalog {what}")
    else:
        chip = load_chip(option.chip) if option.chip else None
        if chip is None or chip.price_usd is None:
            raise InvalidInputError(f"option '{option.name}' has no price and chip '{option.chip}' has no price_usd")
        currency, base = "USD", chip.price_usd.value * money.rate("USD", f"catalog {what}")
    if option.price_by_period is None:
        return np.full(num_t, base)
    return resolve_per_period(option.price_by_period, periods, what) * money.rate(currency, what)


def _fill_manufactured(
    data: PlanData, spec: PlanSpec, i: int, option: ChipOptionSpec, scenarios: list[ScenarioSpec], money: _Money
) -> None:
    """Unit cost and supply of an in-house chip from the silicon model, per scenario's ramp."""
    made = option.manufactured
    assert made is not None
    wafers = resolve_per_period(made.wafers_per_period, spec.periods, f"wafers_per_period of option '{option.name}'")
    usd = money.rate("USD", f"the silicon cost of option '{option.name}'")
    cap = resolve_per_period(option.supply, spec.periods, f"supply of option '{option.name}'")
    cache: dict[tuple[int, int], object] = {}
    for s, scenario in enumerate(scenarios):
        ramp = scenario.yield_ramps.get(option.name)
        cost_spec = made.chip_cost
        if ramp is not None:
            cost_spec = cost_spec.model_copy(update={"ramp": ramp, "defect_density_per_cm2": None})
        for t, label in enumerate(spec.periods):
            years = made.years_into_ramp_at_start + (t + 0.5) * spec.period_years
            key = (id(ramp), t)
            if key not in cache:
                cache[key] = estimate_chip_cost(cost_spec, years_since_ramp_start=years)
            estimate = cache[key]
            unit_usd = estimate.cost_per_good_chip_usd * (1.0 + made.markup_frac)
            data.chip_price[i, t, s] = unit_usd * usd * scenario.price_multiplier.get(option.name, 1.0)
            supply = wafers[t] * estimate.good_chips_per_wafer
            data.wafers_per_chip[i, t, s] = 1.0 / estimate.good_chips_per_wafer
            data.supply[i, t, s] = min(supply, cap[t])
            data.supply[i, t, s] *= scenario.supply_multiplier.get(option.name, 1.0)
            data.silicon_rows.append(
                {
                    "option": option.name,
                    "scenario": scenario.name,
                    "period": label,
                    "defect_density_per_cm2": estimate.defect_density_per_cm2,
                    "die_yield_frac": estimate.die_yield_frac,
                    "good_chips_per_wafer": estimate.good_chips_per_wafer,
                    "cost_per_chip": data.chip_price[i, t, s],
                    "supply_units": data.supply[i, t, s],
                }
            )
    # Orders pay the cost of the period their chips are made in (delivery), not the order period.
    lead = option.lead_time_periods
    if lead:
        shifted = np.minimum(np.arange(len(spec.periods)) + lead, len(spec.periods) - 1)
        data.chip_price[i] = data.chip_price[i][shifted]


def _fill_running_costs(data: PlanData) -> None:
    """Energy per allocated chip-period; facility (and floor rent) per installed chip-period."""
    dc = data.datacenter
    data.energy_cost = (
        energy_cost_per_year(data.power_w, data.server_ratio, dc.pue, dc.electricity_price_per_kwh)
        * data.period_years
    )
    server_w = data.power_w * data.server_ratio  # at the wall, per chip
    usable = np.where(data.capacity > 0, server_w, 0.0)
    reserved_w = np.where(usable.max(axis=1) > 0, usable.max(axis=1), server_w.max(axis=1))
    facility_per_year = facility_cost_per_year(reserved_w, 1.0, dc.colocation_per_kw_month)
    floor_per_year = data.floor_m2 * dc.floor_cost_per_m2_year
    data.facility_cost = (facility_per_year + floor_per_year) * data.period_years
    data.facility_power_w = reserved_w * dc.pue


def _fill_capex_weight(data: PlanData) -> None:
    """Depreciation accounting: count only the share of capex used up inside the horizon."""
    num_t = len(data.periods)
    for i in range(len(data.options)):
        for t in range(num_t):
            in_service = max(0, min(int(data.life[i]), num_t - (t + int(data.lead[i]))))
            data.capex_weight[i, t] = in_service / data.life[i]
