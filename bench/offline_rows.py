"""Per-row breakdown of the offline (trtllm-bench) group of bench/accuracy_serving.py, to see what carries its MAPE.

    python bench/offline_rows.py [--out rows.csv] [--release 0.14.0] [--device a100-pcie,l40s] [--workers 2]

For every expressible row of ../shared/calibration/trtllm.csv (`throughput_jobs`): chip, release, model, format,
TP/PP, ISL/OSL, the max_batch_size / max_num_tokens trtllm-bench would choose (`_trtllm_bench_limits`), the KV
capacity the engine's memory policy leaves (tokens per replica), the batch that capacity admits under
GUARANTEED_NO_EVICT (whole ISL + OSL reserved per request), which of the two limits binds, the simulated mean batch,
measured and predicted output tokens/s and the error; then MAPE and median error per chip, release, and chip x
release x model x TP. The measured step time implied at the simulated batch (mean batch / measured tokens/s,
ignoring prefill) beside the simulated one shows whether a residual is a per-step or a per-sequence cost; the decode
step's parts at that batch and mid-generation context (attention core, all-reduces, GEMMs, the rest) show which
operator such a residual would have to scale.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from accuracy_serving import throughput_jobs
from tokenfab import api
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.errors import TokenfabError
from tokenfab.execution.layers import StepBatch

PARTS = {"attn.core": "attention", "tp_allreduce": "allreduce"}


def binding_limit(kv_capacity_tokens: float, input_len: int, output_len: int, max_batch_size: int) -> tuple[float, str]:
    """(largest batch, which limit sets it): the KV cache reserves ISL + OSL tokens per admitted request (TensorRT-LLM's
    GUARANTEED_NO_EVICT), so it admits kv_capacity / (ISL + OSL) requests; max_batch_size caps that."""
    kv_batch = kv_capacity_tokens / (input_len + output_len)
    return (kv_batch, "kv") if kv_batch < max_batch_size else (float(max_batch_size), "max_batch_size")


def part(op: str) -> str:
    """Which part of a dense decode step a breakdown row belongs to: attention core, all-reduce, GEMM, or the rest."""
    return PARTS.get(op) or ("gemm" if op.endswith("_proj") or op == "lm_head" else "other")


def decode_parts(kw: dict, batch: float) -> dict:
    """The simulated decode step of `batch` sequences at context ISL + OSL / 2, by part (ms), and in all."""
    d = api.deployment(kw["model"], kw["hardware"], None, kw["tp"], kw["pp"], dtype=kw["dtype"], kv_dtype=kw["kv_dtype"])
    step = d.step_model.step(StepBatch(num_decode=max(1, round(batch)),
                                       decode_kv_len=kw["input_len"] + kw["output_len"] / 2))
    out = {f"decode_{p}_ms": 0.0 for p in ("attention", "allreduce", "gemm", "other")}
    for op, cost in step.breakdown.items():
        out[f"decode_{part(op)}_ms"] += 1e3 * cost.time_s
    return {**out, "decode_step_ms": 1e3 * step.time_s}


def run_row(job: dict) -> dict:
    """Simulate one throughput job and describe it (an `error` instead of the figures when it cannot run)."""
    kw, meta = job["kwargs"], job["meta"]
    row = {"case_id": meta["case_id"], "device": meta["device"], "release": kw.get("engine_version", "1.x (default)"),
           "model": meta["model"], "dtype": kw["dtype"], "tp": kw["tp"], "pp": kw["pp"], "isl": kw["input_len"],
           "osl": kw["output_len"], "max_batch_size": kw.get("max_num_seqs"), "max_num_tokens": kw.get("max_batched_tokens"),
           "measured": meta["measured"]}
    try:
        res = api.simulate(**kw)
    except TokenfabError as exc:
        return {**row, "error": str(exc)}
    s, kv = res.summary, res.config.get("kv_capacity_tokens", 0)
    batch, limit = binding_limit(kv, kw["input_len"], kw["output_len"], kw.get("max_num_seqs") or 2048)
    pred = s["throughput_tokens_per_s"] / (meta["n_accel"] if meta["per_gpu"] else 1)
    mean_batch = s.get("mean_batch_size") or 0.0
    return {**row, "kv_capacity_tokens": kv, "admitted_batch": batch, "binding_limit": limit, "mean_batch": mean_batch,
            "predicted": pred, "error_frac": pred / meta["measured"] - 1.0,
            "measured_step_ms": 1e3 * mean_batch / meta["measured"], "predicted_step_ms": 1e3 * mean_batch / pred,
            **decode_parts(kw, mean_batch or batch), "error": ""}


def summarise(rows: pd.DataFrame) -> str:
    ok = rows[rows["error"] == ""].assign(ape=lambda f: f["error_frac"].abs())
    agg = {"n": ("ape", "size"), "mape": ("ape", "mean"), "median_error": ("error_frac", "median")}
    parts = [f"rows {len(ok)} (not run: {len(rows) - len(ok)}), MAPE {ok['ape'].mean():.4f}"]
    for keys in (["device"], ["device", "release"], ["device", "release", "model", "dtype", "tp", "binding_limit"]):
        parts.append(ok.groupby(keys).agg(**agg).round(4).to_string())
    return "\n\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--release", default=None, help="only rows of this engine_version (e.g. 0.14.0)")
    ap.add_argument("--device", default=None, help="only rows of these catalog chips (comma-separated, e.g. a100-pcie)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    jobs, _ = throughput_jobs(shared_calibration_dir())
    if args.release:
        jobs = [j for j in jobs if j["kwargs"].get("engine_version") == args.release]
    if args.device:
        jobs = [j for j in jobs if j["meta"]["device"] in args.device.split(",")]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = pd.DataFrame(list(pool.map(run_row, jobs, chunksize=2)))
    print(summarise(rows))
    if args.out:
        rows.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
