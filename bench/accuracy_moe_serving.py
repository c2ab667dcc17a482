"""MoE serving rows for bench/accuracy_moe.py: every MoE row of shared/calibration, simulated or listed with why not.

- e2e_aiconfigurator_silicon.csv, aggregated MoE runs (DeepSeek-V3/R1, Qwen3-235B-A22B, GPT-OSS-120B on H100
  and B200): `api.simulate` with the row's layout from its notes (tp, attention_dp -> dp, moe_tp, moe_ep -> ep;
  a blank attention_dp: see `layout`) and `--concurrency C`, C the notes' 'fixed concurrency' (the `batch`
  column is the per-rank batch: `benchmark_concurrency`), 10 x C requests under the framework's
  benchmark client fitted on the dense rows, accuracy_serving.fitted_clients, through accuracy_serving's job
  runner; compared on mean TTFT and TPOT.
- trtllm.csv MoE trtllm-bench rows (Mixtral, Qwen3 MoE, DeepSeek-R1, GPT-OSS, Llama-4): `--offline` output tokens/s.
- disaggregated runs of the same file: prefill and decode pools each with their own layout and worker count
  (simulate's prefill_*/decode_* layout arguments; TensorRT-LLM context servers limited to the stated prefill
  batch, `prefill_limit`); runs whose worker counts the source leaves blank under a stated assumption
  (`assume_workers`), scored in groups of their own.
- aggregated TensorRT-LLM attention-DP runs under the context balancing bench/fit_attention_dp_balance.py chose
  (`concurrency_jobs`, `is_balanced_kind`); InferenceMAX's MTP runs under its scripts' server limits
  (`mtp_script_limits`: a per-rank max_batch_size, and a token budget that admits one prompt per rank and iteration).
- MLPerf MoE rows and the SGLang 96 x H100 large-scale-EP figures: listed with the reason they are not
  simulated (see `_not_expressed`); so are measurements repeated under a larger-GPU layout label
  (`relabelled_duplicates`), runs below their stated load (`below_stated_load`), runs far above their own
  deployment's TTFT at a higher load (`above_higher_load_ttft`), the unversioned SGLang NVFP4 MoE-TP series on
  B200 with its first-token stalls (`is_stalled_series`), and the TTFT of runs whose first token is seconds late
  whatever the prompt's length (`prompt_insensitive_ttft`); those four rules live in bench/moe_serving_rules.py.
"""

from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import yaml
from accuracy_serving import (
    EXACT_CLIENT,
    HARDWARE,
    _concurrency_job,
    _engine_overrides,
    _offline_settings,
    _trtllm_bench_limits,
    add_measured,
    apply_client,
    campaign,
    client_of,
    engine_release,
    fitted_clients,
    fixed_concurrency_kwargs,
    repeat_reasons,
)

from moe_serving_rules import above_higher_load_ttft, below_stated_load, first_token_stalls, prompt_insensitive_ttft
from trtllm_bench_moe import checkpoint_quant_method, trtllm_bench_moe_limits

from tokenfab.errors import TokenfabError
from tokenfab.hardware.catalog import load_chip

MOE_MODELS = {"deepseek-ai/DeepSeek-R1": "deepseek-v3", "deepseek-ai/DeepSeek-V3": "deepseek-v3",
              "nvidia/DeepSeek-R1-NVFP4": "deepseek-v3", "nvidia/DeepSeek-V3.1-NVFP4": "deepseek-v3",
              "Qwen/Qwen3-235B-A22B-FP8": "qwen3-235b-a22b", "openai/gpt-oss-120b": "gpt-oss-120b",
              "Mixtral-8x7B": "mixtral-8x7b", "Mixtral-8x22B": "mixtral-8x22b", "Qwen3-235B-A22B": "qwen3-235b-a22b",
              "Qwen3-30B-A3B": "qwen3-30b-a3b", "DeepSeek-R1-0528": "deepseek-v3", "GPT-OSS-120B": "gpt-oss-120b",
              "GPT-OSS-20B": "gpt-oss-20b", "Llama-4-Scout-17B-16E": "llama-4-scout-17b-16e"}
MOE_PATTERN = r"DeepSeek|A22B|A3B|gpt-oss|GPT-OSS|Mixtral|Llama-4|Maverick|Scout"
QUANT = {"nvfp4": "fp4", "fp8": "fp8", "fp8_block": "fp8", "bfloat16": "bf16", "mxfp4": "fp4", "None": "bf16"}
_LAYOUT = re.compile(r"tp=(\d+), pp=(\d+), attention_dp=(\d*), moe_tp=(\d+), moe_ep=(\d+)")
_CONCURRENCY = re.compile(r"fixed concurrency=(\d+)")
_PER_RANK = re.compile(r"batch/concurrency=(\d+)")
# The Dynamo 0.8.0 runs of qwen3_235b.csv say 'measured serving benchmark at fixed concurrency' with no value (ids
# '..._4000x1000_c_tp4_...'), as the dense qwen3_32b.csv runs that accuracy_serving lists as not scored: their `batch` is
# no known client count (the TensorRT-LLM TP4 run measures a 29 s mean TTFT beside a 23 ms TPOT at batch 28), and
# the P/D runs' workers x batch is the aiconfigurator generator's rule (`benchmark_concurrency`), not this campaign's.
# They are listed, not scored.
_UNSTATED_CONCURRENCY = re.compile(r"fixed concurrency(?!=)")
_PREFILL_BATCH = re.compile(r"prefill workers=\d* x \([^)]*batch=(\d+)\)")
_POOL = re.compile(r"(prefill|decode) workers=(\d*) x \(tp=(\d+), pp=(\d+), attn_dp=(\d*), moe_tp=(\d+), moe_ep=(\d+)")


def layout(notes: str) -> dict | None:
    """tp, pp, dp, moe_tp, ep of an aggregated run from its notes (None if the notes state none).

    A blank attention_dp is moe_tp x moe_ep / tp, unless the run's concurrency is its per-rank batch times
    tp (`benchmark_concurrency`): then it is TensorRT-LLM's tp=T with attention-DP on, i.e. tp 1, dp T
    (DeepSeek-R1/V3.1-NVFP4 and GPT-OSS rows of TensorRT-LLM 1.3, where every explicit attention_dp=D row
    also has concurrency = batch x D)."""
    m = _LAYOUT.search(notes)
    if not m:
        return None
    tp, pp, dp, moe_tp, ep = (int(x) if x else 0 for x in m.groups())
    if converter_relabelled(notes, tp, dp, moe_tp, ep):
        gpus = moe_tp  # the run's TP (or attention-DP) size; its EP size is moe_ep; MoE-TP is what EP leaves
        tp, dp, moe_tp = (1, gpus, gpus // ep) if dp > 1 else (gpus, 1, gpus // ep)
    if not dp:
        per_rank, total = _note_number(notes, _PER_RANK), _note_number(notes, _CONCURRENCY)
        if tp > 1 and per_rank and total == per_rank * tp:
            tp, dp = 1, tp
    dp = dp or max(1, moe_tp * ep // tp)
    return {"tp": tp, "pp": pp, "dp": dp, "moe_tp": moe_tp, "ep": ep}


_SAMPLE_LAYOUT = re.compile(r"sample id=\S*_tp(\d+)_ep(\d+)_\d+;")


def converter_relabelled(notes: str, tp: int, dp: int, moe_tp: int, ep: int) -> bool:
    """Whether an aggregated layout is the converter's relabelling of a T-GPU run with EP E (T = moe_tp, E = moe_ep)
    as tp (or attention_dp) = T x E, moe_tp = T: aiconfigurator's 2026-04-06 samples and the 2026-04-27 db-dump.

    Their sample ids name the run: '..._tp8_ep8_920' is the 2026-03-25 source's 'tp8_0_ep8_0' (8 GPUs, attention TP8
    or DP8, experts EP8, moe_tp 1), yet its notes say tp=64, moe_tp=8, moe_ep=8 ('tp4_ep4': tp=16 or attention_dp=16,
    moe_tp=4, moe_ep=4; 'tp2_ep2': attention_dp=4, 2 x 2), and the db-dump repeats 8-GPU runs of the 2026-03-25 source
    to the last digit under the same 64-GPU label (`relabelled_duplicates`). Measured TPOT agrees: SGLang DeepSeek
    'tp=64' at C=4 8.12 ms against 8.05 ms for its tp=8 ep=8 run, where TP64 over eight 8-GPU nodes would pay ~10 ms
    of inter-node all-reduce per step. A row whose id names another layout, or a layout whose size differs from
    T x E, is left as stated (e.g. nvidia_DeepSeek-R1-NVFP4's tp=8, moe_tp=2, moe_ep=4: 8 GPUs)."""
    if ep < 2 or moe_tp % ep or max(tp, dp) != moe_tp * ep:
        return False
    named = _SAMPLE_LAYOUT.search(notes)
    if named:
        return (int(named.group(1)), int(named.group(2))) == (moe_tp, ep)
    return "db-dump/" in notes


def benchmark_concurrency(notes: str, batch: float, lay: dict) -> int:
    """Clients of the benchmark: the notes' 'fixed concurrency=C'. The `batch` column is the per-rank batch
    (per attention-DP rank; per decode worker and rank for P/D runs), so without a stated C it is batch x dp,
    times the decode workers for P/D (that product equals the stated C on all 128 MoE P/D rows stating both)."""
    stated = _note_number(notes, _CONCURRENCY)
    if stated:
        return stated
    if "prefill_replicas" in lay:
        return int(batch) * lay["decode_replicas"] * lay["dp"]
    return int(batch) * lay["dp"]


def _note_number(notes: str, pattern: re.Pattern) -> int | None:
    m = pattern.search(notes)
    return int(m.group(1)) if m else None


def pools(notes: str) -> dict | None:
    """{'prefill': (workers, layout), 'decode': (workers, layout)} of a disaggregated run, or None."""
    found = {}
    for role, workers, tp, pp, dp, moe_tp, ep in _POOL.findall(notes):
        tp_, moe_tp_, ep_ = int(tp), int(moe_tp), int(ep)
        dp_ = int(dp) if dp else max(1, moe_tp_ * ep_ // tp_)
        if moe_tp_ == 0 and ep_ == 0:  # experts' split not stated: the default, experts split like dense layers
            moe_tp_, ep_ = tp_ * dp_, 1
        found[role] = (int(workers) if workers else 0, {"tp": tp_, "pp": int(pp), "dp": dp_, "moe_tp": moe_tp_, "ep": ep_})
    return found if set(found) == {"prefill", "decode"} else None


ASSUMED_WORKERS = 1
# 10 x C requests per run, as fixed_concurrency_kwargs states, without its 4,000 cap: MoE runs reach C = 4,096, and
# 4,000 requests for 4,096 clients is one burst of prompts, not the benchmark's steady state (TTFT 27 s against a
# measured 4.3 s for the DeepSeek-R1 P/D run at C = 4096)
MAX_REQUESTS = 50_000


def assume_workers(found: dict) -> dict:
    """P/D pools whose worker counts the source leaves blank ('prefill workers= x (...)': 786 DeepSeek-R1 rows of
    aiconfigurator's 2026-03-25 and 2026-04-06 samples) under a stated assumption, ASSUMED_WORKERS of each: the
    smallest deployment of the stated layouts, as the 114 other MoE P/D rows of the same file state it ('1 x').
    These runs are scored in a group of their own (`run_moe_serving(assumed_workers=True)`), never in the P/D groups."""
    return {role: (workers or ASSUMED_WORKERS, lay) for role, (workers, lay) in found.items()}


def _disagg_kwargs(p: tuple, d: tuple) -> dict | None:
    """simulate() arguments for P/D pools with their own layouts (None: pipeline stages differ)."""
    (pw, pl), (dw, dl) = p, d
    if pl["pp"] != dl["pp"]:
        return None
    return dict(tp=dl["tp"], pp=dl["pp"], dp=dl["dp"], ep=dl["ep"], moe_tp=dl["moe_tp"], prefill_replicas=pw,
                decode_replicas=dw, prefill_tp=pl["tp"], prefill_dp=pl["dp"], prefill_ep=pl["ep"],
                prefill_moe_tp=pl["moe_tp"], decode_tp=dl["tp"])


def prefill_limit(framework: str, notes: str) -> dict:
    """The prefill pool's sequence limit of a TensorRT-LLM P/D run: the notes' prefill 'batch=B' is the context
    servers' max_batch_size, which aiconfigurator's generator writes as given (rule_plugin/trtllm.rule: 'prefill
    max_batch_size = max_batch_size if max_batch_size else 1') and TensorRT-LLM applies per attention-DP rank (each
    rank schedules its own batch). SGLang's prefill servers take it as --max-running-requests, which SGLang divides
    by the DP size (model_runner: max_running_requests // dp_size, 0 for batch 1 under DP): not applied there."""
    m = _PREFILL_BATCH.search(notes)
    if framework != "trtllm" or not m:
        return {}
    return {"prefill_max_num_seqs": int(m.group(1))}


def _exchange(framework: str, lay: dict) -> dict:
    """How an engine moves tokens between attention-DP ranks and experts on these HGX systems: TensorRT-LLM's
    MoE all-to-all needs MNNVL (GB200 NVL72) or TRTLLM_CAN_USE_DEEP_EP=1, which no row states, so it
    all-gathers and reduce-scatters (`fused_moe_wide_ep.py`, select_alltoall_method_type); SGLang and vLLM
    rows keep the DeepEP-style all-to-all ('normal')."""
    if framework == "trtllm" and max(lay["dp"], lay.get("prefill_dp", 1)) > 1:
        return {"moe_dispatch": "allgather"}
    return {}


def _quant(notes: str) -> str | None:
    m = re.search(r"gemm_quant=(\w+)", notes)
    return QUANT.get(m.group(1)) if m else None


def _formats(dtype: str, hw: str) -> dict:
    """dtype (and weight_dtype) arguments: 4-bit checkpoints on a chip without an FP4 tensor-core rate run
    weight-only (4-bit weights dequantised into 16-bit GEMMs), as vLLM and TensorRT-LLM run GPT-OSS's MXFP4
    experts on Hopper (Marlin / Triton w4a16 kernels)."""
    if dtype == "fp4" and not load_chip(hw).supports("fp4"):
        return {"dtype": "bf16", "weight_dtype": "fp4"}
    return {"dtype": dtype}


def concurrency_jobs(directory: Path, clients: dict[str, dict] | None = None, balance: dict | None = None,
                     assumed_workers: bool = False, engine_clients: dict[str, dict] | None = None,
                     campaign_clients: dict[str, dict] | None = None,
                     campaign_spreads: dict[str, float] | None = None) -> tuple[list[dict], list[str]]:
    """The MoE fixed-concurrency and P/D jobs, each under its framework's benchmark client: the setting
    bench/fit_serving_client.py fitted on the dense rows of the same silicon samples (so every MoE row is
    held out from that fit), the exact client for a framework without one; a campaign whose own client latency
    bench/fit_moe_serving_client.py fitted on the MoE rows' fit half (`campaign_clients`, default the stored
    fit, {} for none) runs under that one; an engine whose MoE runs have an output spread fitted with its eager
    prompt iterations (`engine_clients`, default bench/fit_moe_prefill.py's fit, {} for none) takes that spread on
    top, unless its campaign has an output spread of its own (`campaign_spreads`, default the stored fit of
    bench/fit_moe_serving_client.py, {} for none). Aggregated TensorRT-LLM attention-DP runs also take the
    attention-DP context balancing `balance` (default: bench/fit_attention_dp_balance.py's choice, none without its
    file; {} for none; simulate() arguments for every model, or per model name: `balance_for`). `assumed_workers`:
    P/D runs without stated worker counts run under `assume_workers` (else they are listed as not expressed)."""
    jobs, failed = _jobs(directory, assumed_workers)
    clients = fitted_clients() if clients is None else clients
    campaign_clients = fitted_moe_campaign_clients(clients) if campaign_clients is None else campaign_clients
    engine_clients = fitted_engine_clients() if engine_clients is None else engine_clients
    campaign_spreads = fitted_moe_campaign_spreads() if campaign_spreads is None else campaign_spreads
    for job in jobs:
        client = client_of(job["meta"], clients, {}, campaign_clients)
        client = {**client, **engine_clients.get(job["meta"]["framework"], {})}  # the spread fitted with the engine's prefill
        own = campaign_spreads.get(job["meta"]["campaign"])
        if own is not None:  # the campaign's own benchmark client spread, fitted with its latency
            client["output_variation_frac"] = own
        job["kwargs"] = apply_client(job["kwargs"], client)
    balance = fitted_balance() if balance is None else balance
    for job in jobs:
        if balance and is_balanced_kind(job["meta"]):
            job["kwargs"].update(balance_for(balance, job["kwargs"]["model"]))
    return jobs, failed


def job_abs_errors(runs: list[dict], workers: int) -> list[dict[str, float]]:
    """|predicted / measured - 1| of TTFT and TPOT for each job, simulated over `workers` processes: the score
    every MoE serving fit script (attention-DP balance, campaign clients) compares settings by."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_job, runs, chunksize=1))
    return [{metric: abs(res[metric] / value - 1.0) for metric, (value, _) in job["measured"].items()
             if not res["error"] and metric in ("ttft_ms", "tpot_ms")} for job, res in zip(runs, results)]


BALANCE_PATH = Path(__file__).with_name("data") / "attention_dp_balance.yaml"
ENGINE_CLIENTS_PATH = Path(__file__).with_name("data") / "moe_engine_clients.yaml"


def fitted_engine_clients() -> dict[str, dict]:
    """Per framework, the benchmark-client output spread of its MoE runs, fitted with the engine's eager prompt
    iterations by bench/fit_moe_prefill.py ({} without the file: the frameworks' clients)."""
    if not ENGINE_CLIENTS_PATH.exists():
        return {}
    rows = (yaml.safe_load(ENGINE_CLIENTS_PATH.read_text()) or {}).get("frameworks") or {}
    return {name: {"output_variation_frac": float(row["output_variation_frac"])} for name, row in rows.items()
            if "output_variation_frac" in row}


MOE_CLIENTS_PATH = Path(__file__).with_name("data") / "moe_serving_clients.yaml"


def fitted_moe_campaign_clients(clients: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per MoE measurement campaign (`accuracy_serving.campaign`) that bench/fit_moe_serving_client.py gave a latency
    of its own: its framework's benchmark client (`clients`, default the fitted ones) with that request latency;
    {} without the file."""
    if not MOE_CLIENTS_PATH.exists():
        return {}
    clients = fitted_clients() if clients is None else clients
    data = yaml.safe_load(MOE_CLIENTS_PATH.read_text()) or {}
    return {name: {**EXACT_CLIENT, **clients.get(row["framework"], {}), "request_latency_ms": float(row["request_latency_ms"])}
            for name, row in (data.get("campaigns") or {}).items() if row.get("request_latency_ms") is not None}


def fitted_moe_campaign_spreads() -> dict[str, float]:
    """Per MoE measurement campaign that bench/fit_moe_serving_client.py gave an output spread of its own, that spread
    (`output_variation_frac`: how far its closed-loop clients drift out of lock-step); {} without the file."""
    if not MOE_CLIENTS_PATH.exists():
        return {}
    data = yaml.safe_load(MOE_CLIENTS_PATH.read_text()) or {}
    return {name: float(row["output_variation_frac"]) for name, row in (data.get("campaigns") or {}).items()
            if row.get("output_variation_frac") is not None}


def fitted_balance() -> dict:
    """The fitted TensorRT-LLM attention-DP balancing: simulate() arguments for every model, or per model name when the
    chosen candidate sets each model's own (bench/fit_attention_dp_balance.py 'per_model'); {} without the file or
    when off."""
    if not BALANCE_PATH.exists():
        return {}
    row = (yaml.safe_load(BALANCE_PATH.read_text()) or {}).get("trtllm", {})
    if "per_model" in row:
        return {name: _balance_args(setting) for name, setting in row["per_model"].items()}
    return _balance_args(row)


def _balance_args(row: dict) -> dict:
    if not row.get("adp_timeout_iters"):
        return {}
    return {"adp_timeout_iters": int(row["adp_timeout_iters"]), "adp_batching_wait_iters": int(row["adp_batching_wait_iters"])}


def balance_for(balance: dict, model: str) -> dict:
    """The simulate() arguments of `balance` (one setting for every model: its arguments; or model name -> arguments)
    for a run of `model` ({} for a model the per-model setting does not name)."""
    if "adp_timeout_iters" in balance:
        return balance
    return balance.get(model, {})


def is_balanced_kind(meta: dict) -> bool:
    """An aggregated TensorRT-LLM run with attention-DP started by hand (a TensorRT-LLM release image), the runs
    whose balancing is fitted. Runs deployed through Dynamo (notes: image=nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime)
    run the engine configuration aiconfigurator's generator writes, whose TensorRT-LLM templates
    (generator/config/backend_templates/trtllm/extra_engine_args.*.yaml.j2) set no attention_dp_config: balancing
    off, TensorRT-LLM's default."""
    lay = meta["layout"]
    return meta["framework"] == "trtllm" and "prefill_replicas" not in lay and lay["dp"] > 1 and not meta.get("dynamo")


def relabelled_duplicates(rows: pd.DataFrame) -> pd.Series:
    """Rows whose measurement also appears, to the last digit, on a run of the same model, chip, lengths,
    concurrency and metric with FEWER GPUs: True for the larger-GPU copy, which is not scored.

    shared/calibration's aggregated MoE rows from aiconfigurator's 2026-04-06 source repeat 74 measurements of
    the 2026-03-25 source's 4- and 8-GPU runs (ids '..._tp8_0_ep8_0_...' there, '..._tp8_ep8_...' here) under
    16- and 64-GPU layouts (e.g. attention_dp=64 with moe_tp=8 x moe_ep=8 for an 8-GPU DEP8 run; tp=64 for
    DeepSeek's 128 heads): one measurement cannot be both, and its id names the 8-GPU layout. The model is compared
    as the architecture it maps to: the 2026-04-27 db-dump repeats the 2026-03-25 SGLang DeepSeek-R1 runs (case ids
    'dsr1_...') under 16- and 64-GPU layouts with the model named DeepSeek-V3. A row that states no GPU count
    (n_accel 0: P/D runs without worker counts) is no smaller copy of anything."""
    model = rows["model"].map(MOE_MODELS).fillna(rows["model"])
    key = model.astype(str) + "|" + rows[["hardware", "input_len", "output_len", "metric"]].astype(str).agg("|".join, axis=1)
    key = key + "|" + rows["notes"].str.extract(_CONCURRENCY, expand=False).fillna("") + "|" + rows["value"].round(4).astype(str)
    fewest = rows["n_accel"].where(rows["n_accel"] > 0).groupby(key).transform("min")
    return rows["n_accel"] > fewest


def _jobs(directory: Path, assumed_workers: bool = False) -> tuple[list[dict], list[str]]:
    rows = pd.read_csv(directory / "e2e_aiconfigurator_silicon.csv")
    rows = rows[rows["model"].str.contains(MOE_PATTERN, case=False, na=False)]
    jobs: dict[tuple, dict] = {}
    failed = []
    duplicate = relabelled_duplicates(rows)
    for _, r in rows[duplicate].iterrows():
        failed.append(f"{r['case_id']}: the same measurement as a run with fewer GPUs, relabelled with a "
                      f"{int(r['n_accel'])}-GPU layout (`relabelled_duplicates`)")
    for _, r in rows[~duplicate].iterrows():
        notes = str(r["notes"])
        model, hw, dtype = MOE_MODELS.get(r["model"]), HARDWARE.get(r["hardware"]), _quant(notes)
        assumed = False
        if r["scenario"] == "server-disagg":
            pd_pools = pools(notes)
            if pd_pools and not (pd_pools["prefill"][0] and pd_pools["decode"][0]):
                if not assumed_workers:
                    failed.append(f"{r['case_id']}: P/D worker counts not stated in the source ('workers= x'); "
                                  f"simulated only under an assumed count (assumed_workers=True, `assume_workers`)")
                    continue
                pd_pools, assumed = assume_workers(pd_pools), True
            lay = _disagg_kwargs(pd_pools["prefill"], pd_pools["decode"]) if pd_pools else None
        else:
            lay = layout(notes)
        if model is None or hw is None or dtype is None or lay is None:
            failed.append(f"{r['case_id']}: unknown model/hardware/format/layout ({r['model']}, {r['hardware']})")
            continue
        fw = str(r["framework"]).split()[0]
        if _note_number(notes, _CONCURRENCY) is None and pd.isna(r["batch"]):
            failed.append(f"{r['case_id']}: neither the benchmark concurrency nor the per-rank batch is stated")
            continue
        if _UNSTATED_CONCURRENCY.search(notes):
            failed.append(f"{r['case_id']}: no concurrency stated (the notes say 'at fixed concurrency' without a "
                          f"value, the run id's concurrency field is empty: `_UNSTATED_CONCURRENCY`)")
            continue
        c, isl, osl = benchmark_concurrency(notes, r["batch"], lay), int(r["input_len"]), int(r["output_len"])
        spec = speculative_recipe(r["framework"], model, lay)
        kwargs = fixed_concurrency_kwargs(model, hw, fw, c, isl, osl, **lay, **_checkpoint_formats(model, dtype, hw), kv_dtype="fp8",
                                          **_exchange(fw, lay), **engine_release(r["framework"]), **spec,
                                          **(prefill_limit(fw, notes) if "prefill_replicas" in lay else {}))
        kwargs["num_requests"] = min(10 * c, MAX_REQUESTS)
        kwargs.update(mtp_script_limits(spec, lay, c, isl))
        # a speculative run is another configuration than the same layout without it (the key of a run without
        # speculation is unchanged, and with it its fit half, `accuracy_serving.job_half`)
        key = (model, hw, dtype, fw, tuple(lay.items()), c, isl, osl, assumed) + ((tuple(spec.items()),) if spec else ())
        add_measured(jobs, key, kwargs,
                     {"framework": fw, "device": hw, "model": model, "layout": lay, "concurrency": c,
                      "dynamo": "ai-dynamo/tensorrtllm-runtime" in notes, "workers_assumed": assumed,
                      "campaign": campaign(r), "speculative": bool(spec), "release": str(r["framework"]),
                      "moe_quant": _moe_quant(notes)}, r)
    kept, below = below_stated_load(list(jobs.values()))
    kept, unsteady = above_higher_load_ttft(kept)
    kept, stalled = first_token_stalls(kept)
    kept, flat = prompt_insensitive_ttft(kept)
    return kept, failed + below + unsteady + stalled + flat + repeat_reasons(jobs.values())


def _moe_quant(notes: str) -> str | None:
    m = re.search(r"moe_quant=(\w+)", notes)
    return m.group(1) if m else None


# The TensorRT-LLM release image that InferenceMAX (github.com/SemiAnalysisAI/InferenceX) gave its DeepSeek-R1 B200
# multi-token-prediction sweeps and no other: its perf-changelog.yaml moved 'dsr1-fp4-b200-trt-mtp' to
# release:1.2.0rc6.post3 (PR #642) and the plain configurations 'dsr1-fp4-b200-trt' / 'dsr1-fp8-b200-trt' to
# release:1.2.0rc6.post2 (PRs #620, #594). aiconfigurator's 2026-03-25 / 2026-04-06 silicon samples repeat those sweeps
# (the same ISL/OSL pairs 1k1k, 1k8k, 8k1k, the same TP / EP / attention-DP cells per concurrency) with the image in
# their notes and no word of speculation; every 1.2.0rc6.post3 row of e2e_aiconfigurator_silicon.csv is such a
# DeepSeek-R1 B200 run. Measured alike, the same cell is ~1.6x faster on the post3 image at decode-heavy lengths
# (attention-DP 8, C = 128, 1024/8192: TPOT 11.67 ms on post3, 19.23 ms on post2), which is MTP's gain, not a patch
# release's. 1.1.0rc2.post2 served both kinds of sweep, so its rows say nothing and run without speculation.
MTP_FRAMEWORK = "trtllm 1.2.0rc6.post3"


def speculative_recipe(framework: str, model: str, lay: dict) -> dict:
    """simulate()'s speculative arguments of a run that InferenceMAX's MTP benchmark scripts made ({} for any other):
    DeepSeek's MTP layer drafting 1 token under attention-DP, 3 otherwise (benchmarks/dsr1_fp4_b200_trt_mtp.sh and
    dsr1_fp8_b200_trt_mtp.sh: 'MTP=1' when DP_ATTENTION is true, else 'MTP=3', as num_nextn_predict_layers), at the
    acceptance bench/fit_mtp_acceptance.py fitted on half of these runs (without its file, the model's published one,
    execution.speculative.MTP_DEFAULTS). P/D runs are not InferenceMAX's."""
    if str(framework).strip() != MTP_FRAMEWORK or model != "deepseek-v3" or "prefill_replicas" in lay:
        return {}
    return {"spec_method": "mtp", "spec_tokens": 1 if lay["dp"] > 1 else 3, **fitted_mtp_acceptance()}


def mtp_script_limits(spec: dict, lay: dict, concurrency: int, input_len: int) -> dict:
    """The server limits InferenceMAX's DeepSeek-R1 B200 MTP scripts start trtllm-serve with ({} for a run without
    `speculative_recipe`'s speculation): --max_batch_size C / TP under attention-DP (TP = the GPUs = the dp ranks here;
    a per-rank limit, as TensorRT-LLM schedules each attention-DP rank's batch alone), C otherwise; --max_num_tokens
    ((MTP + 1) x max_batch_size + ISL + 64 + 63) // 64 x 64 with no floor (benchmarks/dsr1_fp4_b200_trt_mtp.sh
    @13dd0c2, dsr1_fp8_b200_trt_mtp.sh @111f031 of github.com/SemiAnalysisAI/InferenceX; the plain scripts,
    dsr1_fp4_b200_trt.sh, raise theirs to at least 8192, the default `_engine_overrides` keeps). Without chunked
    prefill that budget holds one prompt beside a rank's decode tokens, so each rank starts at most one prompt per
    iteration and the others wait for a later one (under attention-DP balancing, for its next release)."""
    if not spec:
        return {}
    batch = max(1, concurrency // lay["dp"]) if lay["dp"] > 1 else concurrency
    return {"max_num_seqs": batch,
            "max_batched_tokens": ((spec["spec_tokens"] + 1) * batch + input_len + 64 + 63) // 64 * 64}


MTP_ACCEPTANCE_PATH = Path(__file__).with_name("data") / "mtp_acceptance.yaml"


def fitted_mtp_acceptance() -> dict:
    """{'spec_acceptance': A} from bench/fit_mtp_acceptance.py's fit ({} without the file: the model's published
    acceptance)."""
    if not MTP_ACCEPTANCE_PATH.exists():
        return {}
    row = yaml.safe_load(MTP_ACCEPTANCE_PATH.read_text()) or {}
    return {"spec_acceptance": float(row["acceptance_frac"])} if "acceptance_frac" in row else {}


def _checkpoint_formats(model: str, dtype: str, hw: str, blackwell_mxfp8: bool = False) -> dict:
    """dtype (and weight_dtype) of a trtllm.csv row: its precision, except GPT-OSS, whose checkpoint keeps MXFP4
    experts whatever section of the tables it is listed in. On Hopper the tables list it as FP8 and note 'MoE backend
    (Hopper: TRITON for GPT-OSS)': TensorRT-LLM's Triton MoE runs the MXFP4 experts against 16-bit activations
    (triton_kernels matmul_ogs, as vLLM's Hopper MXFP4 x BF16 path), which `_formats` expresses as weight-only FP4;
    FP8 expert weights would stream twice the bytes at the FP8 tensor-core rate, which no Hopper GPT-OSS kernel has
    (TensorRT-LLM examples/models/core/gpt_oss/README.md, 'MoE Support Matrix': Hopper bf16 x mxfp4 on HGMMA; fp8 x
    mxfp4 'not enabled'). The fixed-concurrency TensorRT-LLM H100 GPT-OSS samples of e2e_aiconfigurator_silicon.csv
    say gemm_quant=fp8, moe_quant=fp8 and ran the same openai/gpt-oss-120b checkpoint, so they take this too.

    `blackwell_mxfp8`: on a chip with FP4 tensor cores (Blackwell) TensorRT-LLM runs those MXFP4 experts against
    MXFP8 activations, never FP4 ones (the same support matrix: 'Blackwell | mxfp8 | mxfp4 | CUTLASS, TRTLLM'; 'All
    the other weights are in bf16'), so the row takes dtype fp8 with FP4 weights: the 'w4a8' kernel
    (`cost.moe.moe_kind`) that B200's ops_moe.csv rows measure (TensorRT-LLM's w4a8_mxfp4_mxfp8), at the FP8
    tensor-core rate, where dtype fp4 costs an NVFP4 x NVFP4 kernel at twice that rate. The trtllm-bench rows take
    it (`throughput_jobs`); the fixed-concurrency jobs keep dtype fp4 until their campaign clients, fitted under it,
    are refitted (see the moeoffline2 report)."""
    if model.startswith("gpt-oss") and blackwell_mxfp8 and load_chip(hw).supports("fp4"):
        return {"dtype": "fp8", "weight_dtype": "fp4"}
    if model.startswith("gpt-oss") and dtype == "fp8":
        return _formats("fp4", hw)
    return _formats(dtype, hw)


def offline_kv_dtype(model: str, dtype: str, hw: str) -> str:
    """KV-cache format of a trtllm-bench MoE row: FP8 (the ModelOpt FP8 / NVFP4 checkpoints' kv_cache_quant_algo, and
    the DeepSeek-R1 / GPT-OSS options' kv_cache_config dtype fp8), 16 bit for FP16 rows, and 16 bit for GPT-OSS on a
    chip without FP4 tensor cores: the developer-guide perf overview's GPT-OSS llm_options say 'kv_cache_config: dtype:
    fp8  # Hopper: use auto', and 'auto' takes the checkpoint's KV format, which openai/gpt-oss-* (MXFP4 experts, no
    KV quantisation in its quantization_config) leaves 16-bit (docs/source/developer-guide/perf-overview.md @03e27c7)."""
    if dtype == "fp16":
        return "fp16"
    if model.startswith("gpt-oss") and not load_chip(hw).supports("fp4"):
        return "bf16"
    return "fp8"


# The developer-guide perf overview's DeepSeek-R1 llm_options also set attention_dp_config (enable_balance true,
# timeout_iters 60, batching_wait_iters 0; docs/source/developer-guide/perf-overview.md @03e27c7). It is not applied
# here: under an offline run, where every rank always has queued prompts, the simulator's balance gate
# (serving/attention_dp.py) holds them so often that the 1000/1000 run's mean batch falls from 315 to 32 of the 384
# allowed per rank (1,186 predicted against 6,463 measured output tokens/s per GPU), which a saturated trtllm-bench run
# does not do; the gate's offline behaviour is for its owner to examine (see the moeoffline report).


def offline_limits(kw: dict) -> dict:
    """max_batch_size / max_num_tokens of a trtllm-bench MoE row: trtllm-bench's PyTorch-backend heuristic per
    attention-DP rank (bench/trtllm_bench_moe.py; BuildConfig's defaults for a checkpoint whose quantisation it does
    not tune, GPT-OSS's MXFP4), or for the TensorRT-engine releases accuracy_serving's `_trtllm_bench_limits`."""
    from tokenfab.serving.engines.trtllm import is_engine_runtime

    if is_engine_runtime(kw.get("engine_version")):
        return _trtllm_bench_limits(kw)
    return trtllm_bench_moe_limits(kw, tuned=checkpoint_quant_method(kw["model"]) != "mxfp4")


def throughput_jobs(directory: Path) -> tuple[list[dict], list[str]]:
    rows = pd.read_csv(directory / "trtllm.csv")
    rows = rows[rows["model"].str.contains(MOE_PATTERN, case=False, na=False)]
    jobs, failed = [], []
    for _, r in rows.iterrows():
        model, hw = MOE_MODELS.get(r["model"]), HARDWARE.get(r["hardware"])
        dtype = {"FP8": "fp8", "FP16": "fp16", "FP4": "fp4", "BF16": "bf16"}.get(str(r["precision"]).upper())
        if "trtllm-bench" not in str(r["framework"]):
            failed.append(f"{r['case_id']}: static-batch table (bench/accuracy.py end-to-end group predicts it)")
            continue
        if model is None or hw is None or dtype is None:
            failed.append(f"{r['case_id']}: no bundled model/chip/format for {r['model']} on {r['hardware']} ({r['precision']})")
            continue
        tp = int(r["tp"]) if not pd.isna(r["tp"]) else 1
        pp = int(r["pp"]) if not pd.isna(r["pp"]) else 1
        ep = int(r["ep"]) if not pd.isna(r["ep"]) else 1
        dp = ep // tp if ep > tp and ep % tp == 0 else 1  # EP wider than TP: attention-DP ranks (TRT-LLM's attention_dp)
        if "attention DP enabled" in str(r["notes"]) and tp > 1:
            # v1.0-era tables: "TP8 PP1 (MoE: --ep set but value not listed; attention DP enabled)": TRT-LLM's tp
            # with attention DP is tp ranks of attention-DP (tp 1, dp tp here). The unlisted --ep is an assumption:
            # ep = dp (experts spread over the whole group, no MoE-TP); the table does not state it.
            # The attention-DP reading is itself a judgement: that perf overview (docs/source/performance/
            # perf-overview.md @00f3768) prints its MoE llm_options.yml with enable_attention_dp nested under
            # cuda_graph_config, which CudaGraphConfig (a StrictBaseModel, extra fields forbidden) would refuse, so
            # the file the runs used is not the one printed. Read instead as attention TP with EP = TP, the 108
            # rows of that release score 41.0% MAPE against 29.7% (B200 Qwen3-235B -34% median, RTX PRO 6000
            # Qwen3-30B DEP2-8 -37% to -59%): the data say attention-DP ran
            tp, dp = 1, tp
            ep = dp if pd.isna(r["ep"]) else ep
        kwargs = dict(model=model, hardware=hw, tp=tp, pp=pp, ep=ep, dp=dp,
                      **_checkpoint_formats(model, dtype, hw, blackwell_mxfp8=True),
                      **_exchange("trtllm", {"dp": dp}), kv_dtype=offline_kv_dtype(model, dtype, hw), offline=True,
                      input_len=int(r["input_len"]), output_len=int(r["output_len"]), engine="trtllm", **_offline_settings(r),
                      **_engine_overrides("trtllm", int(r["input_len"]), 0), **engine_release(r["framework"]))
        try:  # trtllm-bench sizes max_batch_size / max_num_tokens from its own estimate of the KV room
            kwargs.update(offline_limits(kwargs))
        except TokenfabError:
            pass  # the deployment does not fit: simulate reports why
        jobs.append({
            "kwargs": kwargs,
            "meta": {"case_id": r["case_id"], "device": hw, "model": model, "per_gpu": str(r["metric"]).endswith("per_gpu"),
                     "n_accel": int(r["n_accel"]), "measured": float(r["value"])},
        })
    return jobs, failed


def published_jobs(directory: Path) -> list[dict]:
    """SGLang's 96 x H100 large-scale-EP blog: the prefill nodes' input tokens/s per node for 2000-token inputs,
    as a saturated prefill pool (offline, one output token) of the blog's prefill layout, EP32 over 4 nodes with
    attention-DP (tp 1, dp = ep = 32), DeepEP normal dispatch, FP8 weights and KV, and two-batch overlap, which the
    blog's runs enabled (`execution.overlap`). The blog's prefill command sets --chunked-prefill-size 524288, which
    SGLang splits over the 32 attention-DP ranks (16,384 tokens per rank per iteration; lmsys.org blog 2025-05-05
    large-scale-ep, "prefill" reproduction flags). The same flags run EPLB with 32 redundant experts
    (--ep-num-redundant-experts 32 --eplb-algorithm deepseek, expert placement from the recorded workload's loads):
    256 + 32 slots, 9 per rank (`ParallelConfig.num_redundant_experts`)."""
    pub = pd.read_csv(directory / "e2e_published.csv")
    rows = pub[pub["model"].str.contains("DeepSeek", na=False) & pub["scenario"].str.contains("prefill", na=False)]
    jobs = []
    for _, r in rows.iterrows():
        isl, ranks = int(r["input_len"]), 32
        jobs.append({
            "kwargs": dict(model="deepseek-v3", hardware="h100-sxm", tp=1, dp=ranks, ep=ranks, dtype="fp8", kv_dtype="fp8",
                           engine="sglang", offline=True, num_requests=40 * ranks, input_len=isl, output_len=1,
                           two_batch_overlap=True, max_batched_tokens=524288 // ranks, num_redundant_experts=32),
            "meta": {"case_id": r["case_id"], "device": "h100-sxm", "model": "deepseek-v3", "per_gpu": False, "n_accel": 1,
                     "measured": float(r["value"]), "scale": isl / (ranks // int(r["n_accel"])),
                     "group": "moe-serving:prefill input tokens/s per node (SGLang large-scale EP)", "kind": "sglang"},
        })
    return jobs


def _not_expressed(directory: Path) -> list[str]:
    out = []
    ml = pd.read_csv(directory / "mlperf.csv")
    for _, r in ml[ml["model"].str.contains(MOE_PATTERN, case=False, na=False)].iterrows():
        out.append(f"{r['case_id']}: MLPerf states no prompt lengths (only mean tokens per sample)")
    pub = pd.read_csv(directory / "e2e_published.csv")
    for _, r in pub[pub["model"].str.contains("DeepSeek", na=False)].iterrows():
        if "prefill" not in str(r["scenario"]):  # the prefill node's figure is a job (`published_jobs`)
            out.append(f"{r['case_id']}: per-node decode throughput with no stated batch or output length "
                       "(layout expressible: tp 1, dp = ep = 72; the load is not)")
    return out


def _job(job: dict) -> dict:
    """accuracy_serving's job runner; a simulator invariant failure becomes this row's failure reason
    (a bug to fix in the simulator, not an accuracy figure)."""
    try:
        return _concurrency_job(job)
    except AssertionError as exc:
        return {**job["meta"], "error": f"simulator invariant failed: {exc}"}


def spread(jobs: list[dict], limit: int | None) -> list[dict]:
    """At most `limit` jobs, spread evenly over the list (which is grouped by model and layout)."""
    if limit is None or len(jobs) <= limit:
        return jobs
    step = len(jobs) / limit
    return [jobs[int(i * step)] for i in range(limit)]


def run_moe_serving(directory: Path, limit: int | None = None, workers: int = 2,
                    assumed_workers: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """Every expressible MoE serving row simulated (`assumed_workers`: also the P/D runs without stated worker
    counts, in groups of their own; they take minutes, most of them overloaded under one decode worker)."""
    conc, failed = concurrency_jobs(directory, assumed_workers=assumed_workers)
    thr, failed2 = throughput_jobs(directory)
    thr += published_jobs(directory)
    failed += failed2 + _not_expressed(directory)
    conc_run, thr_run = spread(conc, limit), spread(thr, limit)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        conc_res = list(pool.map(_job, conc_run, chunksize=1))
        thr_res = list(pool.map(_job, thr_run, chunksize=1))
    rows = []
    for job, res in zip(conc_run, conc_res):
        lay = job["meta"]["layout"]
        kind = "attention-DP" if lay["dp"] > 1 else ("EP" if lay["ep"] > 1 else "TP")
        kind = f"P/D, decode {kind}" if "prefill_replicas" in lay else kind
        if job["meta"].get("workers_assumed"):
            kind = f"{kind}; worker counts not stated, {ASSUMED_WORKERS} + {ASSUMED_WORKERS} assumed"
        for metric, (value, case_id) in job["measured"].items():
            if res["error"]:
                failed.append(f"{case_id}: {res['error']}")
                continue
            rows.append({"group": f"moe-serving:{metric} ({kind})", "device": res["device"], "kind": res["framework"],
                         "case_id": case_id, "measured": value, "predicted": res[metric.replace('_ms', '_ms')]})
    for job, res in zip(thr_run, thr_res):
        meta = job["meta"]
        if res["error"]:
            failed.append(f"{meta['case_id']}: {res['error']}")
            continue
        pred = res["throughput"] * meta.get("scale", 1.0) / (meta["n_accel"] if meta["per_gpu"] else 1)
        rows.append({"group": meta.get("group", "moe-serving:offline output tokens/s (TRT-LLM)"), "device": meta["device"],
                     "kind": meta.get("kind", "trtllm"),
                     "case_id": meta["case_id"], "measured": meta["measured"], "predicted": pred})
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["error_frac"] = frame["predicted"] / frame["measured"] - 1.0
    skipped_by_limit = len(conc) - len(conc_run) + len(thr) - len(thr_run)
    if skipped_by_limit:
        failed.append(f"{skipped_by_limit} expressible jobs not simulated in this run (--serving-limit)")
    return frame, failed
