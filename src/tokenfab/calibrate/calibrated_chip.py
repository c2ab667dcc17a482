"""A calibrated chip: the catalog spec plus an efficiency profile fitted on its measurements.

The result is one YAML file that `predict`, `op` and `simulate` accept anywhere a chip name
goes. For a device whose vendor peaks are unknown or do not describe it (the host CPU of a
test machine, an engineering sample) the peaks can be replaced by the best rates measured
(`measured_peaks`): efficiencies are then fractions of what the silicon actually sustains.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tokenfab.calibrate.profiles import fit_chip_profile
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.spec import ChipSpec
from tokenfab.table_io import YAML_SUFFIXES, write_text

def _measured(value: float, what: str, source: str) -> dict:
    return {"value": float(value), "source": source, "basis": "measured", "note": what}


def measured_peaks(frame: pd.DataFrame, chip: ChipSpec, source: str) -> dict:
    """Spec fields replaced by the best measured rates: GEMM FLOP/s per format, streaming bandwidth."""
    updates: dict = {}
    gemm = frame[frame["op"] == "gemm"]
    peaks = dict(chip.model_dump()["peak_flop_per_s"])
    for dtype, rows in gemm.groupby("dtype"):
        rate = float((2 * rows.m * rows.n * rows.k / rows.time_s).max())
        peaks[str(dtype)] = _measured(rate, f"best sustained {dtype} GEMM rate over {len(rows)} shapes", source)
    if peaks:
        updates["peak_flop_per_s"] = peaks
    stream = frame[frame["op"] == "elementwise"]
    if len(stream):
        big = stream[stream["bytes"] >= stream["bytes"].quantile(0.75)]  # DRAM-sized arrays, not cache
        bw = float((big.bytes / big.time_s).max())
        mem = chip.model_dump()["memory"]
        mem["bandwidth_bytes_per_s"] = _measured(bw, f"best copy/scale/triad bandwidth over arrays >= {big.bytes.min():.3g} bytes", source)
        updates["memory"] = mem
    return updates


def calibrate_chip(frame: pd.DataFrame, base: ChipSpec, *, name: str | None = None, use_measured_peaks: bool = False) -> dict:
    """YAML data of a calibrated chip spec (base spec + embedded fitted profile)."""
    rows = frame.copy()
    rows["device"] = base.name
    if rows.empty:
        raise InvalidInputError("no measurements to calibrate from")
    source = str(rows["source"].dropna().iloc[0]) if rows["source"].notna().any() else "tokenfab calibrate"
    data = base.model_dump(mode="json", exclude_none=True)
    if use_measured_peaks:
        data.update(measured_peaks(rows, base, source))
    data["name"] = name or f"{base.name}-calibrated"
    data["display_name"] = f"{base.display_name} (calibrated {dt.date.today().isoformat()})"
    data.pop("efficiency_reference", None)
    data.pop("efficiency_reference_reason", None)
    data.pop("efficiency_profile", None)
    chip = ChipSpec.model_validate(data)
    profile = fit_chip_profile(rows.assign(device=chip.name), chip, f"calibrated from {len(rows)} measurements: {source}")
    data["efficiency_profile"] = _plain(profile)
    data["notes"] = (base.notes + " " if base.notes else "") + f"Calibrated by tokenfab from {len(rows)} measurements."
    return data


def _plain(obj):
    """numpy scalars to Python numbers, so the YAML stays plain."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_chip_yaml(data: dict, path: str | Path) -> Path:
    return write_text("# Calibrated chip spec written by tokenfab calibrate; use it anywhere a chip name goes.\n"
                      + yaml.safe_dump(data, sort_keys=False, width=120), path, YAML_SUFFIXES, "chip profile")
