"""Per-period values: a number for all periods, or a step function keyed by label.

One rule for every per-period field (demand, supply, prices, budgets, limits), so a
plan reads the same way everywhere: a listed period sets the value from then on; the
first period must be listed; an unknown label is an error naming the nearest labels.
"""

from __future__ import annotations

import math

import numpy as np

from tokenfab.errors import InvalidInputError, UnknownNameError


def period_index(label: str, periods: list[str], where: str) -> int:
    """Index of `label`, or UnknownNameError naming the field it was found in."""
    try:
        return periods.index(label)
    except ValueError:
        raise UnknownNameError(f"period in {where}", label, periods) from None


def resolve_per_period(
    value: float | dict[str, float] | None,
    periods: list[str],
    where: str,
    *,
    default: float = math.inf,
    allow_negative: bool = False,
) -> np.ndarray:
    """Expand a per-period value into one float per period (None -> `default` everywhere)."""
    num = len(periods)
    if value is None:
        return np.full(num, default, dtype=float)
    if isinstance(value, int | float):
        values = np.full(num, float(value), dtype=float)
    else:
        values = np.full(num, np.nan, dtype=float)
        for label, number in value.items():
            values[period_index(label, periods, where)] = float(number)
        if math.isnan(values[0]):
            raise InvalidInputError(f"{where}: the first period '{periods[0]}' must be listed")
        for t in range(1, num):  # step function: carry the latest listed value forward
            if math.isnan(values[t]):
                values[t] = values[t - 1]
    if not np.all(np.isfinite(values) | (values == math.inf)):
        raise InvalidInputError(f"{where}: values must be numbers, got {value}")
    if not allow_negative and np.any(values < 0):
        t = int(np.argmax(values < 0))
        raise InvalidInputError(f"{where}: value for period '{periods[t]}' is negative ({values[t]:g})")
    return values
