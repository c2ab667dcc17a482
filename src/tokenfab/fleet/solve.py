"""Solve a LinearProgram with HiGHS (highspy) and recover duals, also for a MILP.

A MILP has no duals. To still say what a binding constraint is worth, we fix every
integer variable at its optimal value, relax integrality and re-solve the LP: its
duals are the shadow prices *given* those integer decisions, which is what the report
says next to them.

highspy is an optional extra (`tokenfab[plan]`) and imported lazily. HiGHS prints a
banner to the C-level stdout when a solver object is created; we send it to stderr so
that `--json` output on stdout stays clean.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tokenfab.errors import MissingDependencyError
from tokenfab.fleet.lp_model import LinearProgram
from tokenfab.fleet.spec import SolverSpec


@dataclass(slots=True)
class SolveOutcome:
    """What HiGHS found: a primal solution, duals if any, and how it went."""

    status: str  # "optimal" | "time_limit"
    solver_status: str  # HiGHS's own words
    values: np.ndarray
    objective: float
    row_dual: np.ndarray | None
    col_dual: np.ndarray | None
    is_mip: bool
    mip_gap: float
    duals_note: str
    solve_time_s: float


def _highspy():
    try:
        import highspy
    except ImportError:
        raise MissingDependencyError("highspy", "fleet planning (tokenfab plan)") from None
    return highspy


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Route C-level writes to fd 1 into fd 2 for the duration (the HiGHS banner)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no real stdout (embedded use): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _new_solver(settings: SolverSpec):
    highspy = _highspy()
    with _stdout_to_stderr():
        solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("time_limit", float(settings.time_limit_s))
    solver.setOptionValue("mip_rel_gap", float(settings.mip_rel_gap))
    solver.setOptionValue("threads", int(settings.threads))
    solver.setOptionValue("random_seed", 0)
    solver.setOptionValue("presolve", settings.presolve)
    return highspy, solver


MAX_ENUMERATED_BINARIES = 5
"""Up to this many build-or-not binaries (and no other integers), the MILP is solved exactly by
solving one LP per combination (at most 32 LPs on one warm solver): faster than branch and bound
on fleet models, whose LP relaxation with a big-M link is weak, and it needs no MIP tolerances."""


def solve_lp(lp: LinearProgram, settings: SolverSpec) -> SolveOutcome:
    """Solve `lp` (minimisation); raise RuntimeError if HiGHS finds no solution at all."""
    highspy, solver = _new_solver(settings)
    is_mip = bool(np.any(lp.integrality))
    scale = lp.cost_scale
    started = time.perf_counter()
    binaries = _binary_columns(lp)
    if binaries is not None:
        return _enumerate_binaries(highspy, solver, lp, binaries, scale, started)
    _pass_model(highspy, solver, lp, scale, lp.integrality)
    solver.run()
    outcome_status, words = _status(highspy, solver)
    info = solver.getInfo()
    values = np.array(solver.getSolution().col_value)
    objective = float(info.objective_function_value) * scale
    mip_gap = float(info.mip_gap) if is_mip else 0.0
    if is_mip:
        row_dual, col_dual = _fixed_integer_duals(solver, lp, values, highspy)
        row_dual = None if row_dual is None else row_dual * scale
        col_dual = None if col_dual is None else col_dual * scale
        note = "MILP: shadow prices come from the LP re-solved with integer purchases fixed at their optimum"
    else:
        row_dual, col_dual = _duals(solver, scale)
        note = "LP duals" if row_dual is not None else "no dual solution available"
    return SolveOutcome(
        status=outcome_status,
        solver_status=words,
        values=values,
        objective=objective,
        row_dual=row_dual,
        col_dual=col_dual,
        is_mip=is_mip,
        mip_gap=mip_gap,
        duals_note=note,
        solve_time_s=time.perf_counter() - started,
    )


def _pass_model(highspy, solver, lp: LinearProgram, scale: float, integrality: np.ndarray) -> None:
    matrix = lp.matrix
    status = solver.passModel(
        lp.num_cols,
        lp.num_rows,
        int(matrix.nnz),
        1,  # column-wise
        1,  # minimise
        0.0,
        lp.cost / scale,
        lp.lower,
        _finite(lp.upper, highspy),
        _finite(lp.row_lower, highspy),
        _finite(lp.row_upper, highspy),
        matrix.indptr.astype(np.int32),
        matrix.indices.astype(np.int32),
        matrix.data.astype(float),
        integrality.astype(np.int32),
    )
    if status == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the fleet model (internal error building the LP)")


def _status(highspy, solver) -> tuple[str, str]:
    model_status = solver.getModelStatus()
    words = solver.modelStatusToString(model_status)
    if model_status == highspy.HighsModelStatus.kOptimal:
        return "optimal", words
    has_solution = solver.getInfo().primal_solution_status == 2  # kSolutionStatusFeasible
    if model_status == highspy.HighsModelStatus.kTimeLimit and has_solution:
        return "time_limit", words
    raise RuntimeError(f"HiGHS found no plan: {words}")


def _duals(solver, scale: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    solution = solver.getSolution()
    if not solution.dual_valid:
        return None, None
    return np.array(solution.row_dual) * scale, np.array(solution.col_dual) * scale


def _binary_columns(lp: LinearProgram) -> np.ndarray | None:
    """The integer columns, if they are few binaries and nothing else is integer; else None."""
    integers = np.flatnonzero(lp.integrality)
    if not 0 < integers.size <= MAX_ENUMERATED_BINARIES:
        return None
    if np.any(lp.lower[integers] != 0) or np.any(lp.upper[integers] != 1):
        return None
    return integers


def _enumerate_binaries(highspy, solver, lp: LinearProgram, binaries: np.ndarray, scale: float, started: float):
    """Exact MILP for a handful of binaries: one LP per 0/1 combination, keep the cheapest."""
    _pass_model(highspy, solver, lp, scale, np.zeros(lp.num_cols, dtype=np.int32))
    best = None
    for combo in itertools.product((0.0, 1.0), repeat=binaries.size):
        fixed = np.array(combo)
        solver.changeColsBounds(binaries.size, binaries.astype(np.int32), fixed, fixed)
        solver.run()
        if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            continue  # a combination with no feasible plan (cannot happen with unmet-demand slack) or a time-out
        objective = float(solver.getInfo().objective_function_value) * scale
        if best is None or objective < best[0] - 1e-9 * abs(objective):
            row_dual, col_dual = _duals(solver, scale)
            best = (objective, np.array(solver.getSolution().col_value), row_dual, col_dual)
    if best is None:
        raise RuntimeError("HiGHS found no plan for any build-or-not combination")
    objective, values, row_dual, col_dual = best
    return SolveOutcome(
        status="optimal",
        solver_status=f"Optimal (enumerated {2**binaries.size} build-or-not combinations, one LP each)",
        values=values,
        objective=objective,
        row_dual=row_dual,
        col_dual=col_dual,
        is_mip=True,
        mip_gap=0.0,
        duals_note="MILP solved by enumerating its build-or-not binaries: shadow prices are the LP duals "
        "of the best combination (given those build decisions)",
        solve_time_s=time.perf_counter() - started,
    )


def _finite(values: np.ndarray, highspy) -> np.ndarray:
    return np.clip(values, -highspy.kHighsInf, highspy.kHighsInf).astype(float)


def _fixed_integer_duals(solver, lp: LinearProgram, values: np.ndarray, highspy) -> tuple:
    integers = np.flatnonzero(lp.integrality).astype(np.int32)
    fixed = np.round(values[integers])
    solver.changeColsBounds(integers.size, integers, fixed, fixed)
    solver.changeColsIntegrality(integers.size, integers, np.zeros(integers.size, dtype=np.uint8))
    solver.setOptionValue("presolve", "on")  # always helps the (large) LP, whatever the MILP used
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None, None
    solution = solver.getSolution()
    if not solution.dual_valid:
        return None, None
    return np.array(solution.row_dual), np.array(solution.col_dual)
