"""Collective measurements that are a property of the host they ran on, not of the chip.

A PCIe card's collectives among more than two GPUs depend on the server's PCIe topology (switches,
sockets, peer-to-peer support), which the chip catalog does not describe. Where the shared tables
measured such a group size on a host whose fabric is demonstrably slower than the chip's own link
(host_bound.yaml gives the evidence), fitting it into the chip's profile would make every user's
server that slow; those rows are left out, and the group size resolves to the largest kept one.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

HOST_BOUND_FILE = Path(__file__).with_name("host_bound.yaml")


@lru_cache(maxsize=1)
def host_bound_group_sizes() -> dict[str, tuple[int, ...]]:
    """{chip name: group sizes whose collective rows describe the measuring host}."""
    data = yaml.safe_load(HOST_BOUND_FILE.read_text()) or {}
    return {chip: tuple(int(n) for n in entry["num_devices"]) for chip, entry in data.items()}


def host_bound_mask(rows: pd.DataFrame) -> pd.Series:
    """True for the measurement rows (with `device` and `num_devices`) whose chip and group size are host-bound;
    rows without a group size (kernels) are never."""
    mask = pd.Series(False, index=rows.index)
    if "num_devices" not in rows or "device" not in rows:
        return mask
    for chip, sizes in host_bound_group_sizes().items():
        mask |= rows["device"].eq(chip) & rows["num_devices"].isin(sizes)
    return mask


def drop_host_bound(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` without host-bound collective measurements."""
    return rows[~host_bound_mask(rows)]
