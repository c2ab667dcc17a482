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


def solve_lp(lp: LinearProgram, settings: SolverSpec) -> SolveOutcome:
    """Solve `lp` (minimisation); raise RuntimeError if HiGHS finds no solution at all."""
    highspy, solver = _new_solver(settings)
    matrix = lp.matrix
    is_mip = bool(np.any(lp.integrality))
    started = time.perf_counter()
    status = solver.passModel(
        lp.num_cols,
        lp.num_rows,
        int(matrix.nnz),
        1,  # column-wise
        1,  # minimise
        0.0,
        lp.cost,
        lp.lower,
        _finite(lp.upper, highspy),
        _finite(lp.row_lower, highspy),
        _finite(lp.row_upper, highspy),
        matrix.indptr.astype(np.int32),
        matrix.indices.astype(np.int32),
        matrix.data.astype(float),
        lp.integrality.astype(np.int32),
    )
    if status == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the fleet model (internal error building the LP)")
    solver.run()
    model_status = solver.getModelStatus()
    info = solver.getInfo()
    words = solver.modelStatusToString(model_status)
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if model_status == highspy.HighsModelStatus.kOptimal:
        outcome_status = "optimal"
    elif model_status == highspy.HighsModelStatus.kTimeLimit and has_solution:
        outcome_status = "time_limit"
    else:
        raise RuntimeError(f"HiGHS found no plan: {words}")
    values = np.array(solver.getSolution().col_value)
    objective = float(info.objective_function_value)
    mip_gap = float(info.mip_gap) if is_mip else 0.0
    if is_mip:
        row_dual, col_dual = _fixed_integer_duals(solver, lp, values, highspy)
        note = "MILP: shadow prices come from the LP re-solved with integer purchases fixed at their optimum"
    else:
        solution = solver.getSolution()
        valid = solution.dual_valid
        row_dual = np.array(solution.row_dual) if valid else None
        col_dual = np.array(solution.col_dual) if valid else None
        note = "LP duals" if valid else "no dual solution available"
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
