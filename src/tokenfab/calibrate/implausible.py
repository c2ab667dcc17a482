"""Shared kernel tables that contradict the chip they are filed under.

A memory-bound kernel cannot stream a working set many times its on-chip cache faster than the chip's DRAM
bandwidth. Where a whole shared table does (implausible.yaml gives the evidence), fitting it would make the chip
faster than physics allows for every user; `fit_shared` leaves those rows out of the chip's and the pooled fits, so
that kernel class resolves to the generic profile, and `calibrate.validate` scores them in a group of their own.
Only the shared tables are screened: a user's own measurements (`tokenfab calibrate`) are fitted as given.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

IMPLAUSIBLE_FILE = Path(__file__).with_name("implausible.yaml")
KEYS = ("device", "op", "kv_dtype")


@lru_cache(maxsize=1)
def implausible_tables() -> tuple[dict[str, str], ...]:
    """The excluded tables, each as {device, op, kv_dtype} (the keys that select its rows)."""
    data = yaml.safe_load(IMPLAUSIBLE_FILE.read_text()) or []
    return tuple({k: str(entry[k]) for k in KEYS} for entry in data)


def implausible_mask(rows: pd.DataFrame) -> pd.Series:
    """True for the measurement rows of an excluded table; a frame without those columns has none."""
    mask = pd.Series(False, index=rows.index)
    if any(k not in rows for k in KEYS):
        return mask
    for table in implausible_tables():
        hit = pd.Series(True, index=rows.index)
        for k in KEYS:
            hit &= rows[k].astype(str).eq(table[k])
        mask |= hit
    return mask


def drop_implausible(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` without the excluded tables' measurements."""
    return rows[~implausible_mask(rows)]
