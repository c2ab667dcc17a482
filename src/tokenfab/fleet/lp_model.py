"""The fleet plan as a linear (or mixed-integer) program, built as sparse arrays.

Variables (all >= 0):
  buy[i, t, g]     chips of option i ordered in period t; g is one shared column for every
                   scenario (robust; two-stage first stage) or one column per scenario
  alloc[i, m, t, s] installed chips of option i serving model m in period t, scenario s
  unmet[m, t, s]   demand (tokens/s) left unserved, priced far above any chip (min_cost)
  worst            the worst scenario's cost (robust min_cost: minimise it, plus the unmet
                   penalty of *every* scenario, so that a non-worst scenario cannot leave
                   demand unmet for free)
  scale[g]         the multiple of demand served (max_capacity: maximise it)

Rows:
  alloc     sum_m alloc[i,m,t,s] - installed[i,t,s](buy) <= existing[i]
  demand    sum_i capacity[i,m] alloc[i,m,t,s] + unmet[m,t,s] >= demand[m,t,s]
            (max_capacity: ... - demand[m,t,s] scale[g(s)] >= 0)
  budget    sum unit_capex x buy <= budget (total per scenario; per period per scenario)
  power     sum_i facility_power[i] installed[i,t,s] <= limit[t] - existing power
  floor     sum_i floor[i] installed[i,t,s] <= limit[t] - existing floor
  worst     worst - cost_s >= constant_s, cost_s without the unmet penalty (robust min_cost only)
  component, build link, power build-out: see fleet.lp_resources (shared parts, NRE binaries,
            facility power built with a lead time; NRE and power capex count in budgets and costs)

A purchase counts in scenario s only if its delivery period is available in s, and its
supply bound is the tightest delivery-period supply among the scenarios where it counts.
Removing a scenario only drops constraints (its rows and variables, its share of the
supply bounds) and its unmet-demand penalty, so the robust cost can never rise: the
property the tests check (at a fixed unmet-demand price; the default price is derived
from the prices of all scenarios). A small weight on expected cost (1e-6) breaks ties
among the worst-case optima so that non-worst scenarios are not served wastefully.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from tokenfab.errors import InvalidInputError
from tokenfab.fleet.inputs import PlanData
from tokenfab.fleet.lp_resources import (
    FixedTerms,
    add_fixed_to_budget,
    add_fixed_to_expected,
    add_fixed_to_worst,
    build_link_rows,
    component_rows,
    fixed_terms,
    power_build_terms,
    resource_bounds,
    resource_columns,
)
from tokenfab.fleet.lp_rows import DeliveredTerms, RowKind, Rows

__all__ = ["DeliveredTerms", "LinearProgram", "RowKind", "Rows", "build_lp"]

TIE_BREAK_WEIGHT = 1e-6
"""Weight of expected cost beside the robust worst case (or beside capacity)."""

MAX_DEMAND_MULTIPLE = 1e4
"""Upper bound of the served multiple of demand (max_capacity), so the LP stays bounded."""


@dataclass(slots=True)
class LinearProgram:
    """A minimisation in HiGHS's column-wise form plus the index maps to read it back."""

    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integrality: np.ndarray  # 1 integer, 0 continuous
    matrix: sp.csc_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    row_kind: np.ndarray  # RowKind per row
    row_index: np.ndarray  # (rows, 3): the (a, b, c) indices a row is about (see RowKind)
    buy_col: np.ndarray  # (I, T, S) column of each purchase as seen in scenario s
    alloc_col: np.ndarray  # (I, M, T, S), -1 where option i cannot serve model m
    unmet_col: np.ndarray  # (M, T, S), -1 when there are no unmet variables
    worst_col: int  # -1 unless robust min_cost
    scale_col: np.ndarray  # (S,) column of scale[g(s)], -1 unless max_capacity
    delivered: DeliveredTerms  # which purchase serves in which period and scenario
    buy_cost: np.ndarray  # (I, T, S) objective cost of one chip ordered in t, in scenario s
    constant_cost: np.ndarray  # (S,) cost of the existing fleet (facility charge), not a variable
    unmet_cost: np.ndarray  # (M,) objective cost of 1 token/s of model m unmet for one period
    objective_kind: str
    plan_kind: str
    build_col: np.ndarray  # (I,) column of the build-or-not binary, -1 where none
    power_col: np.ndarray  # (T, S) column of power built from t, -1 where none
    fixed: FixedTerms  # NRE and power-build costs (columns that are not chips)
    cost_scale: float = 1.0  # a typical chip's objective cost: HiGHS is given cost / cost_scale

    @property
    def num_cols(self) -> int:
        return int(self.cost.size)

    @property
    def num_rows(self) -> int:
        return int(self.row_lower.size)


@dataclass(slots=True)
class _Columns:
    """Where each variable block lives in the column vector."""

    buy: np.ndarray
    alloc: np.ndarray
    unmet: np.ndarray
    worst: int
    scale: np.ndarray
    count: int
    build: np.ndarray
    power: np.ndarray


def _columns(data: PlanData, objective: str, plan_kind: str, shared: np.ndarray) -> _Columns:
    num_i, num_m, num_t, num_s = len(data.options), len(data.models), len(data.periods), len(data.scenarios)
    buy_col, count = _buy_columns(shared, num_i, num_t, num_s)
    pairs = np.argwhere(data.capacity > 0)
    alloc_col = np.full((num_i, num_m, num_t, num_s), -1, dtype=np.int64)
    alloc_ids = count + np.arange(len(pairs) * num_t * num_s).reshape(len(pairs), num_t, num_s)
    alloc_col[pairs[:, 0], pairs[:, 1]] = alloc_ids
    count += alloc_ids.size
    unmet_col = np.full((num_m, num_t, num_s), -1, dtype=np.int64)
    worst_col, scale_col = -1, np.full(num_s, -1, dtype=np.int64)
    if objective == "min_cost":
        unmet_col = count + np.arange(num_m * num_t * num_s).reshape(num_m, num_t, num_s)
        count += unmet_col.size
        if plan_kind == "robust":
            worst_col, count = count, count + 1
    else:
        groups = 1 if plan_kind == "robust" else num_s
        scale_col = count + (np.zeros(num_s, dtype=np.int64) if groups == 1 else np.arange(num_s))
        count += groups
    build_col, power_col, count = resource_columns(data, shared, count)
    return _Columns(buy_col, alloc_col, unmet_col, worst_col, scale_col, count, build_col, power_col)


def build_lp(
    data: PlanData, *, objective: str, plan_kind: str, first_stage_periods: int, unmet_penalty: np.ndarray
) -> LinearProgram:
    """The whole program for `data` (see the module docstring for its meaning)."""
    _check_existing_fleet(data)
    shared = _shared_periods(plan_kind, first_stage_periods, len(data.periods))
    cols = _columns(data, objective, plan_kind, shared)
    delivered = _delivery_terms(data, cols.buy)
    buy_cost, constant_cost = _scenario_costs(data, cols.buy, delivered)
    unmet_cost = np.broadcast_to(np.asarray(unmet_penalty, dtype=float), (len(data.models),)) * data.period_years
    lower, upper, integrality = _bounds(data, cols.buy, cols.count, shared)
    resource_bounds(data, cols.buy, cols.build, cols.power, (lower, upper, integrality))
    fixed = fixed_terms(data, cols.build, cols.power)
    if objective == "min_cost":
        upper[cols.unmet] = data.demand
    else:
        upper[cols.scale] = MAX_DEMAND_MULTIPLE
    rows = Rows()
    _alloc_rows(rows, data, cols.alloc, delivered)
    _demand_rows(rows, data, cols.alloc, cols.unmet, cols.scale)
    _budget_rows(rows, data, cols.buy, fixed)
    power_rows = _limit_rows(rows, data, delivered, RowKind.POWER, data.facility_power_w, data.power_limit_w)
    power_build_terms(rows, data, power_rows, cols.power)
    _limit_rows(rows, data, delivered, RowKind.FLOOR, data.floor_m2, data.floor_limit_m2)
    component_rows(rows, data, cols.buy)
    build_link_rows(rows, data, cols.buy, cols.build, upper)
    if cols.worst >= 0:
        _worst_rows(rows, data, cols, buy_cost, constant_cost, fixed)
    return LinearProgram(
        cost=_objective_vector(data, cols, buy_cost, unmet_cost, objective, fixed),
        lower=lower,
        upper=upper,
        integrality=integrality,
        matrix=rows.matrix(cols.count),
        row_lower=np.concatenate(rows.lower) if rows.lower else np.zeros(0),
        row_upper=np.concatenate(rows.upper) if rows.upper else np.zeros(0),
        row_kind=np.concatenate(rows.kind) if rows.kind else np.zeros(0, dtype=int),
        row_index=np.concatenate(rows.index) if rows.index else np.zeros((0, 3), dtype=np.int64),
        buy_col=cols.buy,
        alloc_col=cols.alloc,
        unmet_col=cols.unmet,
        worst_col=cols.worst,
        scale_col=cols.scale,
        delivered=delivered,
        buy_cost=buy_cost,
        constant_cost=constant_cost,
        unmet_cost=unmet_cost,
        objective_kind=objective,
        plan_kind=plan_kind,
        build_col=cols.build,
        power_col=cols.power,
        fixed=fixed,
        cost_scale=_cost_scale(buy_cost),
    )


def _cost_scale(buy_cost: np.ndarray) -> float:
    """The median cost of one chip: objective coefficients divided by it are of order one for chips.

    Fleet costs span 1e-6 (robust tie-breaks) to 1e7 (unmet-demand penalties) per unit; unscaled,
    HiGHS's MIP called a plan optimal that cost 35x what the same model without its binary cost
    (the bundled example at half its budget). Scaling changes neither the optimum nor the duals
    (solve multiplies them back).
    """
    positive = buy_cost[np.isfinite(buy_cost) & (buy_cost > 0)]
    return float(np.median(positive)) if positive.size else 1.0


def _objective_vector(
    data: PlanData, cols: _Columns, buy_cost: np.ndarray, unmet_cost: np.ndarray, objective: str, fixed: FixedTerms
) -> np.ndarray:
    """Minimised costs: worst case (robust), expectation (two-stage), or minus the demand multiple."""
    weights = data.probability
    expected = _expected_cost_vector(data, cols, buy_cost, unmet_cost)
    add_fixed_to_expected(expected, fixed, weights)
    cost = np.zeros(cols.count)
    if objective == "min_cost" and cols.worst >= 0:
        cost[cols.worst] = 1.0
        cost += TIE_BREAK_WEIGHT * expected
        cost[cols.unmet] += np.broadcast_to(unmet_cost[:, None, None], cols.unmet.shape)  # every scenario, full weight
    elif objective == "min_cost":
        cost += expected
    else:
        np.add.at(cost, cols.scale, -weights)  # maximise the expected multiple of demand served
        budget_scale = data.budget_total or float(np.sum(data.budget_period[np.isfinite(data.budget_period)])) or 1.0
        cost += TIE_BREAK_WEIGHT * expected / budget_scale
    return cost


def _check_existing_fleet(data: PlanData) -> None:
    for label, per_chip, limit in (
        ("facility power", data.facility_power_w, data.power_limit_w),
        ("floor space", data.floor_m2, data.floor_limit_m2),
    ):
        used = float(per_chip @ data.existing)
        over = np.flatnonzero(used > limit * (1 + 1e-9))
        if over.size:
            t = int(over[0])
            raise InvalidInputError(
                f"the existing fleet already needs {used:.4g} of {label} in {data.periods[t]}, "
                f"above the limit {limit[t]:.4g}"
            )


def _shared_periods(plan_kind: str, first_stage_periods: int, num_t: int) -> np.ndarray:
    if plan_kind == "robust":
        return np.ones(num_t, dtype=bool)
    return np.arange(num_t) < first_stage_periods


def _buy_columns(shared: np.ndarray, num_i: int, num_t: int, num_s: int) -> tuple[np.ndarray, int]:
    buy_col = np.zeros((num_i, num_t, num_s), dtype=np.int64)
    count = 0
    for t in range(num_t):
        if shared[t]:
            buy_col[:, t, :] = (count + np.arange(num_i))[:, None]
            count += num_i
        else:
            buy_col[:, t, :] = count + np.arange(num_i * num_s).reshape(num_i, num_s)
            count += num_i * num_s
    return buy_col, count


def _delivery_terms(data: PlanData, buy_col: np.ndarray) -> DeliveredTerms:
    num_i, num_t, _ = buy_col.shape
    parts: list[tuple[np.ndarray, ...]] = []
    for i in range(num_i):
        for t in range(num_t):
            d = t + int(data.lead[i])
            if d >= num_t:
                continue
            serving = np.arange(d, min(num_t, d + int(data.life[i])))
            scen = np.flatnonzero(data.available[i, d])
            if not scen.size:
                continue
            pt, ps = np.meshgrid(serving, scen, indexing="ij")
            parts.append((np.full(pt.size, i), np.full(pt.size, t), pt.ravel(), ps.ravel(), buy_col[i, t, ps.ravel()]))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return DeliveredTerms(empty, empty, empty, empty, empty)
    return DeliveredTerms(*(np.concatenate([p[k] for p in parts]) for k in range(5)))


def _scenario_costs(data: PlanData, buy_col: np.ndarray, delivered: DeliveredTerms) -> tuple[np.ndarray, np.ndarray]:
    """Objective cost of one purchase in each scenario: (weighted) capex + facility while installed."""
    buy_cost = data.unit_capex * data.capex_weight[:, :, None]
    np.add.at(buy_cost, (delivered.option, delivered.order, delivered.scenario), data.facility_cost[delivered.option])
    num_t, num_s = buy_col.shape[1], buy_col.shape[2]
    constant = np.full(num_s, float(data.facility_cost @ data.existing) * num_t)
    return buy_cost, constant


def _bounds(data: PlanData, buy_col: np.ndarray, num_cols: int, shared: np.ndarray) -> tuple[np.ndarray, ...]:
    lower = np.zeros(num_cols)
    upper = np.full(num_cols, np.inf)
    integrality = np.zeros(num_cols, dtype=np.int32)
    num_i, num_t, _ = buy_col.shape
    for i in range(num_i):
        for t in range(num_t):
            d = t + int(data.lead[i])
            cols = buy_col[i, t]
            if d >= num_t:
                upper[cols] = 0.0
                continue
            usable = data.available[i, d]
            caps = np.where(usable, data.supply[i, d], np.inf)
            if shared[t]:
                upper[cols[0]] = float(caps.min()) if usable.any() else 0.0
            else:
                upper[cols] = np.where(usable, data.supply[i, d], 0.0)
            integrality[cols] = int(data.integer[i])
    return lower, upper, integrality


def _alloc_rows(rows: Rows, data: PlanData, alloc_col: np.ndarray, delivered: DeliveredTerms) -> None:
    num_i, _, num_t, num_s = alloc_col.shape
    servers = np.flatnonzero((alloc_col[:, :, 0, 0] >= 0).any(axis=1))
    if not servers.size:
        return
    position = np.full(num_i, -1)
    position[servers] = np.arange(servers.size)
    grid = np.stack(np.meshgrid(servers, np.arange(num_t), np.arange(num_s), indexing="ij"), axis=-1).reshape(-1, 3)
    ids = rows.block(RowKind.ALLOC, grid, -np.inf, data.existing[grid[:, 0]]).reshape(servers.size, num_t, num_s)
    for i in servers:
        cols = alloc_col[i]  # (M, T, S)
        for m in np.flatnonzero(cols[:, 0, 0] >= 0):
            rows.add(ids[position[i]], cols[m], 1.0)
    keep = position[delivered.option] >= 0
    rows.add(
        ids[position[delivered.option[keep]], delivered.period[keep], delivered.scenario[keep]],
        delivered.col[keep],
        -1.0,
    )


def _demand_rows(
    rows: Rows, data: PlanData, alloc_col: np.ndarray, unmet_col: np.ndarray, scale_col: np.ndarray
) -> None:
    num_m, num_t, num_s = data.demand.shape
    grid = np.stack(np.meshgrid(np.arange(num_m), np.arange(num_t), np.arange(num_s), indexing="ij"), axis=-1)
    minimising = unmet_col[0, 0, 0] >= 0
    lower = data.demand.ravel() if minimising else np.zeros(data.demand.size)
    ids = rows.block(RowKind.DEMAND, grid.reshape(-1, 3), lower, np.inf).reshape(num_m, num_t, num_s)
    for i, m in np.argwhere(alloc_col[:, :, 0, 0] >= 0):
        rows.add(ids[m], alloc_col[i, m], data.capacity[i, m])
    if minimising:
        rows.add(ids, unmet_col, 1.0)
    else:
        rows.add(ids, np.broadcast_to(scale_col, ids.shape), -data.demand)


def _budget_rows(rows: Rows, data: PlanData, buy_col: np.ndarray, fixed: FixedTerms) -> None:
    num_i, _, num_s = buy_col.shape
    total_ids, period_ids = None, {}
    if data.budget_total is not None:
        index = np.stack([np.zeros(num_s, dtype=int), np.zeros(num_s, dtype=int), np.arange(num_s)], axis=1)
        total_ids = rows.block(RowKind.BUDGET_TOTAL, index, -np.inf, data.budget_total)
        rows.add(np.broadcast_to(total_ids, buy_col.shape), buy_col, data.unit_capex)
    finite = np.flatnonzero(np.isfinite(data.budget_period))
    if finite.size:
        pt, ps = np.meshgrid(finite, np.arange(num_s), indexing="ij")
        index = np.stack([np.zeros(pt.size, dtype=int), pt.ravel(), ps.ravel()], axis=1)
        ids = rows.block(RowKind.BUDGET_PERIOD, index, -np.inf, data.budget_period[pt.ravel()])
        ids = ids.reshape(finite.size, num_s)
        for i in range(num_i):
            rows.add(ids, buy_col[i, finite], data.unit_capex[i, finite])
        period_ids = {int(t): ids[k] for k, t in enumerate(finite)}
    add_fixed_to_budget(rows, total_ids, period_ids, fixed)


def _limit_rows(
    rows: Rows, data: PlanData, delivered: DeliveredTerms, kind: RowKind, per_chip: np.ndarray, limit: np.ndarray
) -> np.ndarray | None:
    """Rows (period, scenario) of one facility limit; returns their numbers (-1: no row), or None."""
    finite = np.flatnonzero(np.isfinite(limit))
    if not finite.size or not np.any(per_chip > 0):
        return None
    num_s = len(data.scenarios)
    pt, ps = np.meshgrid(finite, np.arange(num_s), indexing="ij")
    index = np.stack([np.zeros(pt.size, dtype=int), pt.ravel(), ps.ravel()], axis=1)
    headroom = limit[pt.ravel()] - float(per_chip @ data.existing)
    ids = rows.block(kind, index, -np.inf, headroom)
    row_of = np.full((len(data.periods), num_s), -1)
    row_of[pt, ps] = ids.reshape(pt.shape)
    rows_for_terms = row_of[delivered.period, delivered.scenario]
    keep = (rows_for_terms >= 0) & (per_chip[delivered.option] > 0)
    rows.add(rows_for_terms[keep], delivered.col[keep], per_chip[delivered.option[keep]])
    return row_of


def _expected_cost_vector(data: PlanData, cols: _Columns, buy_cost: np.ndarray, unmet_cost: np.ndarray) -> np.ndarray:
    """Probability-weighted cost of every column (capex, facility, energy, unmet penalty)."""
    weights = data.probability
    expected = np.zeros(cols.count)
    np.add.at(expected, cols.buy, buy_cost * weights)
    for i, m in np.argwhere(cols.alloc[:, :, 0, 0] >= 0):
        np.add.at(expected, cols.alloc[i, m], data.energy_cost[i, m] * np.broadcast_to(weights, cols.alloc[i, m].shape))
    if cols.unmet[0, 0, 0] >= 0:
        np.add.at(expected, cols.unmet, unmet_cost[:, None, None] * np.broadcast_to(weights, cols.unmet.shape))
    return expected


def _worst_rows(
    rows: Rows, data: PlanData, cols: _Columns, buy_cost: np.ndarray, constant_cost: np.ndarray, fixed: FixedTerms
) -> None:
    """worst - (capex + facility + energy of scenario s) >= existing-fleet cost of s."""
    num_s = len(data.scenarios)
    index = np.stack([np.zeros(num_s, dtype=int), np.zeros(num_s, dtype=int), np.arange(num_s)], axis=1)
    ids = rows.block(RowKind.WORST, index, constant_cost, np.inf)
    rows.add(ids, np.full(num_s, cols.worst), 1.0)
    rows.add(np.broadcast_to(ids, cols.buy.shape), cols.buy, -buy_cost)
    for i, m in np.argwhere(cols.alloc[:, :, 0, 0] >= 0):
        alloc = cols.alloc[i, m]  # (T, S)
        rows.add(np.broadcast_to(ids, alloc.shape), alloc, -data.energy_cost[i, m])
    add_fixed_to_worst(rows, ids, fixed)
