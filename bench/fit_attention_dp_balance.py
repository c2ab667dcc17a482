"""Choose which TensorRT-LLM attention-DP context balancing the measured attention-DP serving runs ran under.

    python bench/fit_attention_dp_balance.py [--write]

TensorRT-LLM can hold prompts back until every attention-DP rank has one (`attention_dp_config`,
`tokenfab.serving.attention_dp`); the aiconfigurator silicon rows do not say whether their deployments turned it on.
The candidates are the settings TensorRT-LLM documents: off (its default, llm_args.py AttentionDpConfig
enable_balance=False), the tech blog's context wait alone and its production configuration
(docs/source/blogs/tech_blog/blog10_ADP_Balance_Strategy.md: timeout_iters 50; timeout_iters 50 with
batching_wait_iters 10), and the settings InferenceMAX's benchmark scripts launch these runs with, per model
(`INFERENCEMAX_SOURCE`: the DeepSeek-R1 scripts timeout_iters 60 with batching_wait_iters 0; the GPT-OSS script
enable_balance alone, i.e. llm_args.py's defaults timeout_iters 50, batching_wait_iters 10). Rows: the aggregated
TensorRT-LLM attention-DP runs bench/accuracy_moe_serving.py expresses
(those started from TensorRT-LLM release images; Dynamo deployments keep balancing off, see
`accuracy_moe_serving.is_balanced_kind`),
under the fitted benchmark client, split by a hash of the run key as bench/fit_serving_client.py splits them; the fit
half picks the candidate minimising the mean of TTFT and TPOT MAPE, the other half reports the figures. `--write`
stores the choice with provenance in bench/data/attention_dp_balance.yaml, which bench/accuracy_moe_serving.py reads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess

import numpy as np
import yaml

from accuracy_moe_serving import BALANCE_PATH, balance_for, concurrency_jobs, is_balanced_kind, job_abs_errors
from accuracy_serving import job_half
from tokenfab.calibrate.measurements import shared_calibration_dir

CANDIDATES = {
    "off": {"adp_timeout_iters": 0, "adp_batching_wait_iters": 0},
    "context-wait": {"adp_timeout_iters": 50, "adp_batching_wait_iters": 0},
    "full-strategy": {"adp_timeout_iters": 50, "adp_batching_wait_iters": 10},
    # per model (the names bench/accuracy_moe_serving.py maps these runs' checkpoints to)
    "inferencemax-scripts": {"per_model": {"deepseek-v3": {"adp_timeout_iters": 60, "adp_batching_wait_iters": 0},
                                           "gpt-oss-120b": {"adp_timeout_iters": 50, "adp_batching_wait_iters": 10}}},
}
SOURCE = ("TensorRT-LLM tensorrt_llm/llmapi/llm_args.py AttentionDpConfig (enable_balance False by default); "
          "docs/source/blogs/tech_blog/blog10_ADP_Balance_Strategy.md (2025-08-29): context wait timeout_iters=50, "
          "production configuration timeout_iters=50 + batching_wait_iters=10")
INFERENCEMAX_SOURCE = ("github.com/SemiAnalysisAI/InferenceX benchmarks/dsr1_fp4_b200_trt.sh @111f031, dsr1_fp8_b200_trt.sh "
                       "@0a919c5, dsr1_fp4_b200_trt_mtp.sh @13dd0c2, dsr1_fp8_b200_trt_mtp.sh @111f031 (attention_dp_config: "
                       "batching_wait_iters 0, enable_balance true, timeout_iters 60 when DP_ATTENTION is true); "
                       "gptoss_fp4_b200_trt.sh @1825e7f (attention_dp_config: enable_balance true only)")



def _errors(jobs: list[dict], candidate: dict, workers: int) -> list[dict[str, float]]:
    """|error| of every job under `candidate` (one setting, or 'per_model' settings by the job's model)."""
    setting = candidate.get("per_model", candidate)
    return job_abs_errors([{**j, "kwargs": {**j["kwargs"], **balance_for(setting, j["kwargs"]["model"])}} for j in jobs],
                          workers)


def _mape(errs: list[dict[str, float]], metric: str) -> float:
    vals = [e[metric] for e in errs if metric in e]
    return float(np.mean(vals)) if vals else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    jobs, _ = concurrency_jobs(shared_calibration_dir(), balance={})
    jobs = [j for j in jobs if is_balanced_kind(j["meta"])]
    halves = [job_half(j) for j in jobs]
    table = {}
    for name, setting in CANDIDATES.items():
        errs = _errors(jobs, setting, args.workers)
        fit = [e for e, h in zip(errs, halves) if h == 0]
        held = [e for e, h in zip(errs, halves) if h == 1]
        table[name] = {"fit_half_score": round((_mape(fit, "ttft_ms") + _mape(fit, "tpot_ms")) / 2, 4),
                       "held_out_ttft_ms_mape": round(_mape(held, "ttft_ms"), 4),
                       "held_out_tpot_ms_mape": round(_mape(held, "tpot_ms"), 4)}
        print(f"{name:14s} fit score {table[name]['fit_half_score']:.3f}   held-out TTFT MAPE "
              f"{table[name]['held_out_ttft_ms_mape']:.3f}  TPOT {table[name]['held_out_tpot_ms_mape']:.3f}")
    best = min(table, key=lambda n: table[n]["fit_half_score"])
    print(f"chosen: {best} ({sum(1 for h in halves if h == 0)} fit runs, {sum(halves)} held-out runs)")
    if args.write:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        data = {"provenance": {"method": "the candidate minimising the mean of TTFT and TPOT MAPE on the fit half (sha256 "
                                         "of the run key, even) of the aggregated TensorRT-LLM attention-DP runs of "
                                         "shared/calibration/e2e_aiconfigurator_silicon.csv started from TensorRT-LLM "
                                         "release images (runs deployed through Dynamo keep balancing off: "
                                         "accuracy_moe_serving.is_balanced_kind); held-out figures on the odd half",
                               "source": SOURCE, "inferencemax_source": INFERENCEMAX_SOURCE, "commit": commit,
                               "date": dt.date.today().isoformat(),
                               "fit_runs": sum(1 for h in halves if h == 0), "held_out_runs": sum(halves)},
                "candidates": {n: {**CANDIDATES[n], **table[n]} for n in CANDIDATES},
                "trtllm": {"choice": best, **CANDIDATES[best]}}
        BALANCE_PATH.parent.mkdir(parents=True, exist_ok=True)
        BALANCE_PATH.write_text(yaml.safe_dump(data, sort_keys=False))
        print(f"wrote {BALANCE_PATH}")


if __name__ == "__main__":
    main()
