"""Does a 90% band hold 90% of truths it never saw? Coverage of the error bands, held out by chip.

`loco_coverage` rebuilds each (family, source) band without one chip's residuals and counts
how many of that chip's rows fall inside: the coverage a user gets on a chip the bands were
not fitted on. `normalised_scores` and `scale_table` fit the end-to-end scale of a composite
band from measured serving runs (docs/bands.md); `scaled_coverage` scores it held out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tokenfab.calibrate.fit_bands import PROBABILITIES, held_chip, quantile_table, source_table
from tokenfab.cost.bands import POOLED, ResidualQuantiles


def _rq(table: dict) -> ResidualQuantiles:
    return ResidualQuantiles(tuple(table["probabilities"]), tuple(table["values"]), table["num_rows"])


def loco_coverage(res: pd.DataFrame, level: float = 0.9, by: tuple[str, ...] = ("family", "source")) -> pd.DataFrame:
    """Per group of `by`: rows, coverage and median relative width (hi - lo) / predicted of bands
    built without the held-out chip, over every measured chip in turn."""
    res = res.assign(chip=res["unit"].map(held_chip))
    rows = []
    groups = [(key, g) for key, g in res.groupby(list(by))]
    groups += [((POOLED,) + (k if isinstance(k, tuple) else (k,)), g) for k, g in res.groupby(list(by[1:]))] if len(by) > 1 else []
    for key, g in groups:
        inside, widths = [], []
        for chip, test in g.groupby("chip"):
            train = g[g["chip"] != chip]
            if len(train) < 20:
                continue
            q_lo, q_hi = _rq(source_table(train)).conformal(level)
            r = test["residual"].to_numpy()
            inside.append((r >= q_lo) & (r <= q_hi))
            widths.append(np.full(len(r), math.exp(-q_lo) - math.exp(-q_hi)))
        if not inside:
            continue
        hit = np.concatenate(inside)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "num_rows": len(hit),
                     "num_chips": len(inside), "coverage": float(hit.mean()),
                     "median_width_frac": float(np.median(np.concatenate(widths)))})
    return pd.DataFrame(rows)


def split_coverage(res: pd.DataFrame, level: float = 0.9, seed: int = 0) -> pd.DataFrame:
    """Split-conformal by rows (half calibrates, half tests) per family and source."""
    rng = np.random.default_rng(seed)
    out = []
    for (family, source), g in res.groupby(["family", "source"]):
        mask = rng.random(len(g)) < 0.5
        cal, test = g["residual"].to_numpy()[mask], g["residual"].to_numpy()[~mask]
        if len(cal) < 20 or len(test) == 0:
            continue
        q_lo, q_hi = _rq(source_table(g[mask])).conformal(level)
        out.append({"family": family, "source": source, "num_rows": len(test),
                    "coverage": float(((test >= q_lo) & (test <= q_hi)).mean()),
                    "median_width_frac": math.exp(-q_lo) - math.exp(-q_hi)})
    return pd.DataFrame(out)


def normalised_scores(predicted: np.ndarray, lo: np.ndarray, hi: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Score of each truth against its band in log space: <= 1 inside, the factor the band's log
    half-width must grow by to reach the truth otherwise."""
    u = np.log(measured / predicted)
    up, down = np.log(hi / predicted), np.log(lo / predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(u >= 0, u / np.maximum(up, 1e-9), u / np.minimum(down, -1e-9))
    return np.abs(score)


def scale_table(scores: np.ndarray) -> dict:
    """Quantile table of normalised scores, stored as the end-to-end scale of one metric."""
    return quantile_table(np.asarray(scores, dtype=float))


def scaled_coverage(scores: np.ndarray, groups: np.ndarray, level: float = 0.9) -> dict:
    """Coverage of the scaled band held out by group (e.g. chip or model): the scale is fitted on
    the other groups' scores and tested on the group's."""
    hits = []
    for g in np.unique(groups):
        train, test = scores[groups != g], scores[groups == g]
        if len(train) < 5:
            continue
        s = _rq(scale_table(train)).quantile(min(1.0, level * (len(train) + 1) / len(train)))
        hits.append(test <= s)
    hit = np.concatenate(hits) if hits else np.array([], dtype=bool)
    return {"num_rows": int(len(hit)), "coverage": float(hit.mean()) if len(hit) else float("nan")}


__all__ = ["loco_coverage", "split_coverage", "normalised_scores", "scale_table", "scaled_coverage", "held_chip",
           "PROBABILITIES"]
