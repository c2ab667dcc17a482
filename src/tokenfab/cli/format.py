"""Human units for tables (the only place, with reports, where ms, GB and TFLOP/s appear)."""

from __future__ import annotations

from tokenfab.units import US, bytes_to_gb, s_to_ms


def ms(seconds: float) -> str:
    if seconds >= 10.0:
        return f"{seconds:,.1f} s"
    if seconds >= 1e-3:
        return f"{s_to_ms(seconds):,.2f} ms"
    return f"{seconds / US:,.1f} us"


def gb(num_bytes: float) -> str:
    return f"{bytes_to_gb(num_bytes):,.2f} GB"


def rate(value: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:,.2f} {prefix}{unit}"
    return f"{value:,.2f} {unit}"


def pct(frac: float) -> str:
    return f"{frac * 100:.0f}%"


def banded(d: dict, key: str, fmt=None) -> str:
    """`d[key]` with its error band `[F_lo, F_hi]` (DESIGN.md 'Error bands'), e.g. '12.30 ms [11.02, 14.61 ms]'."""
    fmt = fmt or ms
    value, lo, hi = d.get(key), d.get(f"{key}_lo"), d.get(f"{key}_hi")
    if lo is None or hi is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(lo)} .. {fmt(hi)}]"
