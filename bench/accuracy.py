"""How accurate is tokenfab against published measurements (../shared/calibration)?

    python bench/accuracy.py [--json OUT] [--report PATH.html] [--skip GROUP ...] [--no-loco] [--no-serving] [--bands]

Groups, run in order (each one a runner; `--skip NAME` leaves one out):
  GEMM, attention, collectives  every row of ops_gemm/ops_attention/ops_comm.csv, predicted with
                                the chip's fitted profile (in-sample: these rows fed the fit)
  *-unseen                      leave-one-chip-out: the generic profile refitted WITHOUT the chip,
                                then used to predict that chip's rows (what users get on chips
                                the tool never saw measured)
  end-to-end                    static-batch rows of e2e_published.csv (LMDeploy, A100) and the
                                TensorRT-LLM static-batching and batch-1 TTFT rows of trtllm.csv,
                                predicted by `tokenfab predict`
  serving                       TTFT/TPOT at fixed concurrency and offline throughput, by `tokenfab simulate`
                                (bench/accuracy_serving.py)
  vendors                       Ascend 910B, H20, MI355X, MI308X kernels, before and after fitting, on
                                held-out shapes (bench/accuracy_vendors.py)
  moe                           fused MoE layers (bench/accuracy_moe.py, when present)
A group in another file is one line in EXTERNAL_GROUPS: (name, module, function, what), where
`function(directory) -> (rows, skipped)` returns a frame with at least group, device, measured
and predicted (optionally vendor, op_family, engine or framework, efficiency_source and a band
predicted_lo/predicted_hi). Rows the tool cannot express (unknown model, e.g. Falcon-180B) are
counted and listed as skipped. Prints MAPE, median, p90, worst cases per group; `--report`
writes the same as one HTML page with scatter plots and band coverage. Exits 0 (tracking, not a
gate; the gate is tests/regression).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tokenfab import api
from tokenfab.calibrate.measurements import HARDWARE_NAMES, load_shared_ops, shared_calibration_dir
from tokenfab.calibrate.unseen import unseen_chip_cost
from tokenfab.calibrate.validate import group_stats, predict_measurements, worst_rows
from tokenfab.errors import TokenfabError
from tokenfab.hardware.catalog import load_chip
from tokenfab.report.accuracy_report import GroupRows, render_accuracy_markdown, write_accuracy_report

BENCH = Path(__file__).resolve().parent
EXTERNAL_GROUPS = [  # (name, module in bench/, function, what it measures)
    ("serving", "accuracy_serving", "run_serving_group", "TTFT/TPOT/throughput of serving runs by tokenfab simulate"),
    ("vendors", "accuracy_vendors", "run_vendor_group", "vendor kernels before/after fitting, held-out shapes"),
    ("moe", "accuracy_moe", "run_moe_group", "fused MoE layers"),
    ("onnx", "accuracy_onnx", "run_onnx_group", "MLPerf ResNet-50 / BERT rows by predict on ONNX graphs"),
]

E2E_MODELS = {"Llama-2-7B": "llama-2-7b", "Llama-2-13B": "llama-2-13b", "Llama-2-70B": "llama-2-70b",
              "InternLM-20B": "internlm-20b", "GPT-J-6B": "gpt-j-6b", "Mistral-7B": "mistral-7b",
              "Llama-3.1-8B": "llama-3.1-8b", "Llama-3.1-70B": "llama-3.1-70b", "Llama-3.3-70B-Instruct": "llama-3.1-70b"}
E2E_HARDWARE = {**HARDWARE_NAMES, "A100-80GB": "a100-sxm"}


def op_level(frame: pd.DataFrame) -> pd.DataFrame:
    return predict_measurements(frame)


def leave_one_chip_out(frame: pd.DataFrame) -> pd.DataFrame:
    """Predict each measured chip with a generic profile fitted on the other chips only and the held chip's spec
    (`calibrate.unseen`, the one leave-one-chip-out definition; bench/accuracy_moe.py's MoE groups use it too)."""
    devices = sorted(frame["device"].unique())
    parts = []
    for held in devices:
        cc = unseen_chip_cost(frame, held, devices)
        parts.append(predict_measurements(frame[frame["device"] == held], lambda _d, _cc=cc: _cc))
        print(f"  leave-one-chip-out: {held} done", file=sys.stderr)
    out = pd.concat(parts)
    out["group"] = out["group"] + "-unseen"
    return out


def _note_field(notes: str, key: str) -> float | None:
    m = re.search(rf"{key}=(\d+)", notes)
    return float(m.group(1)) if m else None


def _e2e_rows(directory: Path) -> pd.DataFrame:
    pub = pd.read_csv(directory / "e2e_published.csv")
    trt = pd.read_csv(directory / "trtllm.csv")
    static = trt[trt["framework"].str.contains("gptSessionBenchmark", na=False)]
    return pd.concat([pub, static], ignore_index=True)


def end_to_end(directory: Path) -> tuple[pd.DataFrame, list[str]]:
    rows, skipped = [], []
    for _, r in _e2e_rows(directory).iterrows():
        model = E2E_MODELS.get(r["model"])
        hw = E2E_HARDWARE.get(r["hardware"])
        metric = r["metric"]
        if model is None or hw is None or metric not in ("output_tokens_per_s", "output_tokens_per_s_per_gpu", "ttft_ms",
                                                          "ttft_mean_ms", "tpot_p50_ms"):
            skipped.append(f"{r['case_id']} ({r['model']} on {r['hardware']}, {metric})")
            continue
        prec = str(r["precision"]).lower()
        dtype = "fp8" if prec == "fp8" else "fp16"
        tp = int(r["tp"]) if not pd.isna(r["tp"]) else 1
        n_accel = int(r["n_accel"]) if not pd.isna(r["n_accel"]) else tp
        batch = int(r["batch"]) if not pd.isna(r["batch"]) else 1
        try:
            res = api.predict(model=model, hardware=hw, tp=tp, devices=tp, dtype=dtype, kv_dtype=dtype, batch=batch,
                              input_len=int(r["input_len"]), output_len=int(r["output_len"])).to_dict()
        except TokenfabError as exc:
            skipped.append(f"{r['case_id']} ({exc})")
            continue
        if metric == "output_tokens_per_s":
            pred = res["throughput_tokens_per_s"]
        elif metric == "output_tokens_per_s_per_gpu":
            pred = res["throughput_tokens_per_s"] / n_accel
        elif metric in ("ttft_ms", "ttft_mean_ms"):
            pred = res["ttft_s"] * 1e3
        else:
            pred = res["tpot_s"] * 1e3
        group = f"end-to-end:{metric}"
        if "column labelled" in str(r["unit"]) and n_accel > 1:
            group += " [per-GPU or total not stated]"
        elif not res["fits"]:
            group += " [does not fit as one static batch]"
        rows.append({"case_id": r["case_id"], "group": group, "device": hw, "model": model,
                     "batch": batch, "input_len": r["input_len"], "output_len": r["output_len"], "tp": tp,
                     "measured": r["value"], "predicted": pred, "fits": res["fits"]})
    out = pd.DataFrame(rows)
    out["error_frac"] = out["predicted"] / out["measured"] - 1.0
    return out, skipped


def _print_stats(title: str, frame: pd.DataFrame, by: list[str]) -> list[dict]:
    stats = [s.as_dict() for s in group_stats(frame, by)]
    print(f"\n## {title}")
    print(f"{'group':44s} {'rows':>6s} {'MAPE':>7s} {'median':>7s} {'p90':>7s} {'max':>7s} {'bias':>7s}")
    for s in stats:
        print(f"{s['group']:44s} {s['num_rows']:6d} {s['mape']*100:6.1f}% {s['median_ape']*100:6.1f}% "
              f"{s['p90_ape']*100:6.1f}% {s['max_ape']*100:6.0f}% {s['bias']*100:+6.1f}%")
    return stats


def _vendor(device: str) -> str:
    try:
        return load_chip(device).vendor
    except TokenfabError:
        return ""


_BAND_FAMILY = {"gemm": "gemm", "attention_prefill": "attention_prefill", "attention_decode": "attention_decode"}


def attach_op_bands(rows: pd.DataFrame) -> pd.DataFrame:
    """predicted_lo/_hi from the error-band tables when tokenfab has them (the bands work), else unchanged."""
    try:
        from tokenfab.cost.bands import op_band
    except ImportError:
        return rows
    lo, hi = [], []
    for op, src, pred in zip(rows["op"], rows["efficiency_source"], rows["predicted"]):
        try:
            band = op_band(_BAND_FAMILY.get(op, "collectives"), src)
            lo.append(pred * band.lo_factor), hi.append(pred * band.hi_factor)
        except Exception:  # no band for this family/source (e.g. 'analytic'): leave the row without one
            lo.append(np.nan), hi.append(np.nan)
    return rows.assign(predicted_lo=lo, predicted_hi=hi)


def _op_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Operator rows in the report's common columns."""
    rows = frame.rename(columns={"time_s": "measured", "predicted_s": "predicted"})
    rows["op_family"] = rows["group"].str.replace("-unseen", "", regex=False)
    rows["vendor"] = rows["device"].map({d: _vendor(d) for d in rows["device"].unique()})
    return attach_op_bands(rows)


def run_operators(ctx: dict) -> GroupRows:
    ops = op_level(ctx["frame"])
    ctx["report"]["op_groups"] = _print_stats("operators, fitted profile (in-sample)", ops, ["group"])
    ctx["report"]["op_groups_by_device"] = _print_stats("operators by device", ops, ["group", "device"])
    allops = ops.dropna(subset=["error_frac"])
    print(f"all operator rows: {len(allops)}, MAPE {allops['error_frac'].abs().mean()*100:.1f}%")
    ctx["report"]["op_all_mape"] = float(allops["error_frac"].abs().mean())
    print("\nworst operator rows:")
    for _, r in worst_rows(ops, 8).iterrows():
        print(f"  {r['device']:9s} {r['op']:18s} measured {r['time_s']*1e6:9.1f} us predicted {r['predicted_s']*1e6:9.1f} us  {r['source']}")
    return GroupRows("operators (in-sample)", _op_rows(ops), "ops_gemm/attention/comm.csv rows, chip's own fitted profile")


def run_unseen(ctx: dict) -> GroupRows:
    loco = leave_one_chip_out(ctx["frame"])
    ctx["report"]["unseen_chip_groups"] = _print_stats("operators on a chip left out of the fit (generic profile)", loco, ["group", "device"])
    ctx["report"]["unseen_chip_all"] = _print_stats("operators on unseen chips, all", loco, ["group"])
    return GroupRows("operators on unseen chips", _op_rows(loco), "leave-one-chip-out: generic profile refitted without the chip")


def run_end_to_end(ctx: dict) -> GroupRows:
    e2e, skipped = end_to_end(ctx["directory"])
    ctx["report"]["e2e_groups"] = _print_stats("end-to-end (predict vs static-batch measurements)", e2e, ["group"])
    ctx["report"]["e2e_by_device"] = _print_stats("end-to-end by device", e2e, ["group", "device"])
    clean = e2e[~e2e["group"].str.contains(r"\[")]
    ctx["report"]["e2e_all_mape"] = float(clean["error_frac"].abs().mean())
    print(f"end-to-end rows with a clear unit that fit in memory: {len(clean)} of {len(e2e)}, "
          f"MAPE {ctx['report']['e2e_all_mape']*100:.1f}%; skipped {len(skipped)} rows "
          f"(models without a bundled config, e.g. Falcon-180B)")
    print("worst end-to-end rows:")
    for _, r in e2e.reindex(e2e["error_frac"].abs().sort_values(ascending=False).index).head(8).iterrows():
        print(f"  {r['case_id'][:70]:70s} measured {r['measured']:10.2f} predicted {r['predicted']:10.2f}")
    e2e["vendor"] = e2e["device"].map({d: _vendor(d) for d in e2e["device"].unique()})
    return GroupRows("end-to-end (predict)", e2e, "static-batch rows of e2e_published.csv and trtllm.csv", skipped)


def external_runner(name: str, module: str, function: str, what: str) -> Callable[[dict], GroupRows | None]:
    """Adapter for a group defined in another bench file (see EXTERNAL_GROUPS)."""
    def run(ctx: dict) -> GroupRows | None:
        if not (BENCH / f"{module}.py").exists():
            print(f"\n## {name}: bench/{module}.py not present, group skipped", file=sys.stderr)
            return None
        rows, skipped = getattr(importlib.import_module(module), function)(ctx["directory"])
        rows = rows.copy()
        if "error_frac" not in rows.columns:
            rows["error_frac"] = rows["predicted"] / rows["measured"] - 1.0
        if "engine" not in rows.columns and "framework" in rows.columns:
            rows["engine"] = rows["framework"]
        if "vendor" not in rows.columns:
            rows["vendor"] = rows["device"].map({d: _vendor(d) for d in rows["device"].unique()})
        if "predicted_lo" not in rows.columns and {"op", "efficiency_source"} <= set(rows.columns):
            rows = attach_op_bands(rows)
        ctx["report"][f"{name}_groups"] = _print_stats(f"{name} ({what})", rows, ["group"])
        by = ["group", "device", "engine"] if "engine" in rows.columns else ["group", "device"]
        ctx["report"][f"{name}_by_device"] = _print_stats(f"{name} by device", rows, by)
        print(f"{name} rows: {len(rows)}; skipped {len(skipped)}")
        return GroupRows(name, rows, what, skipped)
    return run


RUNNERS: dict[str, Callable[[dict], GroupRows | None]] = {
    "operators": run_operators, "unseen": run_unseen, "end-to-end": run_end_to_end,
    **{name: external_runner(name, mod, fn, what) for name, mod, fn, what in EXTERNAL_GROUPS},
}


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BENCH, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=BENCH, capture_output=True,
                               text=True, check=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description="tokenfab accuracy against ../shared/calibration")
    ap.add_argument("--json", type=Path, help="write all statistics to this JSON file")
    ap.add_argument("--report", type=Path, help="write a self-contained HTML report (tables, scatter plots, band coverage)")
    ap.add_argument("--summary", type=Path, help="write a Markdown summary (per group and chip) beside the report")
    ap.add_argument("--skip", action="append", default=[], choices=list(RUNNERS), help="leave a group out (repeatable)")
    ap.add_argument("--no-loco", action="store_true", help="skip the leave-one-chip-out refits (= --skip unseen)")
    ap.add_argument("--no-serving", action="store_true", help="skip the serving simulations (= --skip serving)")
    ap.add_argument("--bands", action="store_true", help="also report error-band coverage (bench/accuracy_bands.py)")
    args = ap.parse_args()
    skip = set(args.skip) | ({"unseen"} if args.no_loco else set()) | ({"serving"} if args.no_serving else set())
    t0 = time.perf_counter()
    directory = shared_calibration_dir()
    ctx = {"directory": directory, "frame": load_shared_ops(directory), "report": {}}
    groups, skipped = [], []
    for name, runner in RUNNERS.items():
        if name in skip:
            continue
        result = runner(ctx)
        if result is not None:
            groups.append(result)
            skipped += result.skipped
    report = ctx["report"]
    report["skipped"] = skipped
    band_report = None
    if args.bands and (BENCH / "accuracy_bands.py").exists():
        band_report = importlib.import_module("accuracy_bands").band_report(serving_jobs=0 if "serving" in skip else 60)
        report["bands"] = band_report
    report["wall_s"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    meta = {"commit": _commit(), "date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "data": "../shared/calibration", "command": "python bench/accuracy.py " + " ".join(sys.argv[1:]),
            "groups skipped": ", ".join(sorted(skip)) or "none", "wall time": f"{report['wall_s']:.0f} s"}
    if args.report:
        write_accuracy_report(groups, meta, args.report, band_report)
        print(f"report written to {args.report}")
    if args.summary:
        tmp = args.summary.with_name(args.summary.name + ".tmp")
        tmp.write_text(render_accuracy_markdown(groups, meta))
        tmp.replace(args.summary)
        print(f"summary written to {args.summary}")
    print(f"\n(wall time {report['wall_s']:.1f} s)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
