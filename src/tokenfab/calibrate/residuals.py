"""Residual frames: per measured row, what the tool predicts under each way it may know a chip.

Error bands (and the accuracy report) need residuals that are honest about what the tool saw:
  - `predicted_s`: the shipped resolution (own fit, inherited, generic), in-sample for fitted chips;
  - `holdout_predicted_s`: for rows of the test split of a chip with its own profile, a profile
    refitted on that chip's train split only (out-of-sample 'fitted' residuals);
  - `unseen_predicted_s`: what the chip gets without its own measurements: its efficiency
    reference's profile if it names one ('inherited'), else the generic profile fitted WITHOUT
    the chip (leave-one-chip-out 'generic'; vendor chips never feed the generic fit, so for them
    this is the shipped generic profile).
The split is deterministic: a hash of the row's shape (device, op, formats and dimensions), so
repeats of one shape land on the same side and reruns give the same split.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable

import numpy as np
import pandas as pd

from tokenfab.calibrate.measurements import HARDWARE_NAMES
from tokenfab.calibrate.profiles import fit_chip_profile, fit_generic_profile
from tokenfab.calibrate.unseen import unseen_resolution as unseen_resolution_of
from tokenfab.calibrate.validate import GROUPS, predict_measurements
from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.profile import GENERIC, ResolvedProfile, load_profile, profile_from_dict, chip_compute_units
from tokenfab.hardware.catalog import load_chip

TEST_FRACTION_DENOM = 5  # one shape in five is held out
SHAPE_COLUMNS = ("device", "op", "dtype", "weight_dtype", "variant", "kv_dtype", "m", "n", "k", "batch", "q_len",
                 "kv_len", "num_heads", "num_kv_heads", "head_dim", "num_devices", "message_bytes", "bytes")
COLUMNS = ["source", "device", "op", "op_family", "kind", "measured_s", "predicted_s", "efficiency_source", "split",
           "holdout_predicted_s", "unseen_predicted_s", "unseen_source"]


def shape_split(frame: pd.DataFrame) -> np.ndarray:
    """'test' for one shape in TEST_FRACTION_DENOM (by a hash of its shape columns), else 'train'."""
    cols = [c for c in SHAPE_COLUMNS if c in frame.columns]
    digest = np.array([int(hashlib.blake2b("|".join(map(str, t)).encode(), digest_size=8).hexdigest(), 16)
                       % TEST_FRACTION_DENOM for t in frame[cols].itertuples(index=False)], dtype=int)
    return np.where(digest == 0, "test", "train")


def _kind(frame: pd.DataFrame) -> pd.Series:
    """A readable kernel class per row: gemm dtype/weights/variant, attention kv format, collective group size."""
    def one(r) -> str:
        if r["op"] == "gemm":
            variant = f"-{r['variant']}" if isinstance(r["variant"], str) and r["variant"] else ""
            weights = r["weight_dtype"] if isinstance(r["weight_dtype"], str) and r["weight_dtype"] != r["dtype"] else ""
            return f"{r['dtype']}{variant}" + (f"-w{weights}" if weights else "")
        if str(r["op"]).startswith("attention"):
            return f"kv-{r['kv_dtype'] if isinstance(r['kv_dtype'], str) else 'bf16'}"
        return f"n{int(r['num_devices'])}" if not pd.isna(r["num_devices"]) else ""
    return frame.apply(one, axis=1)


def unseen_resolution(chip_name: str, generic_without: dict | None = None) -> ResolvedProfile:
    """How `chip_name` is predicted without its own profile (module doc)."""
    chip = load_chip(chip_name)
    generic = profile_from_dict(generic_without, f"generic without {chip_name}") if generic_without else load_profile(GENERIC)
    ref = load_profile(chip.efficiency_reference) if chip.efficiency_reference else None
    if ref is not None:
        return ResolvedProfile(ref, generic, "inherited", chip_compute_units(chip, ref), f"inherited from {chip.efficiency_reference}",
                               clock_hz=chip.clock)
    return unseen_resolution_of(chip, generic, "generic (chip unseen)")  # the one definition (calibrate.unseen)


def holdout_resolution(frame: pd.DataFrame, chip_name: str) -> ResolvedProfile:
    """The chip's profile refitted on its train-split rows only, with the shipped fallbacks behind it."""
    chip = load_chip(chip_name)
    rows = frame[frame["device"] == chip_name]
    own = profile_from_dict(fit_chip_profile(rows[shape_split(rows) == "train"], chip, "train split"), chip_name)
    ref = load_profile(chip.efficiency_reference) if chip.efficiency_reference else None
    generic = load_profile(GENERIC)
    return ResolvedProfile(own, generic, "fitted", chip_compute_units(chip, own), "fitted on the train split", reference=ref)


def _predict_with(frame: pd.DataFrame, resolved: ResolvedProfile) -> pd.DataFrame:
    cc = ChipCost(load_chip(str(frame["device"].iloc[0])), resolved)
    return predict_measurements(frame, lambda _d, _cc=cc: _cc)


def residual_frame(frame: pd.DataFrame, devices: Iterable[str] | None = None, holdout: bool = True,
                   unseen: bool = True, log=sys.stderr) -> pd.DataFrame:
    """One row per measured kernel of `devices` (default: all in `frame`) with the COLUMNS above.

    `frame` is a measurement table (e.g. `load_shared_ops(vendors=True)`). Refits make this take
    minutes on the full shared data; pass `holdout=False, unseen=False` for the shipped
    predictions only.
    """
    devices = sorted(devices or frame["device"].unique())
    pooled = sorted(set(HARDWARE_NAMES.values()) & set(frame["device"]))
    parts = []
    for dev in devices:
        rows = frame[frame["device"] == dev].reset_index(drop=True)
        shipped = predict_measurements(rows)
        out = pd.DataFrame({
            "source": rows["source"], "device": dev, "op": rows["op"], "op_family": rows["op"].map(GROUPS).fillna("other"),
            "kind": _kind(rows), "measured_s": rows["time_s"], "predicted_s": shipped["predicted_s"],
            "efficiency_source": shipped["efficiency_source"], "split": shape_split(rows),
            "holdout_predicted_s": np.nan, "unseen_predicted_s": np.nan, "unseen_source": "",
        })
        if holdout and load_profile(dev) is not None:
            test = out["split"] == "test"
            pred = _predict_with(rows[test.to_numpy()], holdout_resolution(rows, dev))
            out.loc[test, "holdout_predicted_s"] = pred["predicted_s"].to_numpy()
        if unseen:
            generic_without = None
            if dev in pooled:
                others = [load_chip(d) for d in pooled if d != dev]
                generic_without = fit_generic_profile(frame[frame["device"].isin([c.name for c in others])], others,
                                                      f"generic without {dev}")
            pred = _predict_with(rows, unseen_resolution(dev, generic_without))
            out["unseen_predicted_s"] = pred["predicted_s"].to_numpy()
            out["unseen_source"] = pred["efficiency_source"].to_numpy()
        parts.append(out)
        print(f"  residuals: {dev} done ({len(out)} rows)", file=log)
    return pd.concat(parts, ignore_index=True)[COLUMNS]


def mape(measured: pd.Series, predicted: pd.Series) -> float:
    """Mean absolute percentage error (fraction) over rows that have a prediction."""
    ok = predicted.notna() & measured.notna()
    return float((predicted[ok] / measured[ok] - 1.0).abs().mean()) if ok.any() else float("nan")
