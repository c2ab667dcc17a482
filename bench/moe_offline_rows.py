"""Per-row breakdown of the MoE offline (trtllm-bench) group of bench/accuracy_moe_serving.py, to see what carries its MAPE.

    python bench/moe_offline_rows.py [--out rows.csv] [--release 1.0] [--model qwen3-235b-a22b] [--workers 2]

For every expressible MoE row of ../shared/calibration/trtllm.csv (`accuracy_moe_serving.throughput_jobs`): chip,
release, model, formats (GEMM, weight, KV), the layout simulated (attention TP, attention-DP ranks, EP, MoE-TP, PP),
ISL/OSL, the max_batch_size / max_num_tokens the job sets (trtllm-bench's limits, per attention-DP rank), the KV
capacity per rank the engine's memory policy leaves, the batch that capacity admits under GUARANTEED_NO_EVICT (whole
ISL + OSL reserved per request) and which limit binds, the simulated mean batch, measured and predicted output
tokens/s (per GPU where the table is) and the error. The step split is one decode step of a rank at the admitted
batch and mid-generation context (ISL + OSL / 2), by operator family (attention, experts, token exchange and
all-reduce, other GEMMs and the rest), and `prefill_share`, the rank's prefill work (its share of the requests, at
the time per request of a prefill-only step as full as max_num_tokens allows, the other ranks prefilling alike) over
the simulated time: which part of the model a residual sits in. That prefill step is split by operator family too
(per request), and the two splits give `expert_share`, the fused expert kernel's share of the simulated time
(decode share x the decode step's expert fraction + prefill share x the prefill step's), and
`implied_expert_factor` = 1 + error / expert_share: how much slower (> 1) or faster (< 1) the expert kernel would
have to run for the row to match if nothing else were off. One factor shared by a chip's rows points at its expert
kernel (a format or backend ops_moe.csv does not measure); factors that differ by model or layout point elsewhere.
Summaries: MAPE and median error per chip, release, model and layout cluster; the median implied factor per chip
and model.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from accuracy_moe_serving import throughput_jobs
from offline_rows import binding_limit

from tokenfab import api
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.errors import TokenfabError
from tokenfab.execution.layers import StepBatch

FAMILIES = {"attn.core": "attention", "moe.experts": "experts", "moe.router": "experts", "moe.dispatch": "exchange",
            "moe.combine": "exchange", "allreduce": "exchange", "tp.allreduce": "exchange"}


def family(op: str) -> str:
    """Operator family of a breakdown row: attention core, experts, token exchange / all-reduce, the rest."""
    if op in FAMILIES:
        return FAMILIES[op]
    if "allreduce" in op or "all_reduce" in op or "gather" in op or "scatter" in op:
        return "exchange"
    return "other"


def layout_kind(kw: dict) -> str:
    """TensorRT-LLM's name of a layout: TPn, TPn-EPm, DEPn (attention-DP n with EP n), with xPPp."""
    tp, dp, ep, pp = kw["tp"], kw.get("dp", 1), kw.get("ep", 1), kw.get("pp", 1)
    name = f"DEP{dp}" if dp > 1 and ep == dp * tp else f"TP{tp}-DP{dp}-EP{ep}" if dp > 1 else f"TP{tp}" + (f"-EP{ep}" if ep > 1 else "")
    return name + (f"xPP{pp}" if pp > 1 else "")


FAMILY_NAMES = ("attention", "experts", "exchange", "other")


def family_ms(step, prefix: str, per: float = 1.0) -> dict:
    """A step's breakdown summed by operator family, in ms divided by `per`: {prefix_family_ms: ...}."""
    out = {f"{prefix}_{f}_ms": 0.0 for f in FAMILY_NAMES}
    for op, total in step.breakdown.items():
        out[f"{prefix}_{family(op)}_ms"] += 1e3 * total.time_s / per
    return out


def step_split(kw: dict, batch: float) -> dict:
    """Decode step of one rank at `batch` and mid-generation context, by operator family (ms), and the prefill time per
    request of a prefill-only step packing as many ISL-token prompts as max_num_tokens holds, in all and by family
    (ms per request)."""
    layout = {k: kw[k] for k in ("ep", "dp", "moe_tp", "weight_dtype", "moe_dispatch") if kw.get(k) is not None}
    d = api.deployment(kw["model"], kw["hardware"], None, kw["tp"], kw["pp"], dtype=kw["dtype"], kv_dtype=kw["kv_dtype"],
                       **layout)
    n = max(1, int(batch))
    step = d.step_model.step(StepBatch(num_decode=n, decode_kv_len=kw["input_len"] + kw["output_len"] / 2))
    out = family_ms(step, "decode")
    out["decode_step_ms"] = 1e3 * step.time_s
    isl = kw["input_len"]
    per_step = max(1, (kw.get("max_batched_tokens") or isl) // isl)  # prompts one prefill step packs
    prefill = d.step_model.step(StepBatch(prefill=((per_step, isl, isl),)))
    out["prefill_ms_per_request"] = 1e3 * prefill.time_s / per_step
    return {**out, **family_ms(prefill, "prefill", per_step)}


def expert_share(prefill_share: float, split: dict) -> float:
    """The fused expert kernel's share of a row's simulated time: its fraction of the decode step over the time not
    spent prefilling, and of the prefill step over the rest (`prefill_share`, capped at 1; mixed iterations are
    counted as the two steps they combine)."""
    p = min(max(prefill_share, 0.0), 1.0)
    decode = split["decode_experts_ms"] / split["decode_step_ms"] if split["decode_step_ms"] > 0 else 0.0
    prefill = split["prefill_experts_ms"] / split["prefill_ms_per_request"] if split["prefill_ms_per_request"] > 0 else 0.0
    return (1.0 - p) * decode + p * prefill


def implied_expert_factor(error_frac: float, share: float) -> float:
    """The factor on the expert kernel's time that would make a row's predicted throughput match, all else equal: the
    predicted time is measured / (1 + error), so measured time = predicted x (1 + error) and the experts must take
    share + error of the predicted time, i.e. 1 + error / share of their own (NaN without expert time)."""
    return 1.0 + error_frac / share if share > 0 else float("nan")


def run_row(job: dict) -> dict:
    """Simulate one throughput job and describe it (an `error` instead of the figures when it cannot run)."""
    kw, meta = job["kwargs"], job["meta"]
    row = {"case_id": meta["case_id"], "device": meta["device"], "release": kw.get("engine_version", "1.x (default)"),
           "model": meta["model"], "dtype": kw["dtype"], "weight_dtype": kw.get("weight_dtype") or kw["dtype"],
           "kv_dtype": kw["kv_dtype"], "layout": layout_kind(kw), "tp": kw["tp"], "dp": kw.get("dp", 1),
           "ep": kw.get("ep", 1), "moe_tp": kw.get("moe_tp"), "pp": kw["pp"], "isl": kw["input_len"], "osl": kw["output_len"],
           "num_requests": kw["num_requests"], "max_batch_size": kw.get("max_num_seqs"),
           "max_num_tokens": kw.get("max_batched_tokens"), "per_gpu": meta["per_gpu"], "measured": meta["measured"]}
    try:
        res = api.simulate(**kw)
    except TokenfabError as exc:
        return {**row, "error": str(exc)}
    s, kv = res.summary, res.config.get("kv_capacity_tokens", 0)
    batch, limit = binding_limit(kv, kw["input_len"], kw["output_len"], kw.get("max_num_seqs") or 2048)
    pred = s["throughput_tokens_per_s"] / (meta["n_accel"] if meta["per_gpu"] else 1)
    split = step_split(kw, batch)
    ranks = row["dp"]
    prefill_s = kw["num_requests"] / ranks * split["prefill_ms_per_request"] / 1e3
    share = prefill_s / s["simulated_s"] if s["simulated_s"] else 0.0
    err = pred / meta["measured"] - 1.0
    experts = expert_share(share, split)
    return {**row, "kv_capacity_tokens": kv, "admitted_batch": batch, "binding_limit": limit,
            "mean_batch": s.get("mean_batch_size") or 0.0, "predicted": pred, "error_frac": err,
            **split, "prefill_share": share, "expert_share": experts,
            "implied_expert_factor": implied_expert_factor(err, experts), "error": ""}


def summarise(rows: pd.DataFrame) -> str:
    ok = rows[rows["error"] == ""].assign(ape=lambda f: f["error_frac"].abs())
    agg = {"n": ("ape", "size"), "mape": ("ape", "mean"), "median_error": ("error_frac", "median")}
    parts = [f"rows {len(ok)} (not run: {len(rows) - len(ok)}), MAPE {ok['ape'].mean():.4f}"]
    for keys in (["device"], ["release"], ["model"], ["device", "release", "model", "dtype", "layout", "binding_limit"]):
        parts.append(ok.groupby(keys).agg(**agg).round(4).to_string())
    if "implied_expert_factor" in ok:
        factors = {"n": ("ape", "size"), "expert_share": ("expert_share", "median"),
                   "implied_expert_factor": ("implied_expert_factor", "median"),
                   "factor_lo": ("implied_expert_factor", "min"), "factor_hi": ("implied_expert_factor", "max")}
        parts.append("median implied expert-kernel factor (1 + error / expert share; module doc)\n"
                     + ok.groupby(["device", "model"]).agg(**factors).round(3).to_string())
    return "\n\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--release", default=None, help="only rows of this engine_version (e.g. 1.0)")
    ap.add_argument("--model", default=None, help="only rows of this bundled model (e.g. qwen3-235b-a22b)")
    ap.add_argument("--device", default=None, help="only rows of this catalog chip (e.g. b200)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    jobs, _ = throughput_jobs(shared_calibration_dir())
    jobs = [j for j in jobs if (args.release is None or j["kwargs"].get("engine_version") == args.release)
            and (args.model is None or j["meta"]["model"] == args.model)
            and (args.device is None or j["meta"]["device"] == args.device)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = pd.DataFrame(list(pool.map(run_row, jobs, chunksize=1)))
    print(summarise(rows))
    if args.out:
        rows.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
