"""Held-out accuracy of calibration: fit on one half of a measurement set, score the other half.

    python bench/calibration_holdout.py [--json OUT]

For each measurement set, rows are split in two halves at random (seeded, stratified by op);
the chip is calibrated on half A (tokenfab.calibrate.calibrated_chip) and both the uncalibrated
("before") and the calibrated ("after") chip predict half B. Before calibration means what the
tool predicts for that silicon without having measured it:
  - the four chips of ../shared/calibration: the generic profile fitted WITHOUT that chip
    (leave-one-chip-out), against the chip's vendor peaks;
  - H100 measured with tokenfab calibrate through PyTorch (data/measurements): the shipped
    h100-sxm profile, fitted on TensorRT-LLM kernels;
  - this machine's CPU (data/measurements, --device cpu): the catalog's cpu-host entry (an EPYC
    9654 spec with the generic profile); after calibration the peaks are the measured ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tokenfab.calibrate.calibrated_chip import calibrate_chip, write_chip_yaml
from tokenfab.calibrate.measurements import HARDWARE_NAMES, load_shared_ops, read_measurements
from tokenfab.calibrate.profiles import fit_generic_profile
from tokenfab.calibrate.validate import group_stats, predict_measurements
from tokenfab.cost.chip_cost import ChipCost, chip_cost
from tokenfab.cost.profile import ResolvedProfile, profile_from_dict
from tokenfab.hardware.catalog import load_chip

ROOT = Path(__file__).resolve().parents[1]


def split(frame: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(frame), dtype=bool)
    for _, idx in frame.groupby("op").indices.items():
        pick = rng.permutation(idx)[: len(idx) // 2]
        mask[pick] = True
    return frame[mask], frame[~mask]


def score(frame: pd.DataFrame, cc: ChipCost) -> dict:
    pred = predict_measurements(frame, lambda _d: cc)
    return {s.group: round(s.mape, 4) for s in group_stats(pred, ["group"])} | {
        "all": round(float(pred["error_frac"].abs().mean()), 4)}


def evaluate(name: str, frame: pd.DataFrame, before: ChipCost, base_chip, measured_peaks: bool, tmp: Path) -> dict:
    a, b = split(frame)
    data = calibrate_chip(a, base_chip, name=f"{base_chip.name}-holdout", use_measured_peaks=measured_peaks)
    after = chip_cost(load_chip(str(write_chip_yaml(data, tmp / f"{name}.yaml"))))
    row = {"set": name, "fit_rows": len(a), "test_rows": len(b), "before": score(b, before), "after": score(b, after)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path("/tmp/tokenfab-holdout")
    tmp.mkdir(exist_ok=True)
    results = []
    shared = load_shared_ops()
    shared = shared[shared["op"].isin(["gemm", "attention_prefill", "attention_decode"])]  # per-chip compute kernels
    names = sorted(set(HARDWARE_NAMES.values()))
    for held in names:
        others = [load_chip(n) for n in names if n != held]
        generic = profile_from_dict(fit_generic_profile(shared, others, f"generic without {held}"))
        chip = load_chip(held)
        before = ChipCost(chip, ResolvedProfile(generic, generic, "generic", chip.num_compute_units.value, "LOCO"))
        results.append(evaluate(f"shared:{held}", shared[shared["device"] == held], before, chip, False, tmp))
    for path, base, measured in ((ROOT / "data/measurements/h100-sxm_torch2.11_full.csv", "h100-sxm", False),
                                 (ROOT / "data/measurements/cpu-host_full.csv", "cpu-host", True)):
        if not path.exists():
            print(f"skipping {path} (not measured yet)", file=sys.stderr)
            continue
        frame = read_measurements(path)
        frame = frame[frame["op"].isin(["gemm", "attention_prefill", "attention_decode", "elementwise"])]
        results.append(evaluate(path.stem, frame.assign(device=base), chip_cost(load_chip(base)), load_chip(base), measured, tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
