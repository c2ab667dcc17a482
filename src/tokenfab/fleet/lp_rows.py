"""Sparse row blocks of the fleet program: a tiny builder shared by lp_model and lp_resources.

Rows are reserved in blocks with a kind and a 3-index label (what a row is about), so the
report can name every constraint and its dual without knowing how it was built.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import scipy.sparse as sp


class RowKind(IntEnum):
    ALLOC = 0
    DEMAND = 1
    BUDGET_TOTAL = 2
    BUDGET_PERIOD = 3
    POWER = 4
    FLOOR = 5
    WORST = 6
    COMPONENT = 7  # (component, period, scenario)
    BUILD_LINK = 8  # (option, period, scenario): purchases only of a chip that is built


@dataclass(slots=True)
class DeliveredTerms:
    """One entry per (purchase, period it serves in, scenario it arrives in)."""

    option: np.ndarray
    order: np.ndarray  # period the purchase was ordered in
    period: np.ndarray  # period the chips serve in
    scenario: np.ndarray
    col: np.ndarray


class Rows:
    """Accumulates sparse row blocks (COO triplets) and their bounds and labels."""

    def __init__(self) -> None:
        self.count = 0
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.kind: list[np.ndarray] = []
        self.index: list[np.ndarray] = []

    def block(self, kind: RowKind, index: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Reserve rows (one per row of `index`) and return their numbers."""
        number = len(index)
        ids = np.arange(self.count, self.count + number)
        self.count += number
        self.kind.append(np.full(number, int(kind)))
        self.index.append(np.asarray(index, dtype=np.int64).reshape(number, 3))
        self.lower.append(np.broadcast_to(np.asarray(lower, dtype=float), (number,)).copy())
        self.upper.append(np.broadcast_to(np.asarray(upper, dtype=float), (number,)).copy())
        return ids

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray | float) -> None:
        rows, cols, vals = np.broadcast_arrays(np.asarray(rows), np.asarray(cols), np.asarray(vals, dtype=float))
        self.rows.append(rows.ravel().copy())
        self.cols.append(cols.ravel().copy())
        self.vals.append(vals.ravel().copy())

    def matrix(self, num_cols: int) -> sp.csc_matrix:
        if not self.rows:
            return sp.csc_matrix((self.count, num_cols))
        coo = sp.coo_matrix(
            (np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
            shape=(self.count, num_cols),
        )
        return coo.tocsc()  # duplicates are summed
