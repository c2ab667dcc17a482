"""How accurate is `tokenfab predict` on ONNX graphs against MLPerf Inference (ResNet-50, BERT-Large)?

    python bench/accuracy_onnx.py [--json OUT]

Rows: mlperf.csv in ../shared/calibration whose model is ResNet-50-v1.5 or BERT-Large, on chips
the catalog has. Scenarios:
  offline        samples/s of the whole system = n_accel x the best per-device throughput over
                 batches 1..1024 that fit (offline lets the engine pick its batch)
  single-stream  p90 latency of one sample = latency of batch 1 (MLPerf 'single-request')
  multistream    p99 latency of a query of 8 samples = latency of batch 8
Server rows (throughput under a latency bound) are not predicted. Precision as submitted (int8;
BERT-99.9 in fp16). BERT is predicted at the padded sequence length 384: TensorRT's
variable-length kernels skip the padding, and the dataset's mean length is not in the data,
so BERT throughput is expected to be underestimated. Prints MAPE per chip and scenario; a
tracking report, not a gate (exit 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from tokenfab import api
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.calibrate.validate import group_stats
from tokenfab.errors import TokenfabError

CHIPS = {"H100-SXM-80GB": "h100-sxm", "H100-PCIe-80GB": "h100-pcie", "L40S": "l40s", "L4": "l4", "RTX-4090": "rtx-4090",
         "A100-SXM-80GB": "a100-sxm", "T4": "t4"}
MODELS = {"ResNet-50-v1.5": "resnet-50", "BERT-Large (SQuAD v1.1, seq 384)": "bert-large"}
PRECISION = {"int8": "int8", "fp16": "fp16", "": "int8"}  # MLPerf v0.5 ResNet rows leave it empty: INT8 submissions
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _best_throughput(model: str, chip: str, dtype: str) -> float:
    best = 0.0
    for b in BATCHES:
        d = api.predict(model=model, hardware=chip, batch=b, dtype=dtype).to_dict()
        if not d["fits"]:
            break
        best = max(best, d["throughput_samples_per_s"])
    return best


def _predict(row: pd.Series, chip: str, model: str, dtype: str) -> float | None:
    scenario, metric = row["scenario"], row["metric"]
    if scenario == "offline" and metric in ("samples_per_s", "images_per_s"):
        return _best_throughput(model, chip, dtype) * float(row["n_accel"])
    if scenario == "single-request" and metric.startswith("latency"):
        return api.predict(model=model, hardware=chip, batch=1, dtype=dtype).latency_s * 1e3
    if scenario == "multistream" and metric.startswith("latency"):
        return api.predict(model=model, hardware=chip, batch=8, dtype=dtype).latency_s * 1e3
    return None


def run_onnx_group(directory: Path) -> tuple[pd.DataFrame, list[str]]:
    """Predicted vs measured MLPerf rows; returns (rows with error_frac, skipped case ids with reasons)."""
    frame = pd.read_csv(directory / "mlperf.csv", keep_default_na=False)
    frame = frame[frame["model"].isin(MODELS)]
    rows, skipped = [], []
    for _, row in frame.iterrows():
        chip = CHIPS.get(row["hardware"])
        dtype = PRECISION.get(row["precision"])
        if chip is None or dtype is None:
            skipped.append(f"{row['case_id']} (chip {row['hardware']!r} / precision {row['precision']!r} not in the catalog)")
            continue
        try:
            predicted = _predict(row, chip, MODELS[row["model"]], dtype)
        except TokenfabError as exc:
            skipped.append(f"{row['case_id']} ({exc})")
            continue
        if predicted is None:
            skipped.append(f"{row['case_id']} (scenario {row['scenario']} not predicted)")
            continue
        measured = float(row["value"])
        rows.append({"case_id": row["case_id"], "device": chip, "model": MODELS[row["model"]], "scenario": row["scenario"],
                     "dtype": dtype, "group": f"onnx {MODELS[row['model']]} {row['scenario']}", "measured": measured,
                     "predicted": predicted, "error_frac": (predicted - measured) / measured})
    return pd.DataFrame(rows), skipped


def _print(title: str, frame: pd.DataFrame, by: list[str]) -> list[dict]:
    stats = [s.as_dict() for s in group_stats(frame, by)]
    print(f"\n## {title}")
    print(f"{'group':52s} {'rows':>5s} {'MAPE':>7s} {'median':>7s} {'bias':>7s}")
    for s in stats:
        print(f"{s['group']:52s} {s['num_rows']:5d} {s['mape']*100:6.1f}% {s['median_ape']*100:6.1f}% {s['bias']*100:+6.1f}%")
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description="tokenfab ONNX-graph accuracy against MLPerf Inference rows")
    ap.add_argument("--json", type=Path, help="write the statistics to this JSON file")
    args = ap.parse_args()
    frame, skipped = run_onnx_group(shared_calibration_dir())
    report = {"by_model_scenario": _print("ONNX graphs vs MLPerf, by model and scenario", frame, ["group"]),
              "by_chip": _print("ONNX graphs vs MLPerf, by chip, model and scenario", frame, ["group", "device"]),
              "skipped": skipped}
    print(f"\nrows: {len(frame)}; skipped {len(skipped)} (chips not in the catalog, server scenario)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    sys.exit(main())
