"""Cross-field checks of a PlanSpec: every name it mentions exists, every number is sane.

Run by `PlanSpec`'s validator, so a spec built in code is checked exactly like a file.
Chip names are looked up in the hardware catalog here too (a YAML path must exist).
Name problems raise `UnknownNameError` (with the nearest valid names); value problems
raise `ValueError` subclasses, which pydantic reports as validation errors and
`load_plan` turns into one-line `DataFileError`s.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.fleet.periods import period_index, resolve_per_period
from tokenfab.hardware.catalog import load_chip

if TYPE_CHECKING:
    from tokenfab.fleet.spec import PlanSpec


def check_plan(spec: PlanSpec) -> None:
    """Raise on the first inconsistency in `spec`."""
    _unique("period", spec.periods)
    _unique("model", [m.name for m in spec.models])
    _unique("option", [o.name for o in spec.options])
    _unique("scenario", [s.name for s in spec.scenarios])
    for option in spec.options:
        if option.chip is not None:
            load_chip(option.chip)  # UnknownNameError naming the nearest catalog chips
        if option.pool is not None:
            load_chip(option.pool.prefill_chip)
            load_chip(option.pool.decode_chip)
    _check_per_period_fields(spec)
    _check_scenarios(spec)
    _check_currencies(spec)
    _check_capacity_rows(spec)
    _check_components(spec)
    if spec.plan_kind == "two-stage" and spec.first_stage_periods > len(spec.periods):
        raise InvalidInputError(
            f"first_stage_periods {spec.first_stage_periods} exceeds the {len(spec.periods)} periods"
        )
    if spec.objective == "max_capacity" and spec.budget is None:
        raise InvalidInputError("objective max_capacity needs a budget (otherwise capacity is unbounded)")


def _unique(kind: str, names: list[str]) -> None:
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise InvalidInputError(f"{kind} names must be unique; repeated: {', '.join(repeated)}")


def _check_per_period_fields(spec: PlanSpec) -> None:
    periods = spec.periods
    for model in spec.models:
        demand = model.tokens_per_s if model.tokens_per_s is not None else model.requests_per_s
        resolve_per_period(demand, periods, f"demand of model '{model.name}'")
    for option in spec.options:
        resolve_per_period(option.supply, periods, f"supply of option '{option.name}'")
        resolve_per_period(option.price_by_period, periods, f"price_by_period of option '{option.name}'")
        if option.manufactured is not None:
            resolve_per_period(
                option.manufactured.wafers_per_period, periods, f"wafers_per_period of option '{option.name}'"
            )
    for component in spec.components:
        resolve_per_period(component.supply, periods, f"supply of component '{component.name}'")
    build = spec.limits.power_build
    if build is not None:
        resolve_per_period(build.max_mw_per_period, periods, "limits.power_build.max_mw_per_period")
    if spec.budget is not None:
        resolve_per_period(spec.budget.per_period, periods, "budget.per_period")
    resolve_per_period(spec.limits.facility_power_w, periods, "limits.facility_power_w")
    resolve_per_period(spec.limits.floor_space_m2, periods, "limits.floor_space_m2")


def _check_scenarios(spec: PlanSpec) -> None:
    options = [o.name for o in spec.options]
    manufactured = [
        o.name
        for o in spec.options
        if o.manufactured is not None or (o.bill_of_materials is not None and o.bill_of_materials.silicon is not None)
    ]
    components = [c.name for c in spec.components]
    for scenario in spec.scenarios:
        where = f"scenario '{scenario.name}'"
        for cut in scenario.unavailable:
            for name in cut.options:
                if name not in options:
                    raise UnknownNameError(f"option in {where}", name, options)
            first = period_index(cut.from_period, spec.periods, where) if cut.from_period else 0
            last = period_index(cut.until_period, spec.periods, where) if cut.until_period else len(spec.periods) - 1
            if first > last:
                raise InvalidInputError(f"{where}: cut-off from '{cut.from_period}' ends before it starts")
        for name in [*scenario.price_multiplier, *scenario.supply_multiplier]:
            if name not in options:
                raise UnknownNameError(f"option in {where}", name, options)
        for name in scenario.component_supply_multiplier:
            if name not in components:
                raise UnknownNameError(f"component in {where}", name, components)
        for name in scenario.yield_ramps:
            if name not in manufactured:
                raise UnknownNameError(f"manufactured option in {where}.yield_ramps", name, manufactured)
    probabilities = [s.probability for s in spec.scenarios]
    given = [p for p in probabilities if p is not None]
    if given and len(given) != len(probabilities):
        raise InvalidInputError("give a probability for every scenario or for none (then they are equal)")
    if given and not math.isclose(sum(given), 1.0, abs_tol=1e-6):
        raise InvalidInputError(f"scenario probabilities must sum to 1, got {sum(given):.6g}")


def _check_currencies(spec: PlanSpec) -> None:
    from tokenfab.fleet.spec import MoneySpec

    known = {rate.currency for rate in spec.exchange_rates}
    _unique("exchange-rate currency", [rate.currency for rate in spec.exchange_rates])
    if spec.currency in known:
        raise InvalidInputError(f"exchange_rates lists the plan currency {spec.currency} itself")
    for option in spec.options:
        for money in (option.price, option.server_share):
            if isinstance(money, MoneySpec) and money.currency != spec.currency and money.currency not in known:
                raise InvalidInputError(
                    f"option '{option.name}' is priced in {money.currency} but exchange_rates has no "
                    f"{money.currency} -> {spec.currency} rate"
                )


def _check_components(spec: PlanSpec) -> None:
    """Every component a bill of materials names exists; NRE periods exist; wafers only where dies are known."""
    _unique("component", [c.name for c in spec.components])
    components = [c.name for c in spec.components]
    for option in spec.options:
        where = f"option '{option.name}'"
        bom = option.bill_of_materials
        if bom is not None:
            for name in bom.components():
                if name not in components:
                    raise UnknownNameError(f"component in {where}.bill_of_materials", name, components)
            if bom.wafers is not None and option.manufactured is None and bom.silicon is None:
                raise InvalidInputError(f"{where}: bill_of_materials.wafers needs `silicon` (die, node) for a bought chip")
        made = option.manufactured
        if made is not None and made.nre is not None:
            for label in (made.nre.ready_period, made.nre.spend_period):
                if label is not None:
                    period_index(label, spec.periods, f"{where}.manufactured.nre")
        if made is not None and made.wafers_per_period is None and option.supply is None and (
            bom is None or bom.wafers is None
        ):
            raise InvalidInputError(
                f"{where}: a manufactured chip needs wafers_per_period, supply, or a wafer component in its "
                "bill_of_materials (otherwise its supply is unlimited)"
            )


def _check_capacity_rows(spec: PlanSpec) -> None:
    models = [m.name for m in spec.models]
    chips = sorted({o.capacity_key for o in spec.options})
    for row in spec.capacity:
        if row.model not in models:
            raise UnknownNameError("model in capacity:", row.model, models)
        if row.chip not in chips:
            raise UnknownNameError("chip in capacity:", row.chip, chips)
