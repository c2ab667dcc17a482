"""`plan_fleet`: from a PlanSpec to a PlanResult, through one LP/MILP solved by HiGHS.

Two kinds of plan:
- `robust`: one purchase schedule for every scenario. A purchase that is not delivered in
  a scenario (cut-off) still costs money there but serves nothing, so the plan must meet
  demand in each scenario with what arrives in it. Objective: the worst scenario's cost
  (plus each scenario's unmet-demand penalty, which is zero when demand is met).
- `two-stage`: purchases in the first `first_stage_periods` periods are shared (decided
  now); later purchases adapt to each scenario. Objective: the probability-weighted cost
  (so a scenario of probability 0 does not shape a two-stage plan; use robust for stress).

Demand that cannot be met is never a solver failure: unmet-demand variables priced at
1000x the dearest way to serve a token/s absorb it, and the result lists each (model,
period, scenario) shortfall in one line with status "infeasible". A user-input problem
raises an `TokenfabError` (one line, CLI exit code 2); a solver breakdown is a
RuntimeError (an internal error).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from tokenfab.fleet.capacity import CachedCapacityProvider, CapacityProvider
from tokenfab.fleet.extract import MAX_REPORTED_DUALS, Solution, capacity_rows, constraint_report, unit_economics
from tokenfab.fleet.inputs import PlanData, build_plan_data
from tokenfab.fleet.lp_model import MAX_DEMAND_MULTIPLE, LinearProgram, build_lp
from tokenfab.fleet.result import PlanResult
from tokenfab.fleet.solve import SolveOutcome, solve_lp
from tokenfab.fleet.spec import PlanSpec

UNMET_PENALTY_FACTOR = 1000.0
"""Default unmet-demand price, as a multiple of the dearest chip's cost per token/s-year."""

_MEANING = {
    (
        "min_cost",
        "robust",
    ): "worst-case cost over scenarios (capex + energy + facility) + every scenario's unmet-demand penalty",
    ("min_cost", "two-stage"): "expected cost over scenarios (capex + energy + facility + unmet-demand penalty)",
    ("max_capacity", "robust"): "multiple of every model's demand served in every scenario",
    ("max_capacity", "two-stage"): "expected multiple of demand served (probability-weighted over scenarios)",
}


def plan_fleet(spec: PlanSpec, capacity_provider: CapacityProvider | None = None) -> PlanResult:
    """Plan purchases for `spec`; capacity comes from its `capacity:` rows, else `capacity_provider`.

    With `spec.regret`, each scenario is also planned alone (the plan that knew the future),
    at the same unmet-demand price, and the result says what the plan costs in that scenario
    beyond the foresighted one: the price of not knowing, i.e. what the backup plan costs.
    """
    if capacity_provider is not None and not isinstance(capacity_provider, CachedCapacityProvider):
        capacity_provider = CachedCapacityProvider(capacity_provider)  # one predictor call per pair, however many solves
    result, penalty = _plan_once(spec, capacity_provider, None)
    if not spec.regret or len(spec.scenario_list) < 2:
        return result
    regret = _regret(spec, capacity_provider, result, penalty)
    expected = sum(row["probability"] * row["regret"] for row in regret)
    note = (
        f"expected regret {expected:,.4g} {result.currency}: the probability-weighted cost of not knowing "
        "which scenario comes (the expected value of perfect information); per scenario in `regret`"
    )
    return dataclasses.replace(result, regret=regret, notes=[*result.notes, note])


def _regret(spec: PlanSpec, provider: CapacityProvider | None, result: PlanResult, penalty: np.ndarray) -> list[dict]:
    rows = []
    for scenario, costs in zip(spec.scenario_list, result.scenarios, strict=True):
        alone = spec.model_copy(
            update={"scenarios": [scenario.model_copy(update={"probability": 1.0})], "regret": False}
        )
        foresight, _ = _plan_once(alone, provider, penalty)
        best = foresight.scenarios[0]
        plan_cost = costs["total_cost"] + costs["unmet_penalty"]
        best_cost = best["total_cost"] + best["unmet_penalty"]
        rows.append(
            {
                "scenario": scenario.name,
                "probability": costs["probability"],
                "plan_cost": plan_cost,
                "foresight_cost": best_cost,
                "regret": plan_cost - best_cost,
                "foresight_capex": best["capex"],
                "foresight_purchases": foresight.by_period,
            }
        )
    return rows


def _plan_once(
    spec: PlanSpec, capacity_provider: CapacityProvider | None, penalty: np.ndarray | None
) -> tuple[PlanResult, np.ndarray]:
    started = time.perf_counter()
    data = build_plan_data(spec, capacity_provider)
    if penalty is None:
        penalty = _unmet_penalty(spec, data)
    lp = build_lp(
        data,
        objective=spec.objective,
        plan_kind=spec.plan_kind,
        first_stage_periods=spec.first_stage_periods,
        unmet_penalty=penalty,
    )
    build_s = time.perf_counter() - started
    outcome = solve_lp(lp, spec.solver)
    return _result(spec, data, lp, outcome, penalty, build_s), penalty


def default_unmet_penalty(data: PlanData) -> np.ndarray:
    """Per model: 1000 x the dearest option's (capex + horizon running cost) per token/s-year.

    Priced against the dearest option, not the cheapest, so that the solver prefers even
    the most expensive chip that can serve a model to leaving its demand unmet.
    """
    num_t = len(data.periods)
    horizon_years = num_t * data.period_years
    capex = data.unit_capex.max(axis=(1, 2))
    penalty = np.zeros(len(data.models))
    for m in range(len(data.models)):
        serving = data.capacity[:, m] > 0
        if not serving.any():
            continue
        whole_life = capex + (data.facility_cost + data.energy_cost[:, m]) * num_t
        per_token_year = whole_life[serving] / (data.capacity[serving, m] * data.period_years)
        penalty[m] = UNMET_PENALTY_FACTOR * float(per_token_year.max())
    fallback = float(penalty.max()) if penalty.any() else 1.0 / horizon_years
    return np.where(penalty > 0, penalty, fallback)


def _unmet_penalty(spec: PlanSpec, data: PlanData) -> np.ndarray:
    given = spec.solver.unmet_penalty_per_token_per_s_year
    if given is not None:
        return np.full(len(data.models), float(given))
    return default_unmet_penalty(data)


def _objective(spec: PlanSpec, data: PlanData, lp: LinearProgram, outcome: SolveOutcome, costs: list[dict]) -> float:
    if spec.objective == "max_capacity":
        multiples = outcome.values[lp.scale_col]
        return float(multiples[0]) if spec.plan_kind == "robust" else float(multiples @ data.probability)
    totals = np.array([row["total_cost"] for row in costs])
    penalties = np.array([row["unmet_penalty"] for row in costs])
    if spec.plan_kind == "robust":
        return float(totals.max() + penalties.sum())
    return float((totals + penalties) @ data.probability)


def _result(
    spec: PlanSpec, data: PlanData, lp: LinearProgram, outcome: SolveOutcome, penalty: np.ndarray, build_s: float
) -> PlanResult:
    solution = Solution(data, lp, outcome)
    costs = solution.scenario_costs()
    unmet = solution.unmet_items()
    binding, prices = constraint_report(solution)
    capex = np.array([row["capex"] for row in costs])
    shared = (
        np.ones(len(data.periods), dtype=bool)
        if spec.plan_kind == "robust"
        else (np.arange(len(data.periods)) < spec.first_stage_periods)
    )
    status = "time_limit" if outcome.status == "time_limit" else ("infeasible" if unmet else "optimal")
    notes = [outcome.duals_note, _penalty_note(spec, data, penalty)]
    notes += [item.message for item in unmet]
    if spec.objective == "max_capacity" and np.any(outcome.values[lp.scale_col] >= MAX_DEMAND_MULTIPLE * (1 - 1e-9)):
        notes.append(f"the served multiple of demand hit its cap of {MAX_DEMAND_MULTIPLE:g}: capacity is nearly free")
    finite_budget = data.budget_period[np.isfinite(data.budget_period)]
    budget_total = data.budget_total
    if budget_total is None and finite_budget.size == len(data.periods):
        budget_total = float(finite_budget.sum())
    return PlanResult(
        status=status,
        name=spec.name,
        objective_kind=spec.objective,
        plan_kind=spec.plan_kind,
        currency=spec.currency,
        objective=_objective(spec, data, lp, outcome, costs),
        objective_meaning=_MEANING[(spec.objective, spec.plan_kind)],
        total_capex=float(capex.max()),
        expected_capex=float(capex @ data.probability),
        budget=budget_total,
        budget_per_period=[float(b) if np.isfinite(b) else None for b in data.budget_period]
        if finite_budget.size
        else None,
        periods=data.periods,
        models=data.models,
        options=data.options,
        by_period=solution.purchases(shared),
        fleet=solution.fleet_rows(),
        scenarios=costs,
        unmet_demand=unmet,
        binding_constraints=binding,
        shadow_prices=prices[:MAX_REPORTED_DUALS],
        unit_economics=unit_economics(data),
        capacity=capacity_rows(data),
        silicon=data.silicon_rows,
        stats=_stats(lp, outcome, penalty, data, build_s, len(prices)),
        notes=notes,
        build_decisions=solution.build_decisions(),
        power_build=solution.power_built(),
        component_use=solution.component_use(),
    )


def _penalty_note(spec: PlanSpec, data: PlanData, penalty: np.ndarray) -> str:
    if spec.objective == "max_capacity":
        return "max_capacity: demand beyond the served multiple is reported as unmet"
    return (
        f"unmet demand is priced at {float(penalty.min()):.4g}-{float(penalty.max()):.4g} {data.currency} "
        "per token/s-year; shadow prices of plans with unmet demand include that penalty"
    )


def _stats(
    lp: LinearProgram, outcome: SolveOutcome, penalty: np.ndarray, data: PlanData, build_s: float, num_duals: int
) -> dict:
    return {
        "num_variables": lp.num_cols,
        "num_constraints": lp.num_rows,
        "num_nonzeros": int(lp.matrix.nnz),
        "num_integer_variables": int(np.count_nonzero(lp.integrality)),
        "num_options": len(data.options),
        "num_models": len(data.models),
        "num_periods": len(data.periods),
        "num_scenarios": len(data.scenarios),
        "build_time_s": build_s,
        "solve_time_s": outcome.solve_time_s,
        "solver": "HiGHS (highspy)",
        "solver_status": outcome.solver_status,
        "is_mip": outcome.is_mip,
        "mip_gap": outcome.mip_gap,
        "duals_note": outcome.duals_note,
        "num_shadow_prices": num_duals,
        "unmet_penalty_per_token_per_s_year": dict(zip(data.models, (float(p) for p in penalty), strict=True)),
    }
