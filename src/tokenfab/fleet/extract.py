"""Read a solved LinearProgram back into plan terms: purchases, fleet, costs, duals.

Kept apart from the model builder so that what the report says about a constraint is
derived in one place from the solver's numbers, with the units and signs spelled out.
Shadow prices are reported as the change in the *reported* objective (cost, or the
multiple of demand for max_capacity) per unit increase of a constraint's limit.
"""

from __future__ import annotations

import numpy as np

from tokenfab.fleet.inputs import PlanData
from tokenfab.fleet.lp_model import LinearProgram, RowKind
from tokenfab.fleet.result import UnmetDemand
from tokenfab.fleet.solve import SolveOutcome
from tokenfab.fleet.tco import TcoSpec, estimate_tco

MAX_REPORTED_DUALS = 60
"""The report lists at most this many shadow prices, largest first (the JSON says how many exist)."""


class Solution:
    """Primal values of a solved program, reshaped to plan indices."""

    def __init__(self, data: PlanData, lp: LinearProgram, outcome: SolveOutcome):
        self.data, self.lp, self.outcome = data, lp, outcome
        values = outcome.values
        self.buy = values[lp.buy_col]  # (I, T, S)
        alloc = np.where(lp.alloc_col >= 0, values[np.maximum(lp.alloc_col, 0)], 0.0)
        self.alloc = np.maximum(alloc, 0.0)  # (I, M, T, S)
        installed = np.broadcast_to(data.existing[:, None, None], self.buy.shape).copy()
        terms = lp.delivered
        np.add.at(installed, (terms.option, terms.period, terms.scenario), values[terms.col])
        self.installed = installed
        self.served = np.einsum("im,imts->mts", data.capacity, self.alloc)
        if lp.unmet_col[0, 0, 0] >= 0:
            self.unmet = np.maximum(values[lp.unmet_col], 0.0)
        else:
            self.unmet = np.maximum(data.demand - self.served, 0.0)

    def scenario_costs(self) -> list[dict]:
        """Money per scenario: cash capex, energy, facility, unmet-demand penalty, total."""
        data, lp = self.data, self.lp
        rows = []
        for s, name in enumerate(data.scenarios):
            capex = float(np.sum(data.unit_capex[:, :, s] * self.buy[:, :, s]))
            counted = float(np.sum(data.unit_capex[:, :, s] * data.capex_weight * self.buy[:, :, s]))
            energy = float(np.einsum("im,imt->", data.energy_cost, self.alloc[:, :, :, s]))
            facility = float(data.facility_cost @ self.installed[:, :, s].sum(axis=1))
            penalty = float(lp.unmet_cost @ self.unmet[:, :, s].sum(axis=1)) if lp.unmet_col[0, 0, 0] >= 0 else 0.0
            nre, power_capex, power_counted = self._fixed_costs(s)
            capex += nre + power_capex
            counted += nre + power_counted
            demand = data.demand[:, :, s]
            served_frac = np.divide(self.served[:, :, s], demand, out=np.full(demand.shape, np.inf), where=demand > 0)
            rows.append(
                {
                    "name": name,
                    "probability": float(data.probability[s]),
                    "capex": capex,
                    "capex_counted": counted,
                    "energy_cost": energy,
                    "facility_cost": facility,
                    "nre": nre,
                    "power_build_capex": power_capex,
                    "total_cost": counted + energy + facility,
                    "unmet_penalty": penalty,
                    "unmet_tokens_per_s_periods": float(self.unmet[:, :, s].sum()),
                    "min_served_frac": float(served_frac.min()),
                }
            )
        return rows

    def _fixed_costs(self, s: int) -> tuple[float, float, float]:
        """(NRE paid, power-build cash, power-build cost counted) in scenario s."""
        fixed, values = self.lp.fixed, self.outcome.values
        amount = values[fixed.col[:, s]] if fixed.size else np.zeros(0)
        nre = fixed.kind == 0
        return (
            float(amount[nre] @ fixed.capex[nre]),
            float(amount[~nre] @ fixed.capex[~nre]),
            float(amount[~nre] @ fixed.cost[~nre]),
        )

    def build_decisions(self) -> list[dict]:
        """One row per chip with a build-or-not decision: built or not, and its NRE."""
        res, lp = self.data.resources, self.lp
        rows = []
        for i in np.flatnonzero(lp.build_col >= 0):
            built = self.outcome.values[lp.build_col[i]] > 0.5
            rows.append({"chip": self.data.options[i], "built": bool(built), "nre": float(res.nre[i])})
        return rows

    def power_built(self) -> list[dict]:
        """Facility power whose build starts in each period (W), per scenario group."""
        lp, data = self.lp, self.data
        rows = []
        for t in np.flatnonzero(lp.power_col[:, 0] >= 0):
            cols, first = np.unique(lp.power_col[t], return_index=True)
            for col, s in zip(cols, first, strict=True):
                watts = float(self.outcome.values[col])
                if watts <= 1e-6:
                    continue
                scenario = "all" if np.all(lp.power_col[t] == col) else data.scenarios[s]
                rows.append(
                    {
                        "period": data.periods[t],
                        "scenario": scenario,
                        "facility_power_w": watts,
                        "energised_period": data.periods[t + data.resources.power_lead],
                    }
                )
        return rows

    def component_use(self) -> list[dict]:
        """Units of each component the plan consumes per period and scenario, against supply."""
        res, data = self.data.resources, self.data
        if res is None or not res.components:
            return []
        rows = []
        terms_used = np.zeros_like(res.component_supply)  # (C, T, S)
        for i in range(len(data.options)):
            lead = int(data.lead[i])
            for t in range(lead, len(data.periods)):
                delivered = self.buy[i, t - lead] * data.available[i, t]
                terms_used[:, t, :] += res.component_use[i, :, t, :] * delivered
        for c, name in enumerate(res.components):
            for t, period in enumerate(data.periods):
                for s, scenario in enumerate(data.scenarios):
                    rows.append(
                        {
                            "component": name,
                            "unit": res.component_units[c],
                            "period": period,
                            "scenario": scenario,
                            "used": float(terms_used[c, t, s]),
                            "supply": float(res.component_supply[c, t, s]),
                        }
                    )
        return rows

    def purchases(self, shared: np.ndarray) -> list[dict]:
        """Units and capex per period and option; one row for 'all' scenarios where purchases are shared."""
        data = self.data
        rows = []
        for t, period in enumerate(data.periods):
            for i, option in enumerate(data.options):
                units = self.buy[i, t]
                if shared[t]:
                    if units[0] <= 1e-9:
                        continue
                    capex = data.unit_capex[i, t] * units[0]
                    rows.append(
                        _purchase(period, option, "all", units[0], capex.max(), float(capex @ data.probability))
                    )
                    continue
                for s, scenario in enumerate(data.scenarios):
                    if units[s] > 1e-9:
                        capex = data.unit_capex[i, t, s] * units[s]
                        rows.append(_purchase(period, option, scenario, units[s], capex, capex))
        return rows

    def fleet_rows(self) -> list[dict]:
        """Installed chips per period, scenario and option, and how many serve each model."""
        data = self.data
        rows = []
        for s, scenario in enumerate(data.scenarios):
            for t, period in enumerate(data.periods):
                for i, option in enumerate(data.options):
                    if self.installed[i, t, s] <= 1e-9:
                        continue
                    serving = {
                        model: float(self.alloc[i, m, t, s])
                        for m, model in enumerate(data.models)
                        if self.alloc[i, m, t, s] > 1e-9
                    }
                    rows.append(
                        {
                            "period": period,
                            "scenario": scenario,
                            "chip": option,
                            "installed_units": float(self.installed[i, t, s]),
                            "serving_units": serving,
                        }
                    )
        return rows

    def unmet_items(self) -> list[UnmetDemand]:
        """Shortfalls above 1e-6 of demand (and, for integer options, above rounding)."""
        data = self.data
        items = []
        for m, t, s in np.argwhere(self.unmet > 0):
            demand = float(data.demand[m, t, s])
            shortfall = float(min(self.unmet[m, t, s], demand))
            if shortfall <= max(1e-6 * demand, 1e-6) + self._rounding_slack(m):
                continue
            items.append(UnmetDemand(data.models[m], data.periods[t], data.scenarios[s], demand, shortfall))
        return items

    def _rounding_slack(self, m: int) -> float:
        """With whole chips, a shortfall under 1% of one chip's capacity is rounding, not scarcity."""
        if not self.outcome.is_mip:
            return 0.0
        caps = self.data.capacity[:, m]
        return 0.01 * float(caps[caps > 0].min()) if np.any(caps > 0) else 0.0


def _purchase(period: str, option: str, scenario: str, units: float, capex: float, expected: float) -> dict:
    return {
        "period": period,
        "chip": option,
        "scenario": scenario,
        "units": float(units),
        "capex": float(capex),
        "capex_expected": float(expected),
    }


def _row_name(data: PlanData, kind: int, index: np.ndarray) -> tuple[str, dict]:
    a, t, s = (int(v) for v in index)
    scenario = data.scenarios[s]
    if kind == RowKind.DEMAND:
        model = data.models[a]
        return f"demand {model} {data.periods[t]} [{scenario}]", {"model": model, "period": data.periods[t]}
    if kind == RowKind.BUDGET_TOTAL:
        return f"budget total [{scenario}]", {"period": None}
    if kind == RowKind.COMPONENT:
        component = data.resources.components[a]
        return f"component {component} {data.periods[t]} [{scenario}]", {"component": component, "period": data.periods[t]}
    if kind == RowKind.BUILD_LINK:
        chip = data.options[a]
        return f"build-or-not {chip} ordered {data.periods[t]} [{scenario}]", {"chip": chip, "period": data.periods[t]}
    labels = {RowKind.BUDGET_PERIOD: "budget", RowKind.POWER: "facility power", RowKind.FLOOR: "floor space"}
    return f"{labels[RowKind(kind)]} {data.periods[t]} [{scenario}]", {"period": data.periods[t]}


_UNITS = {
    RowKind.DEMAND: "per token/s",
    RowKind.BUDGET_TOTAL: "per unit of currency",
    RowKind.BUDGET_PERIOD: "per unit of currency",
    RowKind.POWER: "per W",
    RowKind.FLOOR: "per m^2",
    RowKind.COMPONENT: "per unit of the component",
    RowKind.BUILD_LINK: "per chip",
}


def constraint_report(solution: Solution) -> tuple[list[dict], list[dict]]:
    """(binding constraints, shadow prices): limits that are reached, and what relaxing them is worth."""
    data, lp, outcome = solution.data, solution.lp, solution.outcome
    sign = -1.0 if lp.objective_kind == "max_capacity" else 1.0
    activity = lp.matrix @ outcome.values
    duals = outcome.row_dual
    binding, prices = [], []
    for row in np.flatnonzero(lp.row_kind != RowKind.ALLOC):
        kind = int(lp.row_kind[row])
        if kind == RowKind.WORST:
            continue
        name, where = _row_name(data, kind, lp.row_index[row])
        limit = lp.row_upper[row] if np.isfinite(lp.row_upper[row]) else lp.row_lower[row]
        dual = sign * float(duals[row]) + 0.0 if duals is not None else None  # + 0.0: no -0.0
        entry = {
            "constraint": name,
            "kind": RowKind(kind).name.lower(),
            "scenario": data.scenarios[lp.row_index[row][2]],
            **where,
            "activity": float(activity[row]),
            "limit": float(limit),
            "shadow_price": dual,
            "unit": _UNITS[RowKind(kind)],
        }
        probability = float(data.probability[lp.row_index[row][2]])
        if dual is not None and lp.plan_kind == "two-stage" and lp.objective_kind == "min_cost" and probability > 0:
            # two-stage minimises expected cost, so a scenario's row is worth p_s x its value in that future
            entry["shadow_price_given_scenario"] = dual / probability
        at_limit = abs(activity[row] - limit) <= 1e-7 * max(1.0, abs(limit))
        if kind not in (RowKind.DEMAND, RowKind.BUILD_LINK) and at_limit:
            binding.append(entry)
        if dual is not None and abs(dual) > 1e-9 and kind != RowKind.BUILD_LINK:  # a big-M row's dual means nothing
            prices.append(entry)
    binding.extend(_supply_binding(solution, sign))
    prices.sort(key=lambda entry: abs(entry["shadow_price"]), reverse=True)
    return binding, prices


def _supply_binding(solution: Solution, sign: float) -> list[dict]:
    data, lp, outcome = solution.data, solution.lp, solution.outcome
    rows = []
    seen: set[int] = set()
    num_i, num_t, num_s = lp.buy_col.shape
    for i in range(num_i):
        for t in range(num_t):
            for s in range(num_s):
                col = int(lp.buy_col[i, t, s])
                upper = lp.upper[col]
                if col in seen or not (np.isfinite(upper) and upper > 0):
                    continue
                seen.add(col)
                value = outcome.values[col]
                if value >= upper * (1 - 1e-7) - 1e-9:
                    dual = sign * float(outcome.col_dual[col]) + 0.0 if outcome.col_dual is not None else None
                    shared = bool(np.all(lp.buy_col[i, t] == col))
                    rows.append(
                        {
                            "constraint": f"supply {data.options[i]} ordered {data.periods[t]}"
                            f" [{'all' if shared else data.scenarios[s]}]",
                            "kind": "supply",
                            "scenario": "all" if shared else data.scenarios[s],
                            "period": data.periods[t],
                            "chip": data.options[i],
                            "activity": float(value),
                            "limit": float(upper),
                            "shadow_price": dual,
                            "unit": "per chip",
                        }
                    )
    return rows


def unit_economics(data: PlanData) -> list[dict]:
    """TCO and cost per million tokens per option and model, at first-period expected prices."""
    dc = data.datacenter
    rows = []
    for i, option in enumerate(data.options):
        chip_price = float(data.chip_price[i, 0] @ data.probability)
        for m, model in enumerate(data.models):
            if data.capacity[i, m] <= 0:
                continue
            tco = estimate_tco(
                TcoSpec(
                    currency=data.currency,
                    chip_price=chip_price,
                    server_share=float(data.server_share[i]),
                    network_frac_of_capex=dc.network_frac_of_capex,
                    avg_power_w=float(data.power_w[i, m]),
                    server_power_ratio=dc.server_power_ratio,
                    pue=dc.pue,
                    electricity_price_per_kwh=dc.electricity_price_per_kwh,
                    colocation_per_kw_month=dc.colocation_per_kw_month,
                    depreciation_years=float(data.life[i] * data.period_years),
                    floor_m2_per_chip=float(data.floor_m2[i]),
                    floor_cost_per_m2_year=dc.floor_cost_per_m2_year,
                    tokens_per_s=float(data.capacity[i, m]),
                )
            )
            rows.append(
                {
                    "chip": option,
                    "model": model,
                    "tokens_per_s_per_chip": float(data.capacity[i, m]),
                    **{k: v for k, v in tco.to_dict().items() if k != "currency"},
                }
            )
    return rows


def capacity_rows(data: PlanData) -> list[dict]:
    return [
        {
            "chip": option,
            "model": model,
            "tokens_per_s_per_chip": float(data.capacity[i, m]),
            "avg_power_w_per_chip": float(data.power_w[i, m]),
            "source": data.capacity_source[i][m],
        }
        for i, option in enumerate(data.options)
        for m, model in enumerate(data.models)
    ]
