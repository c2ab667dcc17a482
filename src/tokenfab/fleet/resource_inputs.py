"""Resolve the shared resources of a plan into arrays: component supply and use, NRE, power build-out.

Conventions (as in fleet.inputs): a component is consumed in the *delivery* period of the
chip that carries it (the period the package is built and shipped), and only in scenarios
where that delivery happens; wafer use per chip is 1 / good chips per wafer from the
silicon model at that period's defect density, so a faster yield ramp frees wafers for
more chips. NRE is money spent once, in `spend_period`, if the chip is built at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tokenfab.fleet.periods import period_index, resolve_per_period
from tokenfab.fleet.resources import UtilizationSpec
from tokenfab.silicon.chip_cost import estimate_chip_cost
from tokenfab.silicon.process_data import load_nre

if TYPE_CHECKING:
    from tokenfab.fleet.inputs import PlanData
    from tokenfab.fleet.spec import ChipOptionSpec, PlanSpec, ScenarioSpec

W_PER_MW = 1e6


@dataclass(slots=True)
class ResourceData:
    """Shared resources in plan indices (C components, I options, T periods, S scenarios)."""

    components: list[str]
    component_units: list[str]
    component_supply: np.ndarray  # (C, T, S) units available per period
    component_use: np.ndarray  # (I, C, T, S) units one chip delivered in t consumes
    nre: np.ndarray  # (I,) one-off cost in the plan currency (0: no build decision)
    nre_period: np.ndarray  # (I,) period index the NRE is paid in
    build_decision: np.ndarray  # (I,) bool: a build-or-not binary exists
    power_cost_per_w: float | None  # capex per W of facility power built (None: cannot build)
    power_lead: int
    power_max_w: np.ndarray  # (T,) most W that can be started per period (inf: unlimited)
    power_capex_weight: np.ndarray  # (T,) share of the building's capex the objective counts


def apply_utilization(data: PlanData, utilization: UtilizationSpec) -> None:
    """Count only the usable share of each chip's capacity, and serve the peak plus headroom."""
    data.raw_capacity = data.capacity.copy()
    data.stated_demand = data.demand.copy()
    data.capacity = data.capacity * utilization.max_utilization_frac
    data.demand = data.demand * (1.0 + utilization.peak_headroom_frac)


def build_resource_data(data: PlanData, spec: PlanSpec, scenarios: list[ScenarioSpec], money) -> ResourceData:
    """Everything the component, build-or-not and power-build rows need."""
    num_i, num_t, num_s = data.supply.shape
    names = [c.name for c in spec.components]
    supply = np.zeros((len(names), num_t, num_s))
    for c, component in enumerate(spec.components):
        base = resolve_per_period(component.supply, spec.periods, f"supply of component '{component.name}'")
        for s, scenario in enumerate(scenarios):
            supply[c, :, s] = base * scenario.component_supply_multiplier.get(component.name, 1.0)
    use = np.zeros((num_i, len(names), num_t, num_s))
    for i, option in enumerate(spec.options):
        _fill_use(data, spec, i, option, scenarios, names, use)
    nre, nre_period, build = _nre(spec, money, data)
    cost_per_w, lead, max_w, weight = _power_build(spec, money, num_t)
    return ResourceData(
        components=names,
        component_units=[c.unit for c in spec.components],
        component_supply=supply,
        component_use=use,
        nre=nre,
        nre_period=nre_period,
        build_decision=build,
        power_cost_per_w=cost_per_w,
        power_lead=lead,
        power_max_w=max_w,
        power_capex_weight=weight,
    )


def _fill_use(
    data: PlanData,
    spec: PlanSpec,
    i: int,
    option: ChipOptionSpec,
    scenarios: list[ScenarioSpec],
    names: list[str],
    use: np.ndarray,
) -> None:
    bom = option.bill_of_materials
    if bom is None:
        return
    if bom.hbm is not None:
        use[i, names.index(bom.hbm)] += bom.hbm_stacks_per_chip
    if bom.packaging is not None:
        use[i, names.index(bom.packaging)] += 1.0
    for name, units in bom.other.items():
        use[i, names.index(name)] += units
    if bom.wafers is None:
        return
    wafers = data.wafers_per_chip[i] if option.manufactured is not None else _bought_wafers(spec, option, scenarios)
    use[i, names.index(bom.wafers)] += wafers


def _bought_wafers(spec: PlanSpec, option: ChipOptionSpec, scenarios: list[ScenarioSpec]) -> np.ndarray:
    """Wafers per delivered chip of a bought option whose dies come from a shared foundry line."""
    bom = option.bill_of_materials
    assert bom is not None and bom.silicon is not None  # checked by plan_checks
    out = np.zeros((len(spec.periods), len(scenarios)))
    for s, scenario in enumerate(scenarios):
        cost_spec = bom.silicon
        ramp = scenario.yield_ramps.get(option.name)
        if ramp is not None:
            cost_spec = cost_spec.model_copy(update={"ramp": ramp, "defect_density_per_cm2": None})
        for t in range(len(spec.periods)):
            years = bom.years_into_ramp_at_start + (t + 0.5) * spec.period_years
            out[t, s] = 1.0 / estimate_chip_cost(cost_spec, years_since_ramp_start=years).good_chips_per_wafer
    return out


def _nre(spec: PlanSpec, money, data: PlanData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    num_i = len(spec.options)
    nre, period, build = np.zeros(num_i), np.zeros(num_i, dtype=int), np.zeros(num_i, dtype=bool)
    for i, option in enumerate(spec.options):
        made = option.manufactured
        if made is None or made.nre is None:
            continue
        where = f"NRE of option '{option.name}'"
        design = made.nre.design
        if design is None:
            design = load_nre(made.nre.reference).design_usd.value * money.rate("USD", where)
        nre[i] = money.convert(design, where) + money.convert(made.nre.software, where)
        build[i] = True
        if made.nre.spend_period is not None:
            period[i] = period_index(made.nre.spend_period, spec.periods, where)
        if made.nre.ready_period is not None:  # no deliveries before the design is done
            ready = period_index(made.nre.ready_period, spec.periods, where)
            data.available[i, :ready, :] = False
    return nre, period, build


def _power_build(spec: PlanSpec, money, num_t: int) -> tuple[float | None, int, np.ndarray, np.ndarray]:
    build = spec.limits.power_build
    if build is None:
        return None, 0, np.zeros(num_t), np.ones(num_t)
    cost_per_w = money.convert(build.cost_per_mw, "limits.power_build.cost_per_mw") / W_PER_MW
    max_mw = resolve_per_period(build.max_mw_per_period, spec.periods, "limits.power_build.max_mw_per_period")
    weight = np.ones(num_t)
    if spec.capex_accounting == "depreciation":  # the building outlives the horizon: count its used share
        remaining_years = (num_t - np.arange(num_t) - build.lead_time_periods).clip(min=0) * spec.period_years
        weight = np.minimum(1.0, remaining_years / build.life_years)
    return cost_per_w, build.lead_time_periods, max_mw * W_PER_MW, weight
