"""Per-vendor accuracy on shared/calibration/vendors: before and after fitting each chip's own profile.

    python bench/accuracy_vendors.py [--json OUT]

For Ascend 910B, H20, MI355X and MI308X, the rows are split by a hash of their shape (one shape
in five held out, `tokenfab.calibrate.residuals.shape_split`). Scored on the held-out rows only:
  before  what the tool predicts without the chip's measurements: its efficiency_reference's
          profile (H20 <- H100, 'inherited') or the generic profile ('generic': the vendor chips
          never feed the generic fit);
  after   a profile fitted on the chip's train rows only, with the usual per-class fallback
          (H20's bf16 GEMMs still come from H100).
Prints MAPE per chip, op family and kernel class; `run_vendor_group` is the hook that
bench/accuracy.py calls (same row format as the other groups).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tokenfab.calibrate.measurements import VENDOR_HARDWARE_NAMES, load_shared_ops, shared_calibration_dir
from tokenfab.calibrate.residuals import mape, residual_frame
from tokenfab.hardware.catalog import load_chip

VENDOR_CHIPS = sorted(set(VENDOR_HARDWARE_NAMES.values()))


def vendor_residuals(directory: Path | None = None) -> pd.DataFrame:
    frame = load_shared_ops(directory, vendors=True)
    return residual_frame(frame, devices=VENDOR_CHIPS, holdout=True, unseen=True)


def before_after(res: pd.DataFrame, by: list[str]) -> list[dict]:
    """MAPE before (unseen) and after (train-split fit) on the held-out rows, per group of `by`."""
    test = res[res["split"] == "test"]
    out = []
    for key, g in test.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append({**dict(zip(by, key)), "num_rows": len(g), "before_source": "/".join(sorted(set(g["unseen_source"]))),
                    "mape_before": mape(g["measured_s"], g["unseen_predicted_s"]),
                    "mape_after": mape(g["measured_s"], g["holdout_predicted_s"])})
    return out


def run_vendor_group(directory: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rows for bench/accuracy.py: held-out vendor rows, 'before' and 'after' as two groups."""
    res = vendor_residuals(directory)
    test = res[res["split"] == "test"]
    vendor = {d: load_chip(d).vendor for d in VENDOR_CHIPS}
    parts = []
    for label, col, src in (("before fit", "unseen_predicted_s", test["unseen_source"]),
                            ("after fit", "holdout_predicted_s", pd.Series("fitted", index=test.index))):
        parts.append(pd.DataFrame({
            "case_id": test["source"], "group": "vendors:" + test["op_family"] + f" {label} (held-out shapes)",
            "device": test["device"], "vendor": test["device"].map(vendor), "op": test["op"], "op_family": test["op_family"],
            "kind": test["kind"], "efficiency_source": src, "measured": test["measured_s"], "predicted": test[col],
        }))
    rows = pd.concat(parts, ignore_index=True)
    rows["error_frac"] = rows["predicted"] / rows["measured"] - 1.0
    skipped = ["vendors/ops_attention_h20.csv: 41 MLA decode rows (generation_mla) are not expressible as GQA attention: "
               "not scored"]
    return rows, skipped


def _print(title: str, stats: list[dict], by: list[str]) -> None:
    print(f"\n## {title}")
    print(" ".join(f"{c:14s}" for c in by) + f" {'rows':>6s} {'before':>9s} {'after':>8s}  before from")
    for s in stats:
        print(" ".join(f"{str(s[c]):14s}" for c in by)
              + f" {s['num_rows']:6d} {s['mape_before']*100:8.1f}% {s['mape_after']*100:7.1f}%  {s['before_source']}")


def main() -> None:
    ap = argparse.ArgumentParser(description="per-vendor MAPE before and after fitting (held-out shapes)")
    ap.add_argument("--json", type=Path, help="write the statistics to this JSON file")
    args = ap.parse_args()
    res = vendor_residuals(shared_calibration_dir())
    report = {by_name: before_after(res, by) for by_name, by in
              (("by_chip", ["device"]), ("by_chip_family", ["device", "op_family"]),
               ("by_chip_kind", ["device", "op_family", "kind"]))}
    _print("per chip", report["by_chip"], ["device"])
    _print("per chip and op family", report["by_chip_family"], ["device", "op_family"])
    _print("per kernel class", report["by_chip_kind"], ["device", "op_family", "kind"])
    test = res[res["split"] == "test"]
    print(f"\nheld-out rows: {len(test)} of {len(res)}; in-sample MAPE of the shipped profiles on the same rows: "
          f"{mape(test['measured_s'], test['predicted_s'])*100:.1f}%")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
