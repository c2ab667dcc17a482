"""Human units for tables (the only place, with reports, where ms, GB and TFLOP/s appear)."""

from __future__ import annotations

import math

from tokenfab.units import GB, MB, TB, TERA, US, bytes_to_gb, s_to_ms


def ms(seconds: float) -> str:
    if not math.isfinite(seconds):  # undefined (TPOT of one-token outputs): say so, not 'nan us'
        return "n/a"
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


def quantity(path: str, value: float) -> str:
    """A catalog number in the unit a person reads, chosen from the SI suffix of its field path
    (`memory.bandwidth_bytes_per_s` -> GB/s or TB/s, `peak_flop_per_s.bf16` -> TFLOP/s, `_bytes` -> GB, `_w` -> W)."""
    leaf = path.replace(".value", "")
    if "flop_per_s" in leaf:
        return f"{value / TERA:,.1f} TFLOP/s"
    if leaf.endswith("bytes_per_s"):
        return f"{value / TB:,.2f} TB/s" if value >= TB else f"{value / GB:,.1f} GB/s"
    if leaf.endswith("_bytes"):
        return f"{bytes_to_gb(value):,.1f} GB" if value >= GB else f"{value / MB:,.1f} MB"
    if leaf.endswith("_w"):
        return f"{value:,.0f} W"
    if leaf.endswith("_s"):
        return ms(value)
    if leaf.endswith("_usd"):
        return f"${value:,.0f}"
    if leaf.endswith("_mm2"):
        return f"{value:,.0f} mm2"
    if leaf == "transistors":
        return f"{value / 1e9:,.1f} billion"
    return f"{value:,.6g}"


def flatten_sourced(data: dict, prefix: str = "") -> list[tuple[str, dict]]:
    """(dotted path, {value, basis, source, note}) for every sourced number in a spec dump, in order."""
    rows: list[tuple[str, dict]] = []
    for key, item in data.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and "value" in item and "source" in item:
            rows.append((path, item))
        elif isinstance(item, dict):
            rows.extend(flatten_sourced(item, path + "."))
    return rows


def banded(d: dict, key: str, fmt=None) -> str:
    """`d[key]` with its error band `[F_lo, F_hi]` (DESIGN.md 'Error bands'), e.g. '12.30 ms [11.02, 14.61 ms]'."""
    fmt = fmt or ms
    value, lo, hi = d.get(key), d.get(f"{key}_lo"), d.get(f"{key}_hi")
    if lo is None or hi is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(lo)} .. {fmt(hi)}]"
