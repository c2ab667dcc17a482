"""Error bands of step-level and request-level figures, propagated from per-op bands.

A step's time is a sum of op times; its band is `tokenfab.cost.bands.composite_band` of the
step's breakdown (each op with its family and efficiency source). TTFT is a prefill step,
TPOT a decode step, end-to-end time their sum; rates and energies follow their time. The
end-to-end scales fitted on measured runs are keyed by the metric below (docs/bands.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from tokenfab.cost.bands import DEFAULT_BAND_LEVEL, Band, add_bands, check_level, composite_band, op_band, op_family
from tokenfab.execution.step import OpTotal

# End-to-end scale keys: serving runs (TTFT includes queueing) and static batches are fitted apart.
SERVING_TTFT, SERVING_TPOT = "serving_ttft", "serving_tpot"
STATIC_TTFT, STATIC_TPOT = "static_ttft", "static_tpot"


def breakdown_parts(rows: Iterable[Mapping], phase: str | None = None) -> list[tuple[float, str, str]]:
    """(time_s, family, source) of breakdown rows ({op, phase, time_s, source}) of `phase`."""
    return [(float(r["time_s"]), op_family(r["op"], r.get("phase", "")), str(r.get("source", "generic")))
            for r in rows if phase is None or r.get("phase") == phase]


def step_parts(totals: Mapping[str, OpTotal], phase: str) -> list[tuple[float, str, str]]:
    """(time_s, family, source) of a step's per-op totals."""
    return [(o.time_s, op_family(o.op, phase), o.source or "generic") for o in totals.values()]


def sum_band(parts: list[tuple[float, Band]], level: float) -> Band:
    """Band of a sum of figures with bands, comonotone like the ops inside each."""
    total = sum(t for t, _ in parts)
    if total <= 0:
        return Band(1.0, 1.0, level)
    lo = sum(t * b.lo_factor for t, b in parts) / total
    hi = sum(t * b.hi_factor for t, b in parts) / total
    return Band(min(lo, 1.0), max(hi, 1.0), level)


def static_batch_bands(d: dict, level: float = DEFAULT_BAND_LEVEL) -> dict:
    """Add `band_level` and F_lo/F_hi siblings to a `predict` result dict (in place)."""
    level = check_level(level)
    rows = d.get("breakdown", [])
    ttft = composite_band(breakdown_parts(rows, "prefill"), level, STATIC_TTFT)
    tpot = composite_band(breakdown_parts(rows, "decode"), level, STATIC_TPOT)
    decode_s = d["e2e_s"] - d["ttft_s"]
    e2e = sum_band([(d["ttft_s"], ttft), (decode_s, tpot)], level)
    d["band_level"] = level
    add_bands(d, ttft, ("ttft_s", "prefill_tokens_per_s"))
    add_bands(d, tpot, ("tpot_s", "decode_tokens_per_s"))
    add_bands(d, e2e, ("e2e_s", "throughput_tokens_per_s", "energy_j_per_token", "energy_j"))
    for r in rows:
        b = op_band(op_family(r["op"], r.get("phase", "")), str(r.get("source", "generic")), level)
        add_bands(r, b, ("time_s",))
    return d


def serving_bands(summary: dict, prefill: Band, decode: Band, level: float, slo: SLOTimes | None = None) -> dict:
    """Add bands to a `simulate` summary (in place): TTFT from the prefill step's band, TPOT from the
    decode step's, end-to-end figures, rates and energy from their time-weighted sum; goodput and SLO
    attainment re-counted with every request's times at their band's edges (`slo`)."""
    ttft_mean = summary["ttft_s"].get("mean", 0.0)
    e2e_mean = summary["e2e_s"].get("mean", 0.0)
    ok = ttft_mean == ttft_mean and e2e_mean == e2e_mean  # NaN when nothing completed
    e2e = sum_band([(ttft_mean, prefill), (max(e2e_mean - ttft_mean, 0.0), decode)], level) if ok else decode
    summary["band_level"] = level
    add_bands(summary, prefill, ("ttft_s",))
    add_bands(summary, decode, ("tpot_s",))
    add_bands(summary, e2e, ("e2e_s", "throughput_tokens_per_s", "requests_per_s", "energy_j_per_token", "energy_j",
                             "simulated_s"))
    if slo is not None:
        summary.update(slo_bounds(slo, summary.get("simulated_s", 0.0), prefill, decode, e2e))
    return summary


@dataclass(frozen=True)
class SLOTimes:
    """Per-request TTFT and TPOT of a run (NaN TPOT for one-token outputs) and the SLO they were judged by."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray
    slo_ttft_s: float | None
    slo_tpot_s: float | None


def slo_bounds(slo: SLOTimes, span_s: float, prefill: Band, decode: Band, e2e: Band) -> dict:
    """Goodput and SLO attainment when every request is as slow as the band's high edge (the low
    bound) or as fast as its low edge (the high bound): errors shared by all requests (comonotone)."""
    def within(ttft_factor: float, tpot_factor: float) -> np.ndarray:
        ok = np.ones(len(slo.ttft_s), dtype=bool)
        if slo.slo_ttft_s is not None:
            ok &= slo.ttft_s * ttft_factor <= slo.slo_ttft_s
        if slo.slo_tpot_s is not None:
            ok &= np.nan_to_num(slo.tpot_s, nan=0.0) * tpot_factor <= slo.slo_tpot_s
        return ok

    slow, fast = within(prefill.hi_factor, decode.hi_factor), within(prefill.lo_factor, decode.lo_factor)
    n = max(len(slow), 1)
    return {
        "goodput_requests_per_s_lo": float(slow.sum()) / (span_s * e2e.hi_factor) if span_s > 0 else 0.0,
        "goodput_requests_per_s_hi": float(fast.sum()) / (span_s * e2e.lo_factor) if span_s > 0 else 0.0,
        "slo_attainment_lo": float(slow.sum()) / n if len(slow) else 0.0,
        "slo_attainment_hi": float(fast.sum()) / n if len(fast) else 0.0,
    }
