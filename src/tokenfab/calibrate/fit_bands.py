"""Write the error-band data (hardware/bands/error_bands.yaml) from held-out calibration residuals.

    python -m tokenfab.calibrate.fit_bands [--out PATH] [--max-rows-per-chip N] [--seed S] [--residuals-out R.parquet]

Residual r = log(predicted / measured) of a measured op row, predicted the way a user's chip
would be, i.e. never by a fit that saw the row:
  fitted     2-fold within each measured chip (shared tables and vendors/): the chip's profile
             refitted on one half of its rows predicts the other half;
  inherited  each measured chip predicted with another measured chip's profile (what an
             `efficiency_reference` does), plus the published H20 rows (vendors/) predicted
             with the H100 profile the catalog's h20 inherits;
  generic    leave-one-chip-out: the pooled profile refitted without the chip predicts it; the
             vendors/ chips (never pooled) are predicted with the pooled fit over all four.
The quantiles of r per op family and source are stored (docs/bands.md); prediction code reads
them through tokenfab.cost.bands. Re-run after any change to the cost models or the profiles;
then `python bench/accuracy_bands.py --write-e2e` refits the end-to-end scale.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tokenfab.calibrate.measurements import HARDWARE_NAMES, from_shared_frame, load_shared_ops, shared_calibration_dir
from tokenfab.calibrate.profiles import fit_chip_profile, fit_generic_profile
from tokenfab.calibrate.validate import predict_measurements
from tokenfab.cost.bands import BANDS_PATH, DEFAULT_BAND_LEVEL, FAMILIES, POOLED
from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.profile import GENERIC, ResolvedProfile, load_profile, profile_from_dict
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.catalog import load_chip
from tokenfab.hardware.spec import ChipSpec

PROBABILITIES = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25,
                 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98,
                 0.99, 0.995, 0.9975, 1.0)
OP_FAMILY = {"gemm": "gemm", "attention_prefill": "attention_prefill", "attention_decode": "attention_decode",
             "elementwise": "elementwise", "moe": "moe", "all_reduce": "collectives", "all_gather": "collectives",
             "reduce_scatter": "collectives", "all_to_all": "collectives", "all_reduce_oneshot": "collectives",
             "send_recv": "collectives"}
# vendors/ files measured on a chip whose catalog entry inherits a measured chip's profile.
INHERITED_VENDOR_FILES = {"h20": ("H20 (96GB HBM3)", ("ops_gemm_h20.csv", "ops_attention_h20.csv"))}


def _resolved(chip: ChipSpec, profile_data: dict, provenance: str, note: str) -> ChipCost:
    profile = profile_from_dict(profile_data, note)
    generic = load_profile(GENERIC) or profile
    units = chip.num_compute_units.value if chip.num_compute_units else profile.compute_units
    # the chip's clock, as `resolve_profile` passes it: a pooled MoE fixed cost is counted in its cycles
    return ChipCost(chip, ResolvedProfile(profile, generic, provenance, units, note, clock_hz=chip.clock))


def _residual_frame(pred: pd.DataFrame, source: str, unit: str) -> pd.DataFrame:
    out = pred.dropna(subset=["predicted_s"])
    out = out[(out["predicted_s"] > 0) & (out["time_s"] > 0)]
    return pd.DataFrame({"device": out["device"].to_numpy(), "op": out["op"].to_numpy(),
                         "family": out["op"].map(OP_FAMILY).fillna("gemm").to_numpy(), "source": source,
                         "unit": unit, "residual": np.log(out["predicted_s"] / out["time_s"]).to_numpy(),
                         "row_source": out["source"].astype(str).to_numpy()})


def _halves(rows: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Fold (0 or 1) of each row, stratified by op so each half holds every op's shapes."""
    fold = np.zeros(len(rows), dtype=int)
    for _, idx in rows.groupby("op").indices.items():
        perm = rng.permutation(idx)
        fold[perm[len(perm) // 2:]] = 1
    return fold


def fitted_residuals(frame: pd.DataFrame, chips: list[ChipSpec], rng: np.random.Generator) -> pd.DataFrame:
    """2-fold within each chip: refit the chip's profile on one half, predict the other."""
    parts = []
    for chip in chips:
        rows = frame[frame["device"] == chip.name].reset_index(drop=True)
        fold = _halves(rows, rng)
        for k in (0, 1):
            try:
                data = fit_chip_profile(rows[fold != k], chip, f"{chip.name} fold {1 - k}")
            except InvalidInputError:
                continue
            cc = _resolved(chip, data, "fitted", f"{chip.name} fitted on fold {1 - k}")
            parts.append(_residual_frame(predict_measurements(rows[fold == k], lambda _d, _c=cc: _c), "fitted", chip.name))
        print(f"  fitted: {chip.name} done", file=sys.stderr)
    return pd.concat(parts, ignore_index=True)


def generic_residuals(frame: pd.DataFrame, chips: list[ChipSpec], unseen: pd.DataFrame | None = None) -> pd.DataFrame:
    """Leave one chip out: the pooled profile fitted on the others predicts the held-out chip; chips
    of `unseen` (vendors/, never part of the pooled fit) are predicted with the fit over all `chips`."""
    parts = []
    if unseen is not None and len(unseen):
        data = fit_generic_profile(frame, chips, "generic over all pooled chips")
        for device, rows in unseen.groupby("device"):
            cc = _resolved(load_chip(str(device)), data, "generic", f"generic (never saw {device})")
            parts.append(_residual_frame(predict_measurements(rows, lambda _d, _c=cc: _c), "generic", str(device)))
        print("  generic: vendor chips done", file=sys.stderr)
    for held in chips:
        others = [c for c in chips if c.name != held.name]
        data = fit_generic_profile(frame, others, f"generic without {held.name}")
        cc = _resolved(held, data, "generic", f"generic fitted without {held.name}")
        rows = frame[frame["device"] == held.name]
        parts.append(_residual_frame(predict_measurements(rows, lambda _d, _c=cc: _c), "generic", held.name))
        print(f"  generic: {held.name} done", file=sys.stderr)
    return pd.concat(parts, ignore_index=True)


def vendor_rows(directory: Path, chip_name: str) -> pd.DataFrame:
    """Published rows of a chip in vendors/, as measurement rows of catalog chip `chip_name`."""
    label, files = INHERITED_VENDOR_FILES[chip_name]
    paths = [directory / "vendors" / f for f in files if (directory / "vendors" / f).exists()]
    if not paths:
        return pd.DataFrame()
    raw = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    rows = from_shared_frame(raw[raw["hardware"] == label])
    rows["device"] = chip_name
    return rows


def inherited_residuals(frame: pd.DataFrame, chips: list[ChipSpec], directory: Path) -> pd.DataFrame:
    """Each measured chip predicted with each other measured chip's own profile, and the
    vendors/ rows of chips whose catalog entry inherits a measured chip's profile."""
    fits = {c.name: fit_chip_profile(frame, c, f"{c.name} (all rows)") for c in chips}
    parts = []
    for target in chips:
        rows = frame[frame["device"] == target.name]
        for ref, data in fits.items():
            if ref == target.name:
                continue
            cc = _resolved(target, data, "inherited", f"{target.name} from {ref}")
            parts.append(_residual_frame(predict_measurements(rows, lambda _d, _c=cc: _c), "inherited", f"{target.name}<-{ref}"))
        print(f"  inherited: {target.name} done", file=sys.stderr)
    for name in INHERITED_VENDOR_FILES:
        chip = load_chip(name)
        rows = vendor_rows(directory, name)
        if rows.empty or chip.efficiency_reference not in fits:
            continue
        cc = _resolved(chip, fits[chip.efficiency_reference], "inherited", f"{name} from {chip.efficiency_reference}")
        parts.append(_residual_frame(predict_measurements(rows, lambda _d, _c=cc: _c), "inherited",
                                     f"{name}<-{chip.efficiency_reference}"))
    return pd.concat(parts, ignore_index=True)


def all_residuals(max_rows_per_chip: int | None = None, seed: int = 0,
                  sources: tuple[str, ...] = ("fitted", "inherited", "generic")) -> pd.DataFrame:
    """Held-out residuals of every source on shared/calibration (module doc)."""
    directory = shared_calibration_dir()
    frame = load_shared_ops(directory)
    vendors = _vendor_ops(directory)
    rng = np.random.default_rng(seed)
    if max_rows_per_chip:
        frame = subsample(frame, max_rows_per_chip, rng)
        vendors = subsample(vendors, max_rows_per_chip, rng) if len(vendors) else vendors
    chips = [load_chip(n) for n in sorted(set(HARDWARE_NAMES.values()))]
    vendor_chips = [load_chip(n) for n in sorted(vendors["device"].unique())] if len(vendors) else []
    makers: dict[str, Callable[[], pd.DataFrame]] = {
        "fitted": lambda: pd.concat([fitted_residuals(frame, chips, rng),
                                     *([fitted_residuals(vendors, vendor_chips, rng)] if vendor_chips else [])]),
        "generic": lambda: generic_residuals(frame, chips, vendors),
        "inherited": lambda: inherited_residuals(frame, chips, directory)}
    return pd.concat([makers[s]() for s in sources], ignore_index=True)


def _vendor_ops(directory: Path) -> pd.DataFrame:
    """Rows of vendors/ (Ascend 910B, H20, MI355X, MI308X) where this version of the loader has them."""
    try:
        from tokenfab.calibrate.measurements import load_vendor_ops
    except ImportError:
        return pd.DataFrame()
    return load_vendor_ops(directory)


def subsample(frame: pd.DataFrame, max_rows_per_chip: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most `max_rows_per_chip` rows per chip, drawn per op in proportion (seeded)."""
    keep = []
    for _, rows in frame.groupby("device"):
        frac = min(1.0, max_rows_per_chip / len(rows))
        for _, idx in rows.groupby("op").indices.items():
            take = max(1, int(round(len(idx) * frac)))
            keep.extend(rows.index[rng.permutation(idx)[:take]])
    return frame.loc[sorted(keep)]


def quantile_table(residuals: np.ndarray) -> dict:
    values = np.quantile(np.asarray(residuals, dtype=float), PROBABILITIES)
    return {"num_rows": int(len(residuals)), "probabilities": list(PROBABILITIES),
            "values": [float(f"{v:.5g}") for v in np.maximum.accumulate(values)]}


def held_chip(unit: str) -> str:
    """The chip a residual was measured on ('l40s<-h100-sxm' -> 'l40s')."""
    return unit.split("<-")[0]


def chip_envelope_table(residuals: np.ndarray, chips: np.ndarray) -> dict:
    """Quantile table for a chip the fit never saw: at each probability below the median the
    smallest, above it the largest, of the per-chip quantiles (each measured chip's error
    distribution is one draw of 'a new chip'; pooling rows would let the chips with many rows
    and small errors hide the others)."""
    pooled = quantile_table(residuals)
    per_chip = np.array([np.quantile(residuals[chips == c], PROBABILITIES) for c in np.unique(chips)])
    probs = np.array(PROBABILITIES)
    env = np.where(probs < 0.5, per_chip.min(axis=0), np.where(probs > 0.5, per_chip.max(axis=0), pooled["values"]))
    pooled["values"] = [float(f"{v:.5g}") for v in np.maximum.accumulate(env)]
    return pooled


def source_table(group: pd.DataFrame) -> dict:
    """Band table of one (family, source) group: split-conformal over rows for a chip's own fit
    (new shapes on a measured chip), the per-chip envelope for inherited and generic profiles."""
    r = group["residual"].to_numpy()
    if group["source"].iloc[0] == "fitted":
        return quantile_table(r)
    return chip_envelope_table(r, group["unit"].map(held_chip).to_numpy())


def band_tables(res: pd.DataFrame) -> dict:
    """{family: {source: quantile table}} plus the pooled family `all` of every source."""
    out: dict[str, dict] = {}
    for (family, source), g in res.groupby(["family", "source"]):
        out.setdefault(family, {})[source] = source_table(g)
    for source, g in res.groupby("source"):
        out.setdefault(POOLED, {})[source] = source_table(g)
    order = [f for f in (*FAMILIES, POOLED) if f in out]
    return {f: out[f] for f in order}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_band_data(res: pd.DataFrame, path: Path = BANDS_PATH, end_to_end: dict | None = None) -> Path:
    """Write the band YAML atomically; keeps the file's end-to-end section unless one is given."""
    old = yaml.safe_load(path.read_text()) if path.exists() else {}
    counts = res.groupby(["source", "unit"]).size()
    data = {
        "provenance": {
            "method": "split-conformal quantiles of log(predicted/measured) of held-out rows per op family and "
                      "efficiency source (docs/bands.md)",
            "generator": "python -m tokenfab.calibrate.fit_bands",
            "commit": _commit(), "generated_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "data": "shared/calibration ops_gemm.csv, ops_attention.csv, ops_comm.csv (NVIDIA aiconfigurator-core "
                    "0.12.0 tables) and vendors/ (Ascend 910B, H20, MI355X, MI308X; sources in vendors/README.md)",
            "rows": {f"{s}:{u}": int(n) for (s, u), n in counts.items()},
        },
        "ops": band_tables(res),
        "end_to_end": end_to_end if end_to_end is not None else (old or {}).get("end_to_end", {}),
        "end_to_end_reference_level": (old or {}).get("end_to_end_reference_level", DEFAULT_BAND_LEVEL),
    }
    if end_to_end is None and (old or {}).get("provenance", {}).get("end_to_end"):
        data["provenance"]["end_to_end"] = old["provenance"]["end_to_end"] + (
            " (kept from an earlier run: re-run bench/accuracy_bands.py --write-e2e after changing the op tables)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("# Error-band data written by tokenfab.calibrate.fit_bands; do not edit by hand.\n"
                   + yaml.safe_dump(data, sort_keys=False, width=120))
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=BANDS_PATH)
    ap.add_argument("--max-rows-per-chip", type=int, default=None, help="subsample for a quick run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--residuals-out", type=Path, help="also keep the residuals (parquet) for bench/accuracy_bands.py")
    ap.add_argument("--from-residuals", type=Path, help="rebuild the tables from residuals kept by --residuals-out")
    args = ap.parse_args()
    res = pd.read_parquet(args.from_residuals) if args.from_residuals else all_residuals(args.max_rows_per_chip, args.seed)
    if args.residuals_out:
        res.to_parquet(args.residuals_out)
    print(f"wrote {write_band_data(res, args.out)} from {len(res)} held-out residuals")


if __name__ == "__main__":
    main()
