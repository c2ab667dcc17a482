"""Fit, per engine, the host time per decoder layer of the iterations that carry prompt work on the MoE serving runs,
jointly with the engine's benchmark-client output spread on those runs, and write both as data.

    python bench/fit_moe_prefill.py [--engines trtllm,sglang] [--grid-ms 0,0.5,1,1.5,2] [--variation 0,0.02,0.05]
                                    [--forms add,overlap] [--limit N] [--write]

Why: both engines run prompt work eagerly, outside the CUDA graphs they replay decode batches with, so such an
iteration launches every kernel of every layer from Python.
- TensorRT-LLM (PyTorch backend): an iteration replays a CUDA graph only when it schedules no context request
  (tensorrt_llm/_torch/pyexecutor/scheduler.py, `ScheduledRequests.can_run_cuda_graph` is `not
  self.context_requests`); piecewise CUDA graphs for context would need torch_compile_config, which is off by default
  (llm_args.py TorchCompileConfig, docs "Torch Compile & Piecewise CUDA Graph"), and no row's recipe turns it on.
- SGLang: waiting prompts run in an iteration of their own (prefill-first) as an extend batch, outside its decode
  CUDA graphs (cuda_graph_runner.py; piecewise graphs for extend are opt-in).
The launch work grows with the kernels an iteration launches, i.e. with the decoder layers (DeepSeek 61, Qwen3-235B
94, GPT-OSS-120B 36), and per layer with the model class's kernels (MLA + MoE, or GQA + MoE): so the host time is
`prefill_overhead_s_per_layer` per model class (`architecture_key`) times the model's layers (`engines.for_model`).
Whether it adds to the iteration's kernels or runs beside them (the host launching ahead of a device busy with long
kernels: the iteration takes the longer of the two) is the fit's `form` per engine.

The output spread is fitted with it because the two act together: with exact output lengths the closed-loop clients
stay in lock-step, a wave's prompts share one eager iteration and no decode waits for a later prompt; with a spread
they drift apart and each prompt's eager iteration also stalls the other clients' decodes (TPOT).

What is fitted: on the fit half (sha256 of the run key, even: `accuracy_serving.job_half`) of each engine's MoE runs
of bench/accuracy_moe_serving.py (aggregated and P/D; framework clients, no per-campaign latencies), for each form and
spread the per-layer time of least mean of TTFT and TPOT MAPE per model class, then the (form, spread) of least
run-weighted score over the classes. `--limit` fits on that many runs spread over the fit half. The held-out half
is scored before (no eager host time, the framework client) and after. `--write` stores the per-layer times and
forms in src/tokenfab/serving/engines/prefill_overheads.yaml and the spreads in bench/data/moe_engine_clients.yaml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import subprocess
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import yaml

import accuracy_moe_serving as ams
from accuracy_serving import fitted_clients, job_half
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.serving import engines
from tokenfab.workload.hf_config import load_model

SPLIT = "sha256 of the run key, even: fit half; odd: held out"
FORMS = {"add": False, "overlap": True}


def _jobs(engine: str, variation: float | None) -> list[dict]:
    """The engine's MoE runs under its framework client (output spread `variation`, None: the framework's own), no
    campaign's latency or spread (bench/fit_moe_serving_client.py fits those afterwards, under this fit)."""
    clients = {k: dict(v) for k, v in fitted_clients().items()}
    if variation is not None:
        clients.setdefault(engine, {})["output_variation_frac"] = variation
    jobs, _ = ams.concurrency_jobs(shared_calibration_dir(), clients=clients, campaign_clients={}, engine_clients={},
                                   campaign_spreads={})
    return [j for j in jobs if j["meta"]["framework"] == engine]


def _arch(job: dict) -> str:
    return engines.architecture_key(load_model(job["kwargs"]["model"]))


def _run(jobs: list[dict], engine: str, per_layer_s: dict[str, float], overlaps: bool, workers: int) -> list[dict]:
    engines.fitted_prefill_overheads = lambda: {engine: per_layer_s}  # forked into the workers
    engines.fitted_prefill_overlaps = lambda: {engine: overlaps}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(ams._job, jobs, chunksize=1))


def _errors(jobs: list[dict], results: list[dict], metric: str) -> list[float]:
    return [res[metric] / j["measured"][metric][0] - 1 for j, res in zip(jobs, results)
            if metric in j["measured"] and not res.get("error") and metric in res]


def _scores(jobs: list[dict], results: list[dict]) -> dict[str, float]:
    """TTFT and TPOT MAPE, their mean (`score`) and the rows scored."""
    out = {m: round(float(np.mean(np.abs(_errors(jobs, results, m)))), 4) for m in ("ttft_ms", "tpot_ms")}
    out["score"] = round((out["ttft_ms"] + out["tpot_ms"]) / 2, 4)
    out["rows"] = len(_errors(jobs, results, "ttft_ms")) + len(_errors(jobs, results, "tpot_ms"))
    return out


def _fit_engine(engine: str, grid: list[float], spreads: list[float], forms: list[str], limit: int | None,
                workers: int) -> tuple[dict, dict]:
    """(choice, fit-half cells): per (form, spread), each class's best per-layer time, then the best (form, spread)."""
    cells: dict[str, dict] = {}
    best = None
    for form, v in itertools.product(forms, spreads):
        fit = ams.spread([j for j in _jobs(engine, v) if job_half(j) == 0], limit)
        classes = sorted({_arch(j) for j in fit})
        by_class: dict[str, dict[float, dict]] = {a: {} for a in classes}
        for g in grid:
            res = _run(fit, engine, {a: g for a in classes}, FORMS[form], workers)
            for a in classes:
                sel = [(j, r) for j, r in zip(fit, res) if _arch(j) == a]
                by_class[a][g] = _scores([j for j, _ in sel], [r for _, r in sel])
            print(f"{engine} {form} spread {v:g} {g * 1e3:g} ms/layer: "
                  + ", ".join(f"{a} {by_class[a][g]['score']:.4f}" for a in classes), flush=True)
        chosen = {a: min(grid, key=lambda g: (by_class[a][g]["score"], g)) for a in classes}
        rows = sum(by_class[a][chosen[a]]["rows"] for a in classes)
        total = sum(by_class[a][chosen[a]]["score"] * by_class[a][chosen[a]]["rows"] for a in classes) / rows
        cells[f"{form}/{v:g}"] = {"score": round(total, 4),
                                  "per_class": {a: {f"{g * 1e3:g}ms": by_class[a][g]["score"] for g in grid} for a in classes}}
        if best is None or total < best["score"]:
            best = {"score": round(total, 4), "form": form, "spread": v, "per_layer_s": chosen}
    return best, cells


def _held_out(engine: str, choice: dict, workers: int) -> tuple[dict, dict]:
    before_jobs = [j for j in _jobs(engine, None) if job_half(j) == 1]
    before = _scores(before_jobs, _run(before_jobs, engine, {}, False, workers))
    after_jobs = [j for j in _jobs(engine, choice["spread"]) if job_half(j) == 1]
    after = _scores(after_jobs, _run(after_jobs, engine, choice["per_layer_s"], FORMS[choice["form"]], workers))
    return before, after


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="trtllm,sglang")
    ap.add_argument("--grid-ms", default="0,0.5,1,1.5,2", help="host time per decoder layer, ms")
    ap.add_argument("--variation", default="0,0.02,0.05", help="benchmark-client output spreads")
    ap.add_argument("--forms", default="add,overlap")
    ap.add_argument("--limit", type=int, default=None, help="fit on this many runs spread over the fit half")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    grid = [float(x) / 1e3 for x in args.grid_ms.split(",")]
    spreads = [float(x) for x in args.variation.split(",")]
    forms = args.forms.split(",")
    fits = {}
    for engine in args.engines.split(","):
        choice, cells = _fit_engine(engine, grid, spreads, forms, args.limit, args.workers)
        before, after = _held_out(engine, choice, args.workers)
        fits[engine] = {"choice": choice, "cells": cells, "held_out_before": before, "held_out_after": after}
        print(f"{engine}: chosen {choice}; held out before {before}, after {after}", flush=True)
    if args.write:
        _write(fits, grid, spreads, forms, args)


def _write(fits: dict, grid: list[float], spreads: list[float], forms: list[str], args: argparse.Namespace) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = " ".join(["python bench/fit_moe_prefill.py", f"--engines {args.engines}", f"--grid-ms {args.grid_ms}",
                        f"--variation {args.variation}", f"--forms {args.forms}",
                        *([f"--limit {args.limit}"] if args.limit else []), "--write"])
    prov = {"method": "per engine, jointly, the host time per decoder layer of iterations carrying prompt work (per "
                      "model class) with its form (added to the kernels, or overlapping them) and the benchmark "
                      "client's output spread on the engine's MoE runs: for each form and spread the per-layer time "
                      "per class of least mean of TTFT and TPOT MAPE on the fit half of the engine's runs of "
                      "bench/accuracy_moe_serving.py (shared/calibration/e2e_aiconfigurator_silicon.csv, NVIDIA "
                      "aiconfigurator-core silicon samples; framework clients, no per-campaign latencies), then the "
                      "form and spread of least run-weighted score; held-out figures (before: no eager host time, the "
                      "framework client) on the other half",
            "why": "TensorRT-LLM replays a CUDA graph only for iterations without context requests "
                   "(_torch/pyexecutor/scheduler.py ScheduledRequests.can_run_cuda_graph); SGLang runs extend batches "
                   "outside its decode CUDA graphs: such iterations launch every layer's kernels from Python",
            "split": SPLIT}
    overheads = _read(engines.PREFILL_OVERHEADS_PATH)  # an engine not refitted keeps its stored fit
    clients = _read(ams.ENGINE_CLIENTS_PATH)
    for e, f in fits.items():
        fit_prov = {"grid_s_per_layer": grid, "spread_grid": spreads, "forms": forms, "limit_fit_runs": args.limit,
                    "fit_half_cells": f["cells"], "fit_half_score": f["choice"]["score"],
                    "held_out_before": f["held_out_before"], "held_out_after": f["held_out_after"],
                    "commit": commit, "date": dt.date.today().isoformat(), "command": command}
        for data in (overheads, clients):
            data.setdefault("provenance", {}).update(prov)
            data["provenance"].setdefault("fits", {})[e] = fit_prov
        overheads.setdefault("engines", {})[e] = {
            "overlaps_kernels": FORMS[f["choice"]["form"]],
            "classes": {a: {"prefill_overhead_s_per_layer": g} for a, g in f["choice"]["per_layer_s"].items()}}
        clients.setdefault("frameworks", {})[e] = {"output_variation_frac": f["choice"]["spread"]}
    header = "# Written by bench/fit_moe_prefill.py; do not edit by hand.\n"
    engines.PREFILL_OVERHEADS_PATH.write_text(header + yaml.safe_dump(overheads, sort_keys=False))
    ams.ENGINE_CLIENTS_PATH.write_text(header + yaml.safe_dump(clients, sort_keys=False))
    print(f"wrote {engines.PREFILL_OVERHEADS_PATH} and {ams.ENGINE_CLIENTS_PATH}")


def _read(path) -> dict:
    """A data file this script wrote, for the engines it does not refit now ({} when absent or of an older layout)."""
    data = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    fits = (data.get("provenance") or {}).get("fits")
    return data if isinstance(fits, dict) else {}


if __name__ == "__main__":
    main()
