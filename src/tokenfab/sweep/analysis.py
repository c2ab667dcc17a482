"""What a sweep's points say: the Pareto front and the sensitivity of each output to each knob.

Sensitivity is given two ways over the points that meet the SLO: Spearman's rank correlation
(monotone effects of any shape, robust to the knobs' units) and standardised regression
coefficients (the slope of a linear fit on z-scored knobs and output: the share of an output's
spread that one knob's spread explains when the others are held fixed; meaningful on a sample
where knobs vary independently, as a grid, Sobol or LHS sample does).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

# output -> True when larger is better. Die cost is an objective of its own: at data-center prices it is a
# small share of the cost per token, but it is what an architect trades against speed.
OBJECTIVES = {"tokens_per_s_per_chip": True, "tokens_per_s_per_w": True, "cost_per_mtok": False,
              "cost_per_good_die": False}
OUTPUTS = ("tokens_per_s_per_chip", "tokens_per_s_per_w", "cost_per_mtok", "cost_per_good_die")


def pareto_mask(values: np.ndarray, maximise: list[bool]) -> np.ndarray:
    """Rows of `values` (points x objectives) that no other row dominates; NaN rows never qualify."""
    v = np.where(np.asarray(maximise), values, -values)
    ok = ~np.isnan(v).any(axis=1)
    idx = np.flatnonzero(ok)
    keep = np.zeros(len(v), dtype=bool)
    pts = v[idx]
    order = np.argsort(-pts[:, 0], kind="stable")
    front: list[int] = []
    for i in order:  # points sorted by the first objective: only earlier ones can dominate
        p = pts[i]
        if front:
            f = pts[front]
            if np.any(np.all(f >= p, axis=1) & np.any(f > p, axis=1)):
                continue
        front.append(i)
    keep[idx[front]] = True
    return keep


def sensitivity(knobs: np.ndarray, outputs: dict[str, np.ndarray], knob_names: list[str]) -> dict[str, dict[str, dict]]:
    """{output: {knob: {spearman, src}}} over the rows where the output is finite."""
    result: dict[str, dict[str, dict]] = {}
    for name, y in outputs.items():
        ok = np.isfinite(y)
        rows: dict[str, dict] = {}
        x, yy = knobs[ok], y[ok]
        varied = [j for j in range(x.shape[1]) if len(x) > 2 and np.ptp(x[:, j]) > 0]
        src = _src(x[:, varied], yy) if varied and np.ptp(yy) > 0 else np.zeros(len(varied))
        for j, name_j in enumerate(knob_names):
            if j not in varied or np.ptp(yy) == 0:
                rows[name_j] = {"spearman": None, "src": None}
                continue
            rho = stats.spearmanr(x[:, j], yy).statistic
            rows[name_j] = {"spearman": float(rho), "src": float(src[varied.index(j)])}
        result[name] = rows
    return result


def _src(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Standardised regression coefficients of y on the columns of x."""
    xz = (x - x.mean(axis=0)) / x.std(axis=0)
    yz = (y - y.mean()) / y.std()
    coef, *_ = np.linalg.lstsq(np.column_stack([xz, np.ones(len(yz))]), yz, rcond=None)
    return coef[:-1]
