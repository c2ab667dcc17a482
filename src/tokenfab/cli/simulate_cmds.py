"""`tokenfab simulate`: serve a stream of requests on a deployment."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokenfab import api
from tokenfab.cli.format import banded, rate
from tokenfab.cli.main import app, emit_json, err, out
from tokenfab.table_io import TABLE_SUFFIXES, check_output_path, write_table

Opt = typer.Option


@app.command()
def simulate(
    model: Annotated[str, Opt("--model", "-m", help="Bundled model name or path to a config.json.")] = "llama-3.1-8b",
    hardware: Annotated[str, Opt("--hardware", "-H", help="Chip name or YAML path.")] = "h100-sxm",
    tp: Annotated[int, Opt(help="Tensor-parallel degree per replica.")] = 1,
    pp: Annotated[int, Opt(help="Pipeline stages per replica.")] = 1,
    ep: Annotated[int, Opt(help="Expert-parallel degree per replica.")] = 1,
    dp: Annotated[int, Opt(help="Attention data-parallel ranks per replica (MoE: ranks share the experts, ep x moe-tp = tp x dp).")] = 1,
    moe_tp: Annotated[int | None, Opt("--moe-tp", help="Tensor-parallel split inside each expert (default tp x dp / ep).")] = None,
    moe_dispatch: Annotated[str, Opt(help="MoE token exchange with attention-DP: normal or low-latency (DeepEP all-to-all), or allgather (all-gather / reduce-scatter, TensorRT-LLM without MNNVL or DeepEP).")] = "normal",
    two_batch_overlap: Annotated[bool, Opt("--two-batch-overlap", help="Run MoE steps as two micro-batches whose expert all-to-all hides under the other's compute (SGLang --enable-two-batch-overlap); needs --ep > 1.")] = False,
    num_redundant_experts: Annotated[int, Opt("--num-redundant-experts", help="Extra expert slots over the EP group, filled with copies of the most loaded experts and placed by load (DeepSeek's EPLB; SGLang --ep-num-redundant-experts, vLLM --num-redundant-experts); experts + slots must be a multiple of --ep. Default 0: no EPLB, as the engines default to.")] = 0,
    dtype: Annotated[str, Opt(help="Compute/activation format.")] = "bf16",
    weight_dtype: Annotated[str | None, Opt(help="Weight format (weight-only quantisation).")] = None,
    kv_dtype: Annotated[str | None, Opt(help="KV-cache format.")] = None,
    trace: Annotated[str | None, Opt(help="Replay a trace file (Azure CSV or Mooncake JSONL).")] = None,
    trace_format: Annotated[str, Opt(help="auto, azure or mooncake.")] = "auto",
    rate_scale: Annotated[float, Opt(help="Trace: arrival-rate multiplier.")] = 1.0,
    trace_start: Annotated[float, Opt(help="Trace: start of the time window, s.")] = 0.0,
    trace_duration: Annotated[float | None, Opt(help="Trace: length of the time window, s.")] = None,
    rate_: Annotated[float | None, Opt("--rate", help="Open loop: requests per second (Poisson).")] = None,
    burstiness: Annotated[float, Opt(help="Open loop: coefficient of variation of gaps (gamma; 1 = Poisson).")] = 1.0,
    concurrency: Annotated[int | None, Opt(help="Closed loop: clients, each sending its next request when the last finishes.")] = None,
    think_time_ms: Annotated[float, Opt(help="Closed loop: mean (exponential) pause before a client's next request, ms.")] = 0.0,
    request_latency_ms: Annotated[float, Opt(help="Latency of each request between client and engine (network, HTTP, "
                                                  "router hop), part of the measured TTFT, ms.")] = 0.0,
    adp_timeout_iters: Annotated[int, Opt(help="TensorRT-LLM attention-DP balancing: iterations prompts wait for every "
                                               "rank to have one (attention_dp_config timeout_iters; 0 = balance off).")] = 0,
    adp_batching_wait_iters: Annotated[int, Opt(help="TensorRT-LLM attention-DP balancing: iterations balanced prompts wait "
                                                     "to batch more (batching_wait_iters).")] = 0,
    batch_wait_timeout_iters: Annotated[int, Opt(help="trtllm: iterations prompts arriving during decodes wait to batch "
                                                      "more of them (batch_wait_timeout_iters; 0 = off).")] = 0,
    batch_wait_max_tokens_ratio: Annotated[float, Opt(help="trtllm: prompts stop waiting once the iteration's tokens reach "
                                                           "this fraction of the token budget (0 = off).")] = 0.0,
    offline: Annotated[bool, Opt(help="All requests at t = 0 (max-throughput benchmark).")] = False,
    num_requests: Annotated[int | None, Opt(help="Requests to measure (default: a trace replays whole; synthetic traffic 1,000).")] = None,
    warmup_requests: Annotated[int, Opt(help="Requests sent first and left out of the metrics (benchmark warm-up).")] = 0,
    engine: Annotated[str, Opt(help="Serving engine whose scheduler and memory policy to model: vllm (default), sglang, trtllm.")] = "vllm",
    engine_version: Annotated[str | None, Opt(help="Engine release whose defaults differ (sglang: 0.5.0-0.5.3 or 0.5.4 on; "
                                                   "trtllm: 0.12-0.16 TensorRT engine or 0.20/0.21/1.x PyTorch backend, 1.0 "
                                                   "with its server's fitted token delivery; default: the newest "
                                                   "modelled).")] = None,
    cuda_graph_max_batch: Annotated[int | None, Opt(help="trtllm: largest decode batch captured as a CUDA graph "
                                                         "(cuda_graph_config.max_batch_size; default 128).")] = None,
    cuda_graph_batch_sizes: Annotated[str | None, Opt(help="trtllm: decode batch sizes captured as CUDA graphs, comma "
                                                           "separated (cuda_graph_config.batch_sizes; 'none': no graphs).")] = None,
    spec_method: Annotated[str | None, Opt(help="Speculative decoding: draft, eagle or mtp.")] = None,
    spec_tokens: Annotated[int, Opt(help="Speculative decoding: tokens drafted per step (k).")] = 1,
    spec_acceptance: Annotated[float | None, Opt(help="Speculative decoding: per-token acceptance (default: the model's published one).")] = None,
    spec_draft_model: Annotated[str | None, Opt(help="Speculative decoding: the draft model (--spec-method draft).")] = None,
    input_len: Annotated[int, Opt(help="Prompt tokens (fixed).")] = 1024,
    output_len: Annotated[int, Opt(help="Output tokens (fixed).")] = 256,
    input_dist: Annotated[str | None, Opt(help="fixed:N | uniform:LO,HI | normal:MEAN,STD | lognormal:MEAN,STD | empirical:FILE")] = None,
    output_dist: Annotated[str | None, Opt(help="As --input-dist, for outputs.")] = None,
    shared_prefix: Annotated[int, Opt(help="Synthetic: tokens of a system prompt shared by all requests.")] = 0,
    seed: Annotated[int, Opt(help="Random seed.")] = 0,
    slo_ttft_ms: Annotated[float | None, Opt("--slo-ttft-ms", "--slo-ttft", help="TTFT target for goodput, ms.")] = None,
    slo_tpot_ms: Annotated[float | None, Opt("--slo-tpot-ms", "--slo-tpot", help="TPOT target for goodput, ms.")] = None,
    replicas: Annotated[int, Opt(help="Replicas behind the router.")] = 1,
    router: Annotated[str, Opt(help="round-robin, least-outstanding or prefix-affinity.")] = "least-outstanding",
    prefill_replicas: Annotated[int, Opt(help="P/D disaggregation: prefill replicas.")] = 0,
    decode_replicas: Annotated[int, Opt(help="P/D disaggregation: decode replicas.")] = 0,
    prefill_tp: Annotated[int | None, Opt(help="P/D: TP of prefill replicas (default --tp).")] = None,
    decode_tp: Annotated[int | None, Opt(help="P/D: TP of decode replicas (default --tp).")] = None,
    prefill_max_num_seqs: Annotated[int | None, Opt(help="P/D: sequence limit of each prefill replica (per attention-DP "
                                                         "rank; default --max-num-seqs).")] = None,
    prefill_dp: Annotated[int | None, Opt(help="P/D: attention-DP ranks of prefill replicas (default --dp).")] = None,
    prefill_ep: Annotated[int | None, Opt(help="P/D: EP of prefill replicas (default --ep).")] = None,
    prefill_moe_tp: Annotated[int | None, Opt("--prefill-moe-tp", help="P/D: MoE-TP of prefill replicas.")] = None,
    decode_dp: Annotated[int | None, Opt(help="P/D: attention-DP ranks of decode replicas (default --dp).")] = None,
    decode_ep: Annotated[int | None, Opt(help="P/D: EP of decode replicas (default --ep).")] = None,
    decode_moe_tp: Annotated[int | None, Opt("--decode-moe-tp", help="P/D: MoE-TP of decode replicas.")] = None,
    max_num_seqs: Annotated[int | None, Opt(help="Most sequences per iteration (default: the engine's).")] = None,
    max_batched_tokens: Annotated[int | None, Opt(help="Token budget per iteration (default: the engine's).")] = None,
    block_size: Annotated[int | None, Opt(help="KV block size, tokens (default: the engine's).")] = None,
    chunked_prefill: Annotated[bool | None, Opt("--chunked-prefill/--no-chunked-prefill", help="Chunked prefill (default: the engine's).")] = None,
    prefix_caching: Annotated[bool, Opt(help="Prefix caching.")] = True,
    preemption: Annotated[str, Opt(help="recompute or swap.")] = "recompute",
    policy: Annotated[str, Opt(help="Waiting-queue policy: fcfs or sjf.")] = "fcfs",
    memory_utilization: Annotated[float | None, Opt(help="Usable fraction of device memory (vLLM's gpu_memory_utilization; default: the engine's policy).")] = None,
    kv_free_memory_frac: Annotated[float | None, Opt(help="KV cache gets this fraction of memory left after weights (TensorRT-LLM's policy).")] = None,
    requests_out: Annotated[str | None, Opt(help="Write the per-request table (.csv or .parquet).")] = None,
    timeseries_out: Annotated[str | None, Opt(help="Write batch size and KV use over time (.csv or .parquet).")] = None,
    progress: Annotated[bool, Opt(help="Progress bar on stderr.")] = False,
    band_level: Annotated[float, Opt(help="Level of the error bands (F_lo, F_hi; docs/bands.md).")] = 0.9,
    as_json: Annotated[bool, Opt("--json", help="Print one JSON object.")] = False,
) -> None:
    """Simulate serving a stream of requests (continuous batching, paged KV cache, chunked prefill)."""
    for path in (requests_out, timeseries_out):  # a bad output name fails now, not after the run
        if path:
            check_output_path(path, TABLE_SUFFIXES, "table")
    result = api.simulate(
        model=model, hardware=hardware, tp=tp, pp=pp, ep=ep, dtype=dtype, weight_dtype=weight_dtype, kv_dtype=kv_dtype,
        rate=rate_, concurrency=concurrency, offline=offline, trace=trace, trace_format=trace_format,
        rate_scale=rate_scale, trace_start_s=trace_start, trace_duration_s=trace_duration, burstiness=burstiness,
        think_time_ms=think_time_ms, request_latency_ms=request_latency_ms,
        num_requests=num_requests, input_len=input_len, output_len=output_len, input_dist=input_dist,
        output_dist=output_dist, shared_prefix_tokens=shared_prefix, seed=seed, slo_ttft_ms=slo_ttft_ms,
        slo_tpot_ms=slo_tpot_ms, replicas=replicas, router=router, prefill_replicas=prefill_replicas,
        decode_replicas=decode_replicas, prefill_tp=prefill_tp, decode_tp=decode_tp, max_num_seqs=max_num_seqs,
        prefill_dp=prefill_dp, prefill_ep=prefill_ep, prefill_moe_tp=prefill_moe_tp, decode_dp=decode_dp,
        decode_ep=decode_ep, decode_moe_tp=decode_moe_tp,
        max_batched_tokens=max_batched_tokens, block_size=block_size, chunked_prefill=chunked_prefill,
        prefix_caching=prefix_caching, preemption=preemption, policy=policy,
        memory_utilization_frac=memory_utilization, progress=progress, kv_free_memory_frac=kv_free_memory_frac,
        engine=engine, engine_version=engine_version, cuda_graph_max_batch=cuda_graph_max_batch,
        cuda_graph_batch_sizes=_batch_sizes(cuda_graph_batch_sizes), warmup_requests=warmup_requests, spec_method=spec_method, spec_tokens=spec_tokens,
        spec_acceptance=spec_acceptance, spec_draft_model=spec_draft_model, dp=dp, moe_tp=moe_tp,
        moe_dispatch=moe_dispatch, band_level=band_level, two_batch_overlap=two_batch_overlap,
        num_redundant_experts=num_redundant_experts,
        adp_timeout_iters=adp_timeout_iters, adp_batching_wait_iters=adp_batching_wait_iters,
        prefill_max_num_seqs=prefill_max_num_seqs, batch_wait_timeout_iters=batch_wait_timeout_iters,
        batch_wait_max_tokens_ratio=batch_wait_max_tokens_ratio,
    )
    if result.summary.get("overloaded"):
        err.print("[yellow]warning: the system is overloaded: the queue grows without bound over the run "
                  "(latencies depend on how long it runs); lower the rate or add replicas[/yellow]")
    for path, frame in ((requests_out, result.requests_frame), (timeseries_out, result.timeseries_frame)):
        if path:
            write_table(frame(), path)
            err.print(f"wrote {path}")
    data = result.to_dict()
    if as_json:
        emit_json(data)
        return
    print_summary(data)


def print_summary(d: dict) -> None:
    cfg = d["config"]
    t = Table(title=f"{cfg['model']} on {cfg['hardware']} ({_pools(cfg)}), "
                    f"{d['completed']:,} requests, {cfg['arrival']} arrivals")
    for col in ("metric", "p50", "p90", "p99", "mean"):
        t.add_column(col)
    for name in ("ttft_s", "tpot_s", "e2e_s"):
        s = d[name]
        t.add_row(name.replace("_s", "").upper(), *(banded(s, k) for k in ("p50", "p90", "p99", "mean")))
    out.print(t)
    if "band_level" in d:
        err.print(f"[dim][lo .. hi]: {d['band_level']:.0%} error band of the prediction (docs/bands.md)[/dim]")
    u = Table(show_header=False)
    u.add_row("throughput", f"{banded(d, 'throughput_tokens_per_s', lambda v: rate(v, 'tok/s'))}, {d['requests_per_s']:.2f} req/s")
    u.add_row("goodput", _goodput(d))
    u.add_row("energy", f"{d['energy_j_per_token']:.3f} J/token")
    u.add_row("batch / KV use", f"{d['mean_batch_size']:.1f} sequences, {d['mean_kv_utilization'] * 100:.0f}% of KV blocks")
    u.add_row("prefix-cache hit rate", f"{d['prefix_cache_hit_rate'] * 100:.1f}%")
    u.add_row("preempted / rejected", f"{d['preempted']:,} / {d['rejected']:,} {d['rejected_reasons'] or ''}")
    u.add_row("simulated / wall time", f"{d['simulated_s']:,.1f} s / {d['sim_wall_s']:.2f} s")
    out.print(u)


def _pools(cfg: dict) -> str:
    """Replica count and TP of each pool: 'tp2, 4 replicas' or 'P/D: 2 prefill x tp1 + 3 decode x tp2'."""
    if cfg.get("prefill_replicas"):
        return (f"P/D: {cfg['prefill_replicas']} prefill x tp{cfg['prefill_tp']} + "
                f"{cfg['decode_replicas']} decode x tp{cfg['decode_tp']}")
    n = cfg["replicas"]
    return f"tp{cfg['tp']}, {n} replica{'s' if n != 1 else ''}"


def _goodput(d: dict) -> str:
    """Goodput means requests within an SLO: without one it is n/a here (the JSON keeps the number,
    which then counts every completed request, and says which SLO applied in config.slo_*_ms)."""
    cfg = d["config"]
    if cfg.get("slo_ttft_ms") is None and cfg.get("slo_tpot_ms") is None:
        return "n/a (no --slo-ttft-ms / --slo-tpot-ms given)"
    slo = " and ".join(f"{name} <= {cfg[key]:g} ms" for name, key in (("TTFT", "slo_ttft_ms"), ("TPOT", "slo_tpot_ms"))
                       if cfg.get(key) is not None)
    return f"{d['goodput_requests_per_s']:.2f} req/s ({d['slo_attainment'] * 100:.1f}% within {slo})"


def _batch_sizes(text: str | None) -> tuple[int, ...] | None:
    """--cuda-graph-batch-sizes: comma-separated batch sizes, or 'none' for no CUDA graphs."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        from tokenfab.errors import InvalidInputError

        raise InvalidInputError(f"--cuda-graph-batch-sizes takes comma-separated integers (e.g. 1,2,4,8) or 'none', "
                                f"got {text!r}") from None
