"""Rows and columns of the fleet program for shared resources: components, build-or-not, power build-out.

Variables added to fleet.lp_model's program:
  build[i]      1 if the new chip i is built (its NRE paid), else 0: a binary, so the program is a MILP
  power[t, g]   W of facility power whose build starts in t (g as for purchases: shared or per scenario)

Rows:
  component  sum_i use[i,c,t,s] buy[i, t - lead_i, g(s)] <= supply[c,t,s]   (deliveries in t only)
  build link buy[i,t,g] - M_i build[i] <= 0                                    (no chip without its NRE)
  power      the existing power rows gain  - sum_{t' <= t - lead} power[t', g(s)]

M is a bound no optimal purchase exceeds, per purchase column: its own supply bound or what its
components can feed in its delivery period, if finite; else the most chips the option's
components could ever feed, or enough chips to serve every model's peak demand alone. A tighter
M only speeds the MILP up; any valid M gives the same optimum (a test pins this: an M of 1 once
silently blocked a chip whose purchases had no finite bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenfab.fleet.inputs import PlanData
from tokenfab.fleet.lp_rows import DeliveredTerms, RowKind, Rows

NRE_TERM, POWER_TERM = 0, 1


@dataclass(slots=True)
class FixedTerms:
    """Columns that cost money but are not chips: build-or-not binaries and power built."""

    col: np.ndarray  # (K, S) the term's column as seen in scenario s
    cost: np.ndarray  # (K,) objective cost per unit of the column
    capex: np.ndarray  # (K,) cash spent per unit (what budgets count)
    period: np.ndarray  # (K,) period index the cash is spent in
    kind: np.ndarray  # (K,) NRE_TERM or POWER_TERM
    index: np.ndarray  # (K,) option index (NRE) or build period (power)

    @property
    def size(self) -> int:
        return int(self.cost.size)


def resource_columns(data: PlanData, shared: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(build_col (I,), power_col (T, S), new column count); -1 where a column does not exist."""
    res = data.resources
    num_t, num_s = len(data.periods), len(data.scenarios)
    build_col = np.full(len(data.options), -1, dtype=np.int64)
    power_col = np.full((num_t, num_s), -1, dtype=np.int64)
    if res is None:
        return build_col, power_col, count
    for i in np.flatnonzero(res.build_decision):
        build_col[i], count = count, count + 1
    if res.power_cost_per_w is not None:
        for t in range(num_t):
            if shared[t]:
                power_col[t, :], count = count, count + 1
            else:
                power_col[t, :], count = count + np.arange(num_s), count + num_s
    return build_col, power_col, count


def resource_bounds(
    data: PlanData, buy_col: np.ndarray, build_col: np.ndarray, power_col: np.ndarray, bounds: tuple
) -> None:
    """Binaries in [0, 1] and integer; power starts up to the per-period maximum (none too late to serve)."""
    _, upper, integrality = bounds
    res = data.resources
    built = build_col[build_col >= 0]
    upper[built] = 1.0
    integrality[built] = 1
    if res is None or res.power_cost_per_w is None:
        return
    num_t = len(data.periods)
    for t in range(num_t):
        usable = t + res.power_lead < num_t
        upper[power_col[t]] = res.power_max_w[t] if usable else 0.0


def _component_caps(data: PlanData, buy_col: np.ndarray, num_cols: int) -> np.ndarray:
    """Most chips each purchase column's components can feed in its delivery period (inf: no limit).

    Implied by the component rows; used only as the big-M of the build link (as column bounds
    they would take the dual away from the component row that really binds).
    """
    res = data.resources
    upper = np.full(num_cols, np.inf)
    num_i, num_t, _ = buy_col.shape
    for i in range(num_i):
        use = res.component_use[i]  # (C, T, S)
        if not np.any(use > 0):
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            feedable = np.where(use > 0, res.component_supply / use, np.inf).min(axis=0)  # (T, S)
        for t in range(num_t - int(data.lead[i])):
            d = t + int(data.lead[i])
            usable = data.available[i, d]
            cols = buy_col[i, t]
            cap = np.where(usable, feedable[d], np.inf)
            if np.all(cols == cols[0]):
                upper[cols[0]] = min(upper[cols[0]], float(cap.min()))
            else:
                upper[cols] = np.minimum(upper[cols], cap)
    return upper


def fixed_terms(data: PlanData, build_col: np.ndarray, power_col: np.ndarray) -> FixedTerms:
    res = data.resources
    num_s = len(data.scenarios)
    cols, cost, capex, period, kind, index = [], [], [], [], [], []
    for i in np.flatnonzero(build_col >= 0):
        cols.append(np.full(num_s, build_col[i]))
        cost.append(res.nre[i])
        capex.append(res.nre[i])
        period.append(res.nre_period[i])
        kind.append(NRE_TERM)
        index.append(i)
    for t in np.flatnonzero(power_col[:, 0] >= 0):
        cols.append(power_col[t])
        cost.append(res.power_cost_per_w * res.power_capex_weight[t])
        capex.append(res.power_cost_per_w)
        period.append(t)
        kind.append(POWER_TERM)
        index.append(t)
    as_int = np.array(period, dtype=np.int64), np.array(kind, dtype=np.int64), np.array(index, dtype=np.int64)
    col = np.array(cols, dtype=np.int64).reshape(len(cols), num_s)
    return FixedTerms(col, np.array(cost, dtype=float), np.array(capex, dtype=float), *as_int)


def component_rows(rows: Rows, data: PlanData, buy_col: np.ndarray) -> None:
    """Deliveries in t of every option carrying component c use at most its supply in t."""
    res = data.resources
    if res is None or not res.components:
        return
    num_i, num_t, num_s = buy_col.shape
    for c in range(len(res.components)):
        users = np.flatnonzero(res.component_use[:, c].max(axis=(1, 2)) > 0)
        finite = np.isfinite(res.component_supply[c])
        if not users.size or not finite.any():
            continue
        pt, ps = np.nonzero(finite)
        index = np.stack([np.full(pt.size, c), pt, ps], axis=1)
        ids = rows.block(RowKind.COMPONENT, index, -np.inf, res.component_supply[c][pt, ps])
        row_of = np.full((num_t, num_s), -1)
        row_of[pt, ps] = ids
        for i in users:
            order = pt - int(data.lead[i])
            keep = (order >= 0) & data.available[i, pt, ps] & (res.component_use[i, c, pt, ps] > 0)
            rows.add(
                row_of[pt[keep], ps[keep]], buy_col[i, order[keep], ps[keep]], res.component_use[i, c, pt[keep], ps[keep]]
            )


def build_link_rows(rows: Rows, data: PlanData, buy_col: np.ndarray, build_col: np.ndarray, upper: np.ndarray) -> None:
    """buy[i,t,g] <= M_i build[i]: a chip whose NRE is not paid cannot be bought."""
    num_i, num_t, num_s = buy_col.shape
    caps = np.minimum(upper, _component_caps(data, buy_col, upper.size))
    for i in np.flatnonzero(build_col >= 0):
        fallback = _big_m(data, i)
        for t in range(num_t):
            cols, first = np.unique(buy_col[i, t], return_index=True)
            keep = upper[cols] > 0
            cols, first = cols[keep], first[keep]
            if not cols.size:
                continue
            big_m = np.where(np.isfinite(caps[cols]), np.minimum(caps[cols], fallback), fallback)  # per column
            index = np.stack([np.full(cols.size, i), np.full(cols.size, t), first], axis=1)
            ids = rows.block(RowKind.BUILD_LINK, index, -np.inf, 0.0)
            rows.add(ids, cols, 1.0)
            rows.add(ids, np.full(cols.size, build_col[i]), -big_m)


def _big_m(data: PlanData, i: int) -> float:
    """A bound on any one purchase of option i: what its components could ever feed, or all peak demand."""
    candidates = []
    res = data.resources
    use = res.component_use[i]  # (C, T, S)
    if use.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            feedable = np.where(use > 0, res.component_supply / use, np.inf).min(axis=0)  # (T, S)
        if np.isfinite(feedable).any():
            candidates.append(float(feedable[np.isfinite(feedable)].max()))
    serving = data.capacity[i] > 0
    if serving.any():
        peak = data.demand.max(axis=(1, 2))[serving]
        candidates.append(float(np.sum(peak / data.capacity[i, serving])))
    return max(1.0, min(candidates)) if candidates else 1e12


def power_build_terms(rows: Rows, data: PlanData, row_of: np.ndarray, power_col: np.ndarray) -> None:
    """Power rows (t, s) gain -power[t', g(s)] for every start t' energised by t."""
    res = data.resources
    if res is None or res.power_cost_per_w is None or row_of is None:
        return
    num_t, num_s = row_of.shape
    for t in range(num_t):
        for start in range(0, t - res.power_lead + 1):
            keep = row_of[t] >= 0
            rows.add(row_of[t, keep], power_col[start, keep], -1.0)


def add_fixed_to_worst(rows: Rows, ids: np.ndarray, fixed: FixedTerms) -> None:
    """worst - cost_s >= ...: each fixed term's cost counts in every scenario's cost."""
    for k in range(fixed.size):
        rows.add(ids, fixed.col[k], -fixed.cost[k])


def add_fixed_to_expected(expected: np.ndarray, fixed: FixedTerms, probability: np.ndarray) -> None:
    for k in range(fixed.size):
        np.add.at(expected, fixed.col[k], fixed.cost[k] * probability)


def add_fixed_to_budget(rows: Rows, total_ids: np.ndarray | None, period_ids: dict, fixed: FixedTerms) -> None:
    """Budgets count NRE and power capex as cash in their spend period."""
    for k in range(fixed.size):
        if total_ids is not None:
            rows.add(total_ids, fixed.col[k], fixed.capex[k])
        ids = period_ids.get(int(fixed.period[k]))
        if ids is not None:
            rows.add(ids, fixed.col[k], fixed.capex[k])


__all__ = ["DeliveredTerms", "FixedTerms"]
