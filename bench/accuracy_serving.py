"""Serving group of bench/accuracy.py: `tokenfab simulate` against measured serving runs.

1. TTFT and TPOT at fixed concurrency: e2e_aiconfigurator_silicon.csv (H100, B200; Llama-3.1-8B/70B,
   Qwen3-32B; TensorRT-LLM, vLLM, SGLang), simulated as `--concurrency C` closed-loop clients sending
   10 x C measured requests of the row's ISL/OSL, all C starting at t=0; compared with the simulated mean
   TTFT / TPOT. How the benchmark client behaved (the first wave counted or left out as warm-up; exact
   output lengths, or lengths that vary and so spread the clients over the decode cycle) is not stated in
   the rows: it is fitted per framework on half of them by bench/fit_serving_client.py and read from
   bench/data/serving_clients.yaml (the exact client, first wave counted, when the file is absent). One
   measurement campaign (hardware, framework release, source file of the notes) may also have admitted fewer
   requests than its C clients sent (`held_slots`: at most C - held_slots running, one request always waiting
   for a slot); that too is fitted per campaign on half the runs (`campaigns:` in the same file), and so is the
   client itself where a campaign has enough runs (its own warm-up, output variation and latency).
2. Offline throughput: the TensorRT-LLM in-flight-batching max-throughput rows of trtllm.csv (fixed
   ISL/OSL, all requests queued at once), simulated `--offline` with the request count and KV share the perf
   overview states for the run (`_offline_settings`), the max_batch_size / max_num_tokens trtllm-bench derives from
   its own KV estimate and, for the TensorRT-engine releases, its context chunking (`_trtllm_bench_limits`), output
   tokens/s of the whole system.
MLPerf rows are not expressible: they state neither prompt lengths nor output distributions
(only mean tokens per sample), so they are listed as skipped rather than matched to a guess.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from tokenfab import api
from tokenfab.errors import TokenfabError

CLIENTS_PATH = Path(__file__).with_name("data") / "serving_clients.yaml"
EXACT_CLIENT = {"warmup_waves": 0, "output_variation_frac": 0.0, "request_latency_ms": 0.0}

MODELS = {"meta-llama/Llama-3.1-70B": "llama-3.1-70b", "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
          "Qwen/Qwen3-32B": "qwen3-32b", "nvidia/Qwen3-32B-NVFP4": "qwen3-32b", "Llama-3.1-70B": "llama-3.1-70b",
          "Llama-3.3-70B-Instruct": "llama-3.1-70b", "Llama-3.1-8B": "llama-3.1-8b", "Llama-3.1-8B-Instruct": "llama-3.1-8b",
          "Mistral-7B": "mistral-7b", "Llama-3.1-405B-Instruct": "llama-3.1-405b"}
# The calibration files' hardware names -> catalog chips (the MoE rows of accuracy_moe_serving use the same map).
# A100-PCIe-80GB and RTX-PRO-6000-Blackwell-Server are chips the operator fits never saw: they run on their specs and
# the profiles they inherit (a100-sxm, b200), not on anything fitted to these rows.
HARDWARE = {"H100-SXM-80GB": "h100-sxm", "B200-SXM-180GB": "b200", "A100-SXM-80GB": "a100-sxm", "L40S": "l40s",
            "A100-PCIe-80GB": "a100-pcie", "RTX-PRO-6000-Blackwell-Server": "rtx-pro-6000-server"}
QUANT = {"fp8": "fp8", "fp8_block": "fp8", "nvfp4": "fp4", "fp4": "fp4", "bfloat16": "bf16", "float16": "fp16", "fp16": "fp16"}


def _dtype(row: pd.Series) -> str | None:
    """The GEMM format of a run: its gemm_quant, or the checkpoint's 16-bit format when unquantised."""
    m = re.search(r"gemm_quant=(\w+)", str(row["notes"]))
    if m:
        return "bf16" if m.group(1) in ("nan", "None", "none") else QUANT.get(m.group(1))
    prec = str(row["precision"]).lower()
    return QUANT.get(prec)


def _engine_overrides(framework: str, input_len: int, concurrency: int) -> dict:
    """Settings a deployment of these runs must have had: TensorRT-LLM without chunked prefill only runs a prompt
    that fits max_num_tokens beside the batch's decode tokens, so its configuration holds at least ISL + batch
    (the 8192 default otherwise)."""
    if framework == "trtllm":
        return {"max_batched_tokens": max(8192, input_len + concurrency)}
    return {}


def fixed_concurrency_kwargs(model: str, hw: str, fw: str, c: int, isl: int, osl: int, **layout) -> dict:
    """`api.simulate` arguments of a fixed-concurrency row (dense or MoE): C closed-loop clients sending 10 x C
    requests (at most 4,000) of the row's ISL/OSL under the engine's overrides; `layout` carries parallelism,
    formats and KV dtype."""
    return dict(model=model, hardware=hw, **layout, concurrency=c, engine=fw, num_requests=min(10 * c, 4000),
                input_len=isl, output_len=osl, **_engine_overrides(fw, isl, c))


def engine_release(framework: str) -> dict:
    """`engine_version` of a row whose engine models more than one release, from the framework column: SGLang
    ('sglang 0.5.1.post1': its memory sizing changed in 0.5.4) and the trtllm-bench rows of trtllm.csv
    ('TensorRT-LLM v0.14.0 (...)', '~v1.1/1.2': the v0.x TensorRT-engine runtime holds runtime and decoder buffers
    before sizing the KV cache; a range names its first release). The aiconfigurator rows' 'trtllm 0.8.1.post2'
    names the ai-dynamo container, not a TensorRT-LLM release: nothing for those, nor when no version is stated (their
    'trtllm 1.x' releases: `trtllm_release`)."""
    parts = str(framework).split()
    if parts[0] == "sglang" and len(parts) > 1 and parts[1] != "nan":
        return {"engine_version": parts[1]}
    if parts[0] == "TensorRT-LLM" and len(parts) > 1 and parts[1].lstrip("~").startswith("v"):
        return {"engine_version": parts[1].lstrip("~v").split("/")[0]}
    return {}


def trtllm_release(framework: str) -> dict:
    """`engine_version` of an aiconfigurator row whose framework names a TensorRT-LLM release ('trtllm 1.0.0rc3',
    1.1-1.3; not the ai-dynamo container's 'trtllm 0.8.1'), for the fits stored per release (`engines.release_key`:
    TensorRT-LLM 1.0's token delivery). Passed for the dense fixed-concurrency rows, where the fit was made; the MoE
    rows of the same release keep none until their campaign clients (fitted without the stage) are refitted with it."""
    parts = str(framework).split()
    if parts[0] == "trtllm" and len(parts) > 1 and parts[1].startswith("1."):
        return {"engine_version": parts[1]}
    return {}


def job_half(job: dict) -> int:
    """The half a job falls in for the fits on the serving rows: sha256 of its run key, even (0) fit, odd (1) held
    out; one split for every fit (clients, engine overheads, attention-DP balance), so their halves agree."""
    return int(hashlib.sha256(repr(job["meta"]["key"]).encode()).hexdigest(), 16) % 2


def add_measured(jobs: dict[tuple, dict], key: tuple, kwargs: dict, meta: dict, r: pd.Series) -> None:
    """File row `r`'s metric under the job `key` (created from `kwargs` and `meta` on first sight): the rows of one
    run (TTFT, TPOT, throughput) share one simulation."""
    job = jobs.setdefault(key, {"kwargs": kwargs, "meta": {"key": key, **meta}, "measured": {}})
    earlier = job["measured"].get(r["metric"])
    if earlier is not None:  # the same run configuration measured again (another file or campaign): the last is scored
        job.setdefault("repeats", []).append((earlier[1], earlier[0], r["case_id"], float(r["value"])))
    job["measured"][r["metric"]] = (float(r["value"]), r["case_id"])


def repeat_reasons(jobs) -> list[str]:
    """One not-scored line per measurement that `add_measured` replaced by a later one of the same job and metric:
    the same model, chip, formats, framework, layout, concurrency and lengths measured again; the last is scored."""
    return [f"{case_id}: repeated by {later_id} (same configuration; measured {value:g} against {later:g}), scored once"
            for job in jobs for case_id, value, later_id, later in job.get("repeats", ())]


def _fit_file() -> dict:
    return (yaml.safe_load(CLIENTS_PATH.read_text()) or {}) if CLIENTS_PATH.exists() else {}


def fitted_clients() -> dict[str, dict]:
    """Per framework, the fitted benchmark-client setting (bench/fit_serving_client.py); {} without the file."""
    return {name: {k: row.get(k, v) for k, v in EXACT_CLIENT.items()} for name, row in _fit_file().get("frameworks", {}).items()}


def fitted_campaigns() -> dict[str, int]:
    """Per measurement campaign (`campaign()`), the fitted number of held slots where it is not 0; {} without the file."""
    return {name: int(row["held_slots"]) for name, row in _fit_file().get("campaigns", {}).items() if row.get("held_slots")}


def fitted_recipes() -> dict[str, str]:
    """Per measurement campaign, the deployment recipe (`RECIPES`) chosen on its fit half; {} without the file."""
    return {name: row["recipe"] for name, row in _fit_file().get("campaigns", {}).items() if row.get("recipe")}


def fitted_campaign_clients() -> dict[str, dict]:
    """Per measurement campaign with a client fit of its own (bench/fit_serving_client.py, enough fit-half runs):
    its benchmark-client setting, which replaces its framework's; {} without the file. A campaign is one
    benchmark setup (client tool and its flags, the network between client and server), which one framework's
    campaigns need not share: vLLM's Qwen3-32B runs on H100 keep TTFT flat in the output length (clients that
    stay bunched), its Llama-3.1-70B runs spread; their latencies differ too."""
    out = {}
    for name, row in _fit_file().get("campaigns", {}).items():
        client = row.get("client")
        if client:
            out[name] = {k: client[k] for k in EXACT_CLIENT if k in client}
    return out


_SOURCE_FILE = re.compile(r"source_file=([^;\]]+)")


def campaign(r: pd.Series) -> str:
    """The measurement campaign a row belongs to: chip, framework release and the source file its notes name (one
    deployment recipe and one benchmark client per campaign, which the rows do not state)."""
    m = _SOURCE_FILE.search(str(r["notes"]))
    return f"{r['hardware']} {r['framework']} {m.group(1) if m else '?'}"


def apply_client(kwargs: dict, client: dict) -> dict:
    """The simulate arguments of a fixed-concurrency job under a benchmark-client setting: `warmup_waves` waves of
    C requests left out of the mean, outputs drawn uniformly within +-`output_variation_frac` of the length,
    `request_latency_ms` between client and engine, and `held_slots` (campaign-fitted, default 0) of the C
    sequence slots the engine did not give to requests (at most C - held_slots run at once)."""
    kw = dict(kwargs)
    kw["request_latency_ms"] = float(client.get("request_latency_ms", 0.0))
    held = int(client.get("held_slots", 0))
    if held:
        kw["max_num_seqs"] = max(1, kw["concurrency"] - held)
    kw["warmup_requests"] = int(client["warmup_waves"]) * kw["concurrency"]
    f, out = float(client["output_variation_frac"]), kw["output_len"]
    kw.pop("output_dist", None)
    if f > 0:
        kw["output_dist"] = f"uniform:{max(1, round(out * (1 - f)))},{max(1, round(out * (1 + f)))}"
    return kw


# Deployment recipes: how a benchmark suite launched server and client, for the campaigns it ran (chosen per campaign
# on the fit half, bench/fit_serving_client.py --recipes). InferenceMAX (SemiAnalysis, github.com/SemiAnalysisAI/
# InferenceX, measured from October 2025) runs Llama-3.x-70B FP8 and FP4 on B200 with TensorRT-LLM and vLLM at TP 1-8,
# concurrency 4-128, ISL/OSL 1k/1k, 1k/8k and 8k/1k: the grid of campaign 2026-04-06 (measured 2025-10-29).
def inferencemax_trtllm_70b_b200(kw: dict) -> dict:
    """InferenceMAX's TensorRT-LLM server and client for Llama-70B on B200 (benchmarks/70b_fp8_b200_trt_slurm.sh
    @a267b4b; 70b_fp4_b200_trt_slurm.sh as the forks of InferenceMAX kept it, jyothisambolu/InferenceMAX @1b563c8 and
    faradawn/InferenceMAX @9596d23; InferenceX @73ef922 later passes $MAX_MODEL_LEN instead): trtllm-serve
    --max_num_tokens 16384; for ISL = OSL = 1024 at TP < 8 only, llama-config.yml sets batch_wait_max_tokens_ratio 0.9 and batch_wait_timeout_iters 20 ("For 1k/1k,
    use batch_wait_max_tokens_ratio and batch_wait_timeout_iters will improve the performance"); cuda_graph_config
    max_batch_size 1024 with padding; stream_interval 10 (the first token is streamed at once: py_executor.py
    _handle_responses answers at py_decoding_iter == 1). Client: kimbochen/bench_serving benchmark_serving.py
    --dataset-name random --random-range-ratio 0.8 (input and output lengths uniform integers in
    [int(0.8 x L), L], sample_random_requests), --num-prompts 10 x C, --max-concurrency C, --ignore-eos."""
    isl, osl, tp = kw["input_len"], kw["output_len"], kw["tp"]
    out = {"max_batched_tokens": 16384, "cuda_graph_max_batch": 1024,
           "input_dist": f"uniform:{int(isl * 0.8)},{isl}", "output_dist": f"uniform:{int(osl * 0.8)},{osl}"}
    if isl == 1024 and osl == 1024 and tp < 8:
        out.update(batch_wait_timeout_iters=20, batch_wait_max_tokens_ratio=0.9)
    return out


RECIPES = {"inferencemax-trtllm-70b-b200": (inferencemax_trtllm_70b_b200, ("trtllm", "B200-SXM-180GB", "llama-3.1-70b"))}


def recipe_applies(name: str, meta: dict) -> bool:
    """Whether recipe `name` names this job's framework, chip and model."""
    fw, hw, model = RECIPES[name][1]
    return meta["framework"] == fw and meta["campaign"].startswith(hw) and meta["model"] == model


def apply_recipe(kwargs: dict, name: str | None) -> dict:
    """The simulate arguments of a job under deployment recipe `name` (None: unchanged); the recipe's client lengths
    replace the fitted output variation, the fitted latency and held slots stay."""
    if not name:
        return kwargs
    kw = {k: v for k, v in kwargs.items() if k not in ("output_dist", "input_dist")}
    return {**kw, **RECIPES[name][0](kw)}


_WORKERS = re.compile(r"(prefill|decode) workers=(\d+) x \(tp=(\d+), pp=(\d+), attn_dp=(\d+)[^)]*batch=(\d+)\)")


def _disagg_job(r: pd.Series, model: str, hw: str, dtype: str, fw: str) -> dict | None:
    """A P/D run from its notes: prefill and decode pools (workers x TP) at the stated concurrency (`_jobs` lists the
    runs that state none), KV moved over the scale-out link."""
    pools = {m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)))
             for m in _WORKERS.finditer(str(r["notes"]))}
    if set(pools) != {"prefill", "decode"} or any(p[2] != 1 or p[3] != 1 for p in pools.values()):
        return None  # no layout, or pipeline / attention-DP pools (the MoE group expresses those)
    (np_, tp_p, _, _, _), (nd, tp_d, _, _, batch_d) = pools["prefill"], pools["decode"]
    m = re.search(r"silicon_concurrency=(\d+)", str(r["notes"])) or re.search(r"fixed concurrency=(\d+)", str(r["notes"]))
    c = int(m.group(1))
    isl, osl = int(r["input_len"]), int(r["output_len"])
    kv = "fp8" if dtype in ("fp8", "fp4") else dtype
    key = ("disagg", model, hw, dtype, fw, np_, tp_p, nd, tp_d, c, isl, osl)
    return {
        "kwargs": dict(model=model, hardware=hw, tp=tp_d, dtype=dtype, kv_dtype=kv, concurrency=c, engine=fw, **engine_release(r["framework"]),
                       num_requests=min(10 * c, 4000), input_len=isl, output_len=osl,
                       prefill_replicas=np_, decode_replicas=nd, prefill_tp=tp_p, decode_tp=tp_d,
                       **_engine_overrides(fw, isl, batch_d)),
        "meta": {"key": key, "framework": fw, "device": hw, "model": model, "tp": tp_d, "concurrency": c,
                 "disaggregated": True},
        "measured": {},
    }


def _concurrency_job(job: dict) -> dict:
    kw = dict(job["kwargs"])
    try:
        s = api.simulate(**kw).summary
        if s["completed"] == 0:
            return {**job["meta"], "error": f"no request fits: {s['rejected_reasons']}"}
        return {**job["meta"], "ttft_ms": s["ttft_s"]["mean"] * 1e3, "tpot_ms": s["tpot_s"]["mean"] * 1e3,
                "throughput": s["throughput_tokens_per_s"], "error": ""}
    except TokenfabError as exc:
        return {**job["meta"], "error": str(exc)}


def concurrency_jobs(directory: Path, clients: dict[str, dict] | None = None, campaigns: dict[str, int] | None = None,
                     campaign_clients: dict[str, dict] | None = None,
                     recipes: dict[str, str] | None = None) -> tuple[list[dict], list[str]]:
    """The fixed-concurrency and P/D jobs, each under its benchmark client and recipe (`under_clients`)."""
    jobs, skipped = _jobs(directory)
    return under_clients(jobs, clients, campaigns, campaign_clients, recipes), skipped


def client_of(meta: dict, clients: dict[str, dict], campaigns: dict[str, int], campaign_clients: dict[str, dict]) -> dict:
    """The benchmark client of one job: its campaign's own fit where it has one, else its framework's (the exact
    client for a framework without one), with its campaign's held slots."""
    name = meta.get("campaign", "")
    client = campaign_clients.get(name) or clients.get(meta["framework"], EXACT_CLIENT)
    return {**EXACT_CLIENT, **client, "held_slots": campaigns.get(name, 0)}


def under_clients(jobs: list[dict], clients: dict[str, dict] | None = None, campaigns: dict[str, int] | None = None,
                  campaign_clients: dict[str, dict] | None = None, recipes: dict[str, str] | None = None) -> list[dict]:
    """Each job's simulate arguments under its benchmark client (`client_of`) and its campaign's deployment recipe:
    `clients` per framework, `campaigns` (held slots), `campaign_clients` and `recipes` per campaign, each
    defaulting to the fitted ones (a job without a campaign, such as the MoE jobs, gets its framework's client,
    no held slots and no recipe)."""
    clients = fitted_clients() if clients is None else clients
    campaigns = fitted_campaigns() if campaigns is None else campaigns
    campaign_clients = fitted_campaign_clients() if campaign_clients is None else campaign_clients
    recipes = fitted_recipes() if recipes is None else recipes
    for job in jobs:
        kw = apply_client(job["kwargs"], client_of(job["meta"], clients, campaigns, campaign_clients))
        recipe = recipes.get(job["meta"].get("campaign", ""))
        job["kwargs"] = apply_recipe(kw, recipe) if recipe and recipe_applies(recipe, job["meta"]) else kw
    return jobs


# A run's benchmark concurrency as its notes state it. The Dynamo 0.8.0 runs of qwen3_32b.csv (vLLM 0.12.0,
# TensorRT-LLM 1.2.0rc6, SGLang 0.5.6) say 'measured serving benchmark at fixed concurrency' with no value (their ids
# read '..._4000x1000_c_tp8_...' where every other run's reads '_c16_'): their `batch` is then no known client count,
# aggregated or P/D. The P/D ones' decode workers x batch is no stand-in either: SGLang's Qwen3-32B P/D runs measure a
# TPOT of 112-560 ms at that load, where the tool predicts 25-28 ms for their TP2-TP8 decode steps.
_STATED_CONCURRENCY = re.compile(r"fixed concurrency=\d+")


def _jobs(directory: Path) -> tuple[list[dict], list[str]]:
    rows = pd.read_csv(directory / "e2e_aiconfigurator_silicon.csv")
    jobs, skipped = {}, []
    for _, r in rows.iterrows():
        model, hw, dtype = MODELS.get(r["model"]), HARDWARE.get(r["hardware"]), _dtype(r)
        if r["scenario"] not in ("server-agg", "server-disagg") or model is None or hw is None or dtype is None:
            skipped.append(f"{r['case_id']} (scenario {r['scenario']}, {r['model']}, {r['precision']})")
            continue
        fw = str(r["framework"]).split()[0]
        if not _STATED_CONCURRENCY.search(str(r["notes"])):
            skipped.append(f"{r['case_id']} (no concurrency stated: the notes say 'at fixed concurrency' without a value, "
                           "and the run id's concurrency field is empty)")
            continue
        if r["scenario"] == "server-disagg":
            job = _disagg_job(r, model, hw, dtype, fw)
            if job is None:
                skipped.append(f"{r['case_id']} (disaggregated layout not stated in the notes)")
                continue
            add_measured(jobs, job["meta"]["key"], job["kwargs"], job["meta"], r)
            continue
        c, tp, isl, osl = int(r["batch"]), int(r["tp"]), int(r["input_len"]), int(r["output_len"])
        kv = "fp8" if dtype in ("fp8", "fp4") else dtype
        add_measured(jobs, (model, hw, dtype, fw, tp, c, isl, osl),
                     fixed_concurrency_kwargs(model, hw, fw, c, isl, osl, tp=tp, dtype=dtype, kv_dtype=kv,
                                              **engine_release(r["framework"]), **trtllm_release(r["framework"])),
                     {"framework": fw, "device": hw, "model": model, "tp": tp, "concurrency": c, "campaign": campaign(r)}, r)
    return list(jobs.values()), skipped + repeat_reasons(jobs.values())


# $num_requests per (ISL, OSL) of the TensorRT-LLM perf overview's dataset step ("Preparing a Dataset",
# github.com/NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md @00f3768): enough requests for a steady state.
PERF_OVERVIEW_REQUESTS = {(128, 128): 30000, (128, 2048): 3000, (128, 4096): 1500, (1000, 2000): 1500, (2048, 128): 3000,
                          (2048, 2048): 1500, (5000, 500): 1500, (1000, 1000): 3000, (500, 2000): 3000, (20000, 2000): 1000,
                          # the developer-guide perf overview's table (docs/source/developer-guide/perf-overview.md
                          # @03e27c7, "Number of Requests"), whose pairs the tables above do not use
                          (1024, 1024): 3000, (8192, 1024): 1500, (1024, 8192): 1500, (32768, 1024): 1000,
                          (1024, 32768): 1000}


def _offline_settings(r: pd.Series) -> dict:
    """Requests and KV share of a trtllm-bench row as its source states them: the perf overview's $num_requests for
    its ISL/OSL (else enough for a steady state), and kv_cache_free_gpu_mem_fraction 0.95 where the notes say the
    run used it (the engine default 0.9 otherwise)."""
    isl, osl = int(r["input_len"]), int(r["output_len"])
    n = PERF_OVERVIEW_REQUESTS.get((isl, osl), max(500, min(3000, 600_000 // osl)))
    out = {"num_requests": n}
    if "kv_cache_free_gpu_mem_fraction 0.95" in str(r["notes"]):
        out["kv_free_memory_frac"] = 0.95
    return out


# Releases whose trtllm-bench keeps every layer's whole sequence in the KV cache: its runtime config builds
# KvCacheConfig(free_gpu_memory_fraction=...) and sets no max_attention_window (tensorrt_llm/bench dataclasses of
# the v0.12-v0.14 trtllm-bench), and TensorRT-LLM runs sliding-window attention only when asked for a
# max_attention_window_size (examples' READMEs: "Add --max_attention_window_size 4096 ... which enables the sliding
# window attention"). Mistral-7B-v0.1's 4096-token window therefore did not bound these runs' KV cache or attention.
FULL_ATTENTION_RELEASES = ("v0.14.0",)


def _full_attention_model(model: str) -> str:
    """A config.json of `model` with its sliding window off (HF's use_sliding_window), written once per process
    tree under the temp directory; `model` itself when it has no window."""
    from tokenfab.workload.hf_config import CONFIG_DIR

    config = json.loads((CONFIG_DIR / f"{model}.json").read_text())
    if not config.get("sliding_window"):
        return model
    path = Path(tempfile.gettempdir()) / "tokenfab-bench" / f"{model}-full-attention" / "config.json"
    text = json.dumps({**config, "use_sliding_window": False}, indent=1)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


GIB = 2.0**30

# The CUDA-graph capture list the PyTorch-backend perf overviews ran with (their llm_options.yml, passed as
# --extra_llm_api_options: "cuda_graph_config: padding_enabled / enable_padding: true, batch_sizes: [1, 2, 4, 8, 16, 32,
# 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192]"; "The data collected for the v0.20 benchmarks was run with the
# following file", github.com/dominicshanshan/TensorRT-LLM docs/source/performance/perf-overview.md @ab4143e; the same
# list in the v1.0-era overview @00f3768 and the developer-guide overview @03e27c7 for the 1.1/1.2 rows). It replaces
# the list CudaGraphConfig would generate from max_batch_size (whose powers of two stop below 2^floor(log2 max), so a
# max_batch_size of 384 captures ..., 128, 384 and pads a batch of 250 to 384); the engine keeps the sizes not above
# max_batch_size and max_num_tokens. The v0.x TensorRT-engine runtime ran without CUDA graphs: trtllm-bench
# throughput leaves PerformanceOptions.cuda_graphs at False (tensorrt_llm/bench dataclasses; only its low-latency
# command turns them on).
PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)


def _finetune_setting(requests: float, isl: int, osl: int, pp: int) -> tuple[int, int]:
    """trtllm-bench's finetune_setting (tensorrt_llm/bench/build/tuning.py): batch capped at 4096 / pp and rounded up
    (at least 64), tokens = batch x (1 + ISL/OSL) capped at 32768 and rounded up (at least 2048). With pp stages both
    are one micro-batch's (raw_bs = min(kv_cache_max_requests, 4096) / pp_size): the engine keeps pp micro-batches of
    up to max_batch_size sequences and max_num_tokens tokens in flight (`EngineSpec.pp_limits`), so the KV room's
    requests are all in flight at once."""
    raw_bs = min(requests, 4096) / pp
    raw_tok = min(raw_bs * (1 + isl / osl), 32768)
    step = 32 if raw_bs < 256 else 128 if raw_bs < 1024 else 256
    bs = max(64, step * math.ceil(raw_bs / step)) if raw_bs < 256 else step * math.ceil(raw_bs / step)
    tstep = 256 if raw_tok < 4096 else 512 if raw_tok < 8192 else 1024
    tok = max(2048, tstep * math.ceil(raw_tok / tstep)) if raw_tok < 4096 else tstep * math.ceil(raw_tok / tstep)
    return int(bs), int(tok)


def _moe_bench_limits(kw: dict) -> dict:
    """max_batch_size and max_num_tokens by trtllm-bench's finetune_setting for an MoE layout, with tokenfab's KV
    capacity for the room (of one attention-DP rank: `kw`'s ep / dp / moe_tp / weight_dtype / moe_dispatch where it
    has them), which trtllm-bench's dense estimate (below) does not describe (MLA latents, attention-DP ranks); the
    PyTorch backend's CUDA graphs are captured up to max_batch_size as for dense rows."""
    from tokenfab.serving.engines.trtllm import is_engine_runtime

    layout = {k: kw[k] for k in ("ep", "dp", "moe_tp", "weight_dtype", "moe_dispatch") if kw.get(k) is not None}
    d = api.deployment(kw["model"], kw["hardware"], None, kw["tp"], kw["pp"], dtype=kw["dtype"], kv_dtype=kw["kv_dtype"],
                       kv_free_memory_frac=kw.get("kv_free_memory_frac", 0.9), **layout)
    isl, osl = kw["input_len"], kw["output_len"]
    bs, tok = _finetune_setting(d.memory.kv_capacity_tokens(8192, 2048) / (isl + osl), isl, osl, kw["pp"])
    out = {"max_num_seqs": bs, "max_batched_tokens": max(tok, isl + bs)}
    return out if is_engine_runtime(kw.get("engine_version")) else {**out, "cuda_graph_max_batch": bs}


def _trtllm_bench_limits(kw: dict) -> dict:
    """max_batch_size, max_num_tokens and context chunking as trtllm-bench sets them for the dataset's ISL + OSL, with
    its own estimate of the KV room (tensorrt_llm/bench/build/tuning.py, calc_engine_setting): NVML's device total
    (GiB) x TP x PP, less the parameter count x bytes per weight, x the KV fraction, over 2 x layers x max(TP, KV
    heads) x head_dim x KV bytes per token. The TensorRT-engine releases (0.12-0.16) build with the earliest stored
    form (parameters in units of 10^9 as GiB, 1 byte for FP8 and 2 otherwise, fraction 0.95 fixed at build) and run
    with context chunking on (bench dataclasses ExecutorSettingsConfig chunking=True; the v0.12 log's "maxInputLen
    ... since chunked context is enabled"), so max_num_tokens stays the tuned value; the PyTorch backend estimates
    with bytes per weight 2 / 1 / 0.5 (16-bit, FP8, NVFP4) at the run's fraction and, its chunking off, raises
    max_num_tokens to ISL + max_batch_size; its CUDA graphs are the perf overviews' capture list with padding on
    (`PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES`), the engine releases run without graphs."""
    from tokenfab.hardware.catalog import load_chip
    from tokenfab.serving.engines.trtllm import is_engine_runtime
    from tokenfab.workload.hf_config import load_model
    from tokenfab.workload.params import count_parameters

    model, tp, pp = load_model(kw["model"]), kw["tp"], kw["pp"]
    if model.is_moe:
        return _moe_bench_limits(kw)
    attn, isl, osl = model.first_attention, kw["input_len"], kw["output_len"]
    engine_runtime = is_engine_runtime(kw.get("engine_version"))
    params = count_parameters(model).total
    if engine_runtime:
        weights_gib, fraction = params / 1000**3 * (1.0 if kw["dtype"] == "fp8" else 2.0), 0.95
    else:
        weights_gib = params * {"fp8": 1.0, "fp4": 0.5}.get(kw["dtype"], 2.0) / GIB
        fraction = kw.get("kv_free_memory_frac", 0.9)
    total_gib = load_chip(kw["hardware"]).device_memory_bytes / GIB * tp * pp
    per_token_gib = 2 * model.num_layers * max(tp, attn.num_kv_heads) * attn.head_dim * (1.0 if kw["kv_dtype"] == "fp8" else 2.0) / GIB
    requests = (total_gib - weights_gib) * fraction / per_token_gib / (isl + osl)
    bs, tok = _finetune_setting(requests, isl, osl, pp)
    if engine_runtime:
        return {"max_num_seqs": bs, "max_batched_tokens": tok, "chunked_prefill": True, "cuda_graph_batch_sizes": ()}
    return {"max_num_seqs": bs, "max_batched_tokens": max(tok, isl + bs),
            "cuda_graph_batch_sizes": PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES}


def throughput_jobs(directory: Path) -> tuple[list[dict], list[str]]:
    rows = pd.read_csv(directory / "trtllm.csv")
    rows = rows[rows["framework"].str.contains("trtllm-bench", na=False)]
    jobs, skipped = [], []
    for _, r in rows.iterrows():
        model, hw = MODELS.get(r["model"]), HARDWARE.get(r["hardware"])
        dtype = {"FP8": "fp8", "FP16": "fp16", "FP4": "fp4"}.get(str(r["precision"]))
        if model is None or hw is None or dtype is None or r["metric"] not in ("output_tokens_per_s", "output_tokens_per_s_per_gpu"):
            skipped.append(f"{r['case_id']} ({r['hardware']}, {r['model']}, {r['metric']})")
            continue
        tp, pp = int(r["tp"]), int(r["pp"]) if not math.isnan(r["pp"]) else 1
        out = int(r["output_len"])
        run_model = _full_attention_model(model) if any(v in str(r["framework"]) for v in FULL_ATTENTION_RELEASES) else model
        kwargs = dict(model=run_model, hardware=hw, tp=tp, pp=pp, dtype=dtype, kv_dtype="fp8" if dtype != "fp16" else "fp16",
                      offline=True, input_len=int(r["input_len"]), output_len=out, engine="trtllm", **_offline_settings(r),
                      **engine_release(r["framework"]))
        kwargs.update(_trtllm_bench_limits(kwargs))
        jobs.append({
            "kwargs": kwargs,
            "meta": {"case_id": r["case_id"], "device": hw, "model": model, "tp": tp, "pp": pp,
                     "per_gpu": r["metric"].endswith("per_gpu"), "n_accel": int(r["n_accel"]), "measured": float(r["value"])},
        })
    return jobs, skipped


def run_serving_group(directory: Path, workers: int = 2) -> tuple[pd.DataFrame, list[str]]:
    conc, skipped1 = concurrency_jobs(directory)
    thr, skipped2 = throughput_jobs(directory)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        conc_results = list(pool.map(_concurrency_job, conc, chunksize=4))
        thr_results = list(pool.map(_concurrency_job, thr, chunksize=2))
    rows = []
    for job, res in zip(conc, conc_results):
        for metric, (value, case_id) in job["measured"].items():
            if res["error"]:
                skipped1.append(f"{case_id} ({res['error']})")
                continue
            where = "disaggregated (P/D)" if job["meta"].get("disaggregated") else "at fixed concurrency"
            rows.append({"case_id": case_id, "group": f"serving:{metric} {where}", "device": res["device"],
                         "framework": res["framework"], "measured": value, "predicted": res[metric]})
    for job, res in zip(thr, thr_results):
        meta = job["meta"]
        if res["error"]:
            skipped2.append(f"{meta['case_id']} ({res['error']})")
            continue
        pred = res["throughput"] / (meta["n_accel"] if meta["per_gpu"] else 1)
        rows.append({"case_id": meta["case_id"], "group": "serving:offline output tokens/s (TRT-LLM)", "device": meta["device"],
                     "framework": "trtllm", "measured": meta["measured"], "predicted": pred})
    frame = pd.DataFrame(rows)
    frame["error_frac"] = frame["predicted"] / frame["measured"] - 1.0
    return frame, skipped1 + skipped2 + ["mlperf.csv: LLM rows state no prompt lengths (only mean tokens per sample): not simulated"]
