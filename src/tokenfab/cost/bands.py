"""Error bands: how far a predicted time may be from the measured one, at a stated level.

The band data (`hardware/bands/error_bands.yaml`) is written by `tokenfab.calibrate.fit_bands`
from calibration residuals r = log(predicted / measured), one table per op family and
efficiency source (fitted, inherited, generic); this module only reads it. See docs/bands.md.

A single op's band at level L is split-conformal: with q_lo, q_hi the (1-L)/2 and (1+L)/2
quantiles of r (finite-sample corrected), the measured time lies in
[P exp(-q_hi), P exp(-q_lo)] for a fraction L of held-out rows. A sum of ops (an engine step, a
request's TTFT or TPOT) gets the comonotone sum of its ops' bounds: real errors share a
chip-level bias across all ops of a step, so they do not average out; full correlation is the
conservative end of that. An end-to-end scale, fitted on measured serving runs (normalised
conformal score), then narrows or widens that sum in log space to the coverage it really has.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokenfab.errors import DataFileError, InvalidInputError
from tokenfab.hardware.catalog import read_yaml

BANDS_PATH = Path(__file__).resolve().parent.parent / "hardware" / "bands" / "error_bands.yaml"
DEFAULT_BAND_LEVEL = 0.9
FAMILIES = ("gemm", "attention_prefill", "attention_decode", "collectives", "moe", "elementwise")
SOURCES = ("fitted", "inherited", "generic")
POOLED = "all"  # residuals of every measured family of one source: used where a family has none
_COLLECTIVE_WORDS = ("allreduce", "all_reduce", "gather", "reduce_scatter", "reducescatter", "alltoall", "all_to_all",
                     "dispatch", "combine", "send", "recv", "p2p", "comm")
_ELEMENTWISE_WORDS = ("norm", "rotary", "act", "residual", "embed", "sampl", "topk", "softmax", "elementwise")


@dataclass(frozen=True, slots=True)
class Band:
    """Multiplicative band of one figure: measured / predicted lies in [lo_factor, hi_factor]
    with probability `level` (lo_factor <= 1 <= hi_factor)."""

    lo_factor: float
    hi_factor: float
    level: float

    def __post_init__(self) -> None:
        if not (0.0 < self.lo_factor <= 1.0 <= self.hi_factor):
            raise ValueError(f"band factors must satisfy 0 < lo <= 1 <= hi, got {self.lo_factor}, {self.hi_factor}")


@dataclass(frozen=True)
class ResidualQuantiles:
    """Quantiles of r = log(predicted / measured) at `probabilities` over `num_rows` held-out rows."""

    probabilities: tuple[float, ...]
    values: tuple[float, ...]
    num_rows: int

    def quantile(self, p: float) -> float:
        return float(np.interp(p, self.probabilities, self.values))

    def conformal(self, level: float) -> tuple[float, float]:
        """(q_lo, q_hi) of an equal-tailed split-conformal interval: the tail probabilities are
        shrunk by the finite-sample factor (n + 1) / n so that coverage is at least `level`."""
        n = max(self.num_rows, 1)
        tail = (1.0 - level) / 2.0
        tail_adj = max(0.0, (tail * (n + 1) - 1.0) / n)
        return min(0.0, self.quantile(tail_adj)), max(0.0, self.quantile(1.0 - tail_adj))


@dataclass(frozen=True)
class BandTable:
    """The band data file: residual quantiles per (family, source) and end-to-end scales."""

    ops: dict[tuple[str, str], ResidualQuantiles]
    e2e_scale: dict[str, ResidualQuantiles]  # metric -> quantiles of the normalised conformal score
    provenance: dict
    reference_level: float = DEFAULT_BAND_LEVEL  # level of the composite band the scores were taken against
    # (family, source, level) -> Band: `op_band`'s answers from this table (a pure function of them; every row of
    # every `predict` JSON asks, two interpolations each)
    op_bands: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def residuals(self, family: str, source: str) -> ResidualQuantiles:
        source = source if source in SOURCES else "generic"  # 'mixed', 'analytic': the least trusted
        for key in ((family, source), (POOLED, source), (family, "generic"), (POOLED, "generic")):
            if key in self.ops:
                return self.ops[key]
        raise DataFileError(f"band data has no residuals for {family}/{source} nor a pooled fallback")

    def scale(self, metric: str | None, level: float) -> float | None:
        """Exponent applied in log space to the reference-level composite band of `metric`, or None
        where no end-to-end scale was fitted (the composite at `level` is then used as is)."""
        q = self.e2e_scale.get(metric) if metric else None
        if q is None:
            return None
        n = max(q.num_rows, 1)
        return max(q.quantile(min(1.0, level * (n + 1) / n)), 1e-3)


def check_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0.5 <= level <= 0.99):
        raise InvalidInputError(f"--band-level must be between 0.5 and 0.99 (e.g. 0.8, 0.9, 0.95), got {level}")
    return float(level)


def _quantiles(data: dict, where: str) -> ResidualQuantiles:
    try:
        probs, values = tuple(float(p) for p in data["probabilities"]), tuple(float(v) for v in data["values"])
        if len(probs) != len(values) or list(probs) != sorted(probs) or list(values) != sorted(values):
            raise ValueError("probabilities and values must be sorted lists of equal length")
        return ResidualQuantiles(probs, values, int(data["num_rows"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileError(f"band data {where}: {exc}") from None


@functools.lru_cache(maxsize=4)
def load_band_table(path: str | None = None) -> BandTable:
    """Read the band data (the packaged file unless `path` is given)."""
    p = Path(path) if path else BANDS_PATH
    if not p.exists():
        raise DataFileError(f"band data {p} is missing (regenerate: python -m tokenfab.calibrate.fit_bands)")
    data = read_yaml(p)
    ops = {(fam, src): _quantiles(q, f"{fam}/{src}") for fam, by_src in data.get("ops", {}).items()
           for src, q in by_src.items()}
    e2e = {m: _quantiles(q, f"end_to_end/{m}") for m, q in (data.get("end_to_end") or {}).items()}
    ref = float((data.get("end_to_end_reference_level") or DEFAULT_BAND_LEVEL))
    return BandTable(ops, e2e, data.get("provenance", {}), ref)


@functools.lru_cache(maxsize=4096)  # a pure function of two strings, asked for every breakdown row
def op_family(op: str, phase: str = "") -> str:
    """Family of an operator name as the step breakdown and `op` name them."""
    name = op.lower()
    if name.startswith("moe.experts") or name == "moe":
        return "moe"
    if any(w in name for w in _COLLECTIVE_WORDS):
        return "collectives"
    if name in ("attention", "attn.core") or name.endswith(".core"):
        return "attention_prefill" if phase == "prefill" else "attention_decode"
    if name.startswith("attention_"):
        return name if name in FAMILIES else "attention_decode"
    if any(w in name for w in _ELEMENTWISE_WORDS):
        return "elementwise"
    return "gemm"


def op_band(family: str, source: str, level: float = DEFAULT_BAND_LEVEL, table: BandTable | None = None) -> Band:
    """Band of one op of `family` whose efficiency came from `source` (remembered in the table's `op_bands`)."""
    table = table or load_band_table()
    key = (family, source, level)
    band = table.op_bands.get(key)
    if band is None:
        q_lo, q_hi = table.residuals(family, source).conformal(level)
        band = table.op_bands[key] = Band(math.exp(-q_hi), math.exp(-q_lo), level)
    return band


def composite_band(parts: Iterable[tuple[float, str, str]], level: float = DEFAULT_BAND_LEVEL, metric: str | None = None,
                   table: BandTable | None = None) -> Band:
    """Band of a sum of op times, `parts` = (time_s, family, source): the comonotone sum of the ops'
    bounds (module doc). Where an end-to-end scale of `metric` was fitted, the sum is taken at the
    reference level and raised to the scale's level-quantile (normalised split-conformal)."""
    table = table or load_band_table()
    parts = list(parts)
    s = table.scale(metric, level)
    at = table.reference_level if s is not None else level
    total = lo = hi = 0.0
    for time_s, family, source in parts:
        b = op_band(family, source, at, table)
        total, lo, hi = total + time_s, lo + time_s * b.lo_factor, hi + time_s * b.hi_factor
    if total <= 0:
        return Band(1.0, 1.0, level)
    s = 1.0 if s is None else s
    return Band(min(1.0, (lo / total) ** s), max(1.0, (hi / total) ** s), level)


# Figures whose value grows with the predicted time (times, energies) or falls with it (rates).
_NOT_BANDED = {"sim_wall_s", "roofline_s", "search_wall_s", "think_time_s", "trace_start_s", "interval_s"}


def _direction(key: str) -> int:
    """+1 if the figure scales with time, -1 if inversely, 0 if it is no timed prediction."""
    if key in _NOT_BANDED or key.endswith(("_lo", "_hi")):
        return 0
    if key.endswith("_per_s") or key in ("tflops",) or key.endswith("_per_s_per_chip"):
        return -1
    if key.endswith(("_s", "_j", "_j_per_token")) or key in ("p50", "p90", "p99", "mean"):
        return 1
    return 0


def add_bands(d: dict, band: Band, keys: Iterable[str] | None = None, nested: bool = True) -> dict:
    """Add F_lo and F_hi beside every timed figure F of `d` (in place; returns `d`).

    Times and energies get [F lo_factor, F hi_factor]; rates (`*_per_s`) the inverse. `keys`
    limits which top-level figures get bands; nested dicts of percentiles ({"p99": ..}) get
    siblings inside them ("p99_lo"), as DESIGN.md's stable interface says.
    """
    wanted = set(keys) if keys is not None else None
    for key in list(d):
        value = d[key]
        if wanted is not None and key not in wanted:
            continue
        if nested and isinstance(value, dict):
            sign = _direction(key)
            if sign:
                _add_inner(value, band, sign)
            continue
        sign = _direction(key)
        if sign and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            lo, hi = (band.lo_factor, band.hi_factor) if sign > 0 else (1.0 / band.hi_factor, 1.0 / band.lo_factor)
            d[f"{key}_lo"], d[f"{key}_hi"] = value * lo, value * hi
    return d


def _add_inner(inner: dict, band: Band, sign: int) -> None:
    for k in list(inner):
        v = inner[k]
        if k.endswith(("_lo", "_hi")) or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        lo, hi = (band.lo_factor, band.hi_factor) if sign > 0 else (1.0 / band.hi_factor, 1.0 / band.lo_factor)
        inner[f"{k}_lo"], inner[f"{k}_hi"] = v * lo, v * hi
