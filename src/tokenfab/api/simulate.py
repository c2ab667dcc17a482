"""`simulate`: a serving simulation in the API."""

from __future__ import annotations

from tokenfab.api.boundary import SIMULATE_RULES, validated
from tokenfab.api.deployment import _positive, deployment
from tokenfab.cost.bands import DEFAULT_BAND_LEVEL, check_level, composite_band
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.execution.memory import DEFAULT_MEMORY_UTILIZATION_FRAC

TRACE_ALL = 1 << 40  # "every request of the trace"


def _length_dist(spec: str | None, fixed: int, what: str):
    """'fixed:N', 'uniform:LO,HI', 'normal:MEAN,STD', 'lognormal:MEAN,STD', 'empirical:PATH', or a fixed length."""
    from tokenfab.serving.workload import LengthDist

    if spec is None:
        return LengthDist(kind="fixed", value=fixed)
    kind, _, args = spec.partition(":")
    try:
        if kind == "fixed":
            return LengthDist(kind="fixed", value=int(args))
        if kind == "empirical":
            return LengthDist(kind="empirical", path=args)
        a, b = (float(x) for x in args.split(","))
        if kind == "uniform":
            return LengthDist(kind="uniform", low=int(a), high=int(b))
        if kind in ("normal", "lognormal"):
            return LengthDist(kind=kind, mean=a, std=b)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"bad --{what}-dist '{spec}': {str(exc).splitlines()[0]}") from None
    raise UnknownNameError(f"{what} length distribution", kind, ["fixed", "uniform", "normal", "lognormal", "empirical"])


def _rank_specs(rspec, together, dp: int):
    """A builder of one instance's dp replica specs: alike, or (an MoE instance with attention-DP serving traffic,
    `together` the step time of all ranks prefilling at once: a step model's fast_step, or a speculative timer's
    step) sharing one `LockstepTimer` per instance."""
    import dataclasses

    from tokenfab.serving.attention_dp import LockstepTimer

    def ranks() -> list:
        if together is None:
            return [rspec] * dp
        timer = LockstepTimer(rspec.step.step, together, rspec.step.decode_pair)
        return [dataclasses.replace(rspec, step=timer)] * dp
    return ranks


def _attention_dp_balance(balance, engine: str, dp: int, disaggregated: bool):
    """TensorRT-LLM's attention-DP context balancing applies to an aggregated trtllm instance with attention-DP (a P/D
    prefill pool has no generation requests to balance against, a decode pool no prompts)."""
    if balance is None:
        return None
    if engine != "trtllm":
        raise InvalidInputError(f"attention-DP balancing (--adp-timeout-iters) is TensorRT-LLM's; choose --engine trtllm, "
                                f"not {engine}")
    if dp < 2 or disaggregated:
        raise InvalidInputError("attention-DP balancing (--adp-timeout-iters) needs an aggregated instance with --dp >= 2")
    return balance


def _batch_wait(eng, timeout_iters: int, max_tokens_ratio: float, dp: int):
    """The engine with TensorRT-LLM's batch waiting set (PyExecutor._schedule applies it to a trtllm instance without
    attention-DP only)."""
    if not (timeout_iters or max_tokens_ratio):
        return eng
    if eng.name != "trtllm":
        raise InvalidInputError(f"batch waiting (--batch-wait-timeout-iters, --batch-wait-max-tokens-ratio) is "
                                f"TensorRT-LLM's; choose --engine trtllm, not {eng.name}")
    if dp > 1:
        raise InvalidInputError("TensorRT-LLM does not batch-wait with attention-DP (--dp > 1); its attention-DP "
                                "balancing is --adp-timeout-iters")
    return eng.model_copy(update={"batch_wait_timeout_iters": timeout_iters, "batch_wait_max_tokens_ratio": max_tokens_ratio})


def _require_trace_requests(wl, trace: str, start_s: float, duration_s: float | None) -> None:
    """An empty trace, or a window past its end, is a mistake to name, not a table of NaN to print."""
    import numpy as np

    from tokenfab.serving.workload import open_loop_requests

    if next(open_loop_requests(wl, np.random.default_rng(0)), None) is None:
        window = f" in the window {start_s:g} s .. {start_s + duration_s:g} s" if duration_s else (
            f" at or after --trace-start {start_s:g} s" if start_s else "")
        raise InvalidInputError(f"trace {trace} has no requests{window}")


@validated(conflicts=SIMULATE_RULES)
def simulate(
    model: str = "llama-3.1-8b", hardware: str = "h100-sxm", tp: int = 1, pp: int = 1, ep: int = 1,
    dtype: str = "bf16", weight_dtype: str | None = None, kv_dtype: str | None = None,
    rate: float | None = None, concurrency: int | None = None, offline: bool = False, trace: str | None = None,
    trace_format: str = "auto", rate_scale: float = 1.0, trace_start_s: float = 0.0, trace_duration_s: float | None = None,
    burstiness: float = 1.0, think_time_ms: float = 0.0, num_requests: int | None = None, input_len: int = 1024, output_len: int = 256,
    input_dist: str | None = None, output_dist: str | None = None, shared_prefix_tokens: int = 0, seed: int = 0,
    slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None, replicas: int = 1, router: str = "least-outstanding",
    prefill_replicas: int = 0, decode_replicas: int = 0, prefill_tp: int | None = None, decode_tp: int | None = None,
    max_num_seqs: int | None = None, max_batched_tokens: int | None = None, block_size: int | None = None,
    chunked_prefill: bool | None = None, prefix_caching: bool = True, preemption: str = "recompute", policy: str = "fcfs",
    memory_utilization_frac: float | None = None, progress: bool = False,
    timeseries_interval_s: float = 1.0, kv_free_memory_frac: float | None = None, engine: str = "vllm",
    warmup_requests: int = 0, static_memory_frac: float | None = None, spec_method: str | None = None,
    spec_tokens: int = 1, spec_acceptance: float | None = None, spec_draft_model: str | None = None,
    decode_hardware: str | None = None, band_level: float = DEFAULT_BAND_LEVEL,
    dp: int = 1, moe_tp: int | None = None, moe_dispatch: str = "normal",
    prefill_dp: int | None = None, prefill_ep: int | None = None, prefill_moe_tp: int | None = None,
    decode_dp: int | None = None, decode_ep: int | None = None, decode_moe_tp: int | None = None,
    request_latency_ms: float = 0.0, engine_version: str | None = None, two_batch_overlap: bool = False,
    adp_timeout_iters: int = 0, adp_batching_wait_iters: int = 0, prefill_max_num_seqs: int | None = None,
    cuda_graph_max_batch: int | None = None, cuda_graph_batch_sizes: tuple[int, ...] | None = None,
    num_redundant_experts: int = 0, batch_wait_timeout_iters: int = 0, batch_wait_max_tokens_ratio: float = 0.0,
):
    """Simulate serving a stream of requests (see `tokenfab simulate --help`).

    `engine` (vllm, sglang, trtllm) sets the scheduler's defaults (token budget, sequence limit, chunked
    prefill, prefill-first, CUDA-graph padding, host overhead, KV-full policy) and the memory policy; any of
    max_num_seqs, max_batched_tokens, block_size, chunked_prefill, memory_utilization_frac and
    kv_free_memory_frac given explicitly overrides the engine's choice. `request_latency_ms` is the latency of each
    request between client and engine that the engine does not see (network, HTTP, a router hop), part of the
    TTFT a benchmark client measures. `engine_version` selects a release whose defaults differ (SGLang 0.5.0-0.5.3
    against 0.5.4 on; TensorRT-LLM 0.12-0.16, whose engine runtime holds buffers sized by max_num_seqs x vocabulary
    before it sizes the KV cache, against the PyTorch backend; see `tokenfab.serving.engines`). `adp_timeout_iters` >= 1 turns on
    TensorRT-LLM's attention-DP context balancing (attention_dp_config enable_balance, timeout_iters, batching_wait_iters =
    `adp_batching_wait_iters`; off by default as in TensorRT-LLM; `tokenfab.serving.attention_dp`). `cuda_graph_max_batch`: the
    largest decode batch the engine captures as a CUDA graph (TensorRT-LLM cuda_graph_config.max_batch_size, 128 by
    default; trtllm-bench sets it to max_batch_size), decode batches padded up to its capture list;
    `cuda_graph_batch_sizes` an explicit capture list instead (cuda_graph_config.batch_sizes, of which those not above
    max_num_seqs and max_batched_tokens are captured; empty: no CUDA graphs). The summary carries
    error bands at `band_level` (docs/bands.md). `prefill_max_num_seqs` (P/D only) is the prefill pool's own sequence
    limit per replica (per attention-DP rank), e.g. TensorRT-LLM's max_batch_size of a context server.
    `num_redundant_experts`: extra expert slots placed by EPLB in every pool (`ParallelConfig.num_redundant_experts`;
    0, no EPLB, is every engine's default). `batch_wait_timeout_iters` and `batch_wait_max_tokens_ratio` (trtllm, both
    > 0 to take effect; off by default as in TensorRT-LLM): prompts arriving while decodes run wait up to that many
    iterations, or until the iteration's tokens reach the ratio of the token budget (`serving.batch_wait`)."""
    from pydantic import ValidationError

    from tokenfab.serving.attention_dp import parse_balance
    from tokenfab.serving.simulator import SchedulerConfig, Simulation, replica_spec
    from tokenfab.serving.workload import TraceSpec, WorkloadSpec

    modes = sum([rate is not None, concurrency is not None, offline, trace is not None])
    if modes != 1:
        raise InvalidInputError("choose exactly one of --rate, --concurrency, --offline, --trace")
    if num_requests is None:  # a trace replays whole; synthetic traffic defaults to 1,000 requests
        num_requests = TRACE_ALL if trace is not None else 1000
    _positive(num_requests=num_requests, replicas=replicas, input_len=input_len, output_len=output_len)
    band_level = check_level(band_level)
    from tokenfab.serving.engines import engine_spec, for_model

    if cuda_graph_batch_sizes is not None and any(s < 1 for s in cuda_graph_batch_sizes):
        raise InvalidInputError(f"cuda_graph_batch_sizes must be batch sizes >= 1, got {list(cuda_graph_batch_sizes)}")
    eng = engine_spec(engine, _chip_memory(hardware), tp, engine_version, cuda_graph_max_batch, cuda_graph_batch_sizes)
    eng = _batch_wait(eng, batch_wait_timeout_iters, batch_wait_max_tokens_ratio, dp)
    eng = eng.model_copy(update={k: v for k, v in (("max_num_seqs", max_num_seqs), ("max_num_batched_tokens", max_batched_tokens),
                                                  ("block_tokens", block_size), ("chunked_prefill", chunked_prefill))
                                 if v is not None})
    if cuda_graph_batch_sizes is not None:  # the engine captures the listed sizes its limits allow
        from tokenfab.serving.engines.trtllm import captured_sizes

        eng = eng.model_copy(update={"cuda_graph_sizes": captured_sizes(eng.cuda_graph_sizes, eng.max_num_seqs,
                                                                         eng.max_num_batched_tokens)})
    budget_given = max_batched_tokens is not None
    max_num_seqs, max_batched_tokens, block_size = eng.max_num_seqs, eng.max_num_batched_tokens, eng.block_tokens
    run_eng = eng.pipelined(pp)  # the limits of a step of all pp micro-batches in flight (`EngineSpec.pipelined`)
    try:
        sched = SchedulerConfig(max_num_seqs=run_eng.max_num_seqs, max_num_batched_tokens=run_eng.max_num_batched_tokens,
                                block_tokens=block_size, chunked_prefill=eng.chunked_prefill, prefix_caching=prefix_caching,
                                preemption=preemption, policy=policy)
        arrival = "trace" if trace else "offline" if offline else "closed" if concurrency else ("gamma" if burstiness != 1.0 else "poisson")
        wl = WorkloadSpec(
            arrival=arrival, rate=rate or 1.0, cv=burstiness, concurrency=concurrency or 1, num_requests=num_requests,
            think_time_s=think_time_ms / 1e3, warmup_requests=warmup_requests,
            input=_length_dist(input_dist, input_len, "input"), output=_length_dist(output_dist, output_len, "output"),
            trace=TraceSpec(path=trace, format=trace_format, rate_scale=rate_scale, start_s=trace_start_s,
                            duration_s=trace_duration_s) if trace else None,
            shared_prefix_tokens=shared_prefix_tokens,
            # prefix hashes cover whole KV blocks of the engine (16 tokens, or one block if the engine's are larger)
            prefix_block_tokens=block_size * max(1, -(-16 // block_size)),
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInputError(f"{'.'.join(map(str, err['loc'])) or 'workload'}: {err['msg']}") from None
    if trace is not None:
        _require_trace_requests(wl, trace, trace_start_s, trace_duration_s)
    if wl.hash_block_tokens % block_size:
        raise InvalidInputError(f"the trace's prefix hashes cover {wl.hash_block_tokens}-token blocks, which KV blocks of "
                                f"{block_size} tokens do not divide; choose --block-size dividing {wl.hash_block_tokens}")
    from tokenfab.serving.policies import QUEUES, ROUTERS

    QUEUES.get(policy), ROUTERS.get(router)  # unknown names fail here, before any work

    balance = _attention_dp_balance(parse_balance(adp_timeout_iters, adp_batching_wait_iters), engine, dp,
                                    bool(prefill_replicas or decode_replicas))
    _positive(dp=dp, prefill_dp=prefill_dp, prefill_ep=prefill_ep, prefill_moe_tp=prefill_moe_tp, decode_dp=decode_dp,
              decode_ep=decode_ep, decode_moe_tp=decode_moe_tp)
    # P/D pools each take their own layout (prefill_* / decode_*; unset parts follow --tp/--dp/--ep/--moe-tp).
    p_lay = (prefill_tp or tp, prefill_dp or dp, prefill_ep or ep, prefill_moe_tp if prefill_moe_tp else
             (moe_tp if (prefill_tp or tp, prefill_dp or dp, prefill_ep or ep) == (tp, dp, ep) else None))
    d_lay = (decode_tp or tp, decode_dp or dp, decode_ep or ep, decode_moe_tp if decode_moe_tp else
             (moe_tp if (decode_tp or tp, decode_dp or dp, decode_ep or ep) == (tp, dp, ep) else None))

    def spec(layout: tuple, role: str):
        # An MoE instance with attention-DP is dp ranks with their own batches sharing the experts: the step
        # model costs one rank's step (all ranks stepping alike), and each rank gets its own scheduler below.
        # Under arriving traffic a rank prefills its own prompts while the others decode (staggered); offline,
        # every request is queued at once and all ranks prefill together (`layers.expert_group_tokens`).
        tp_, dp_, ep_, moe_tp_ = layout
        chip = decode_hardware if role == "decode" and decode_hardware else hardware
        mem_kw = _memory_policy(eng, memory_utilization_frac, kv_free_memory_frac, static_memory_frac,
                                (tp_, pp, dp_, spec_method is not None and role != "prefill"))
        mem_kw.update(_runtime_reserve(eng, model, max_num_seqs, tp_ * pp))
        d = deployment(model, chip, None, tp_, pp, ep_, dp_, dtype, weight_dtype, kv_dtype, profile=None,
                       moe_tp=moe_tp_, moe_dispatch=moe_dispatch, staggered_prefill=not offline,
                       two_batch_overlap=two_batch_overlap,
                       num_redundant_experts=num_redundant_experts, **mem_kw)
        if d.memory.kv_capacity_tokens(max_batched_tokens, max_num_seqs) < block_size:
            raise InvalidInputError(
                f"{model} leaves no room for a KV cache on {chip} with tp={tp_} "
                f"(weights {d.memory.weights_bytes / 1e9:.1f} GB per device); raise --tp or lower --max-batched-tokens")
        spec_model = None
        if spec_method is not None and role != "prefill":
            from tokenfab.execution.speculative import SpeculativeModel, resolve_spec
            from tokenfab.workload.hf_config import load_model

            sspec = resolve_spec(d.step_model.model, spec_method, spec_tokens, spec_acceptance, spec_draft_model)
            spec_model = SpeculativeModel(d.step_model, sspec, load_model(spec_draft_model) if spec_draft_model else None)
            config["speculative"] = {"method": sspec.method, "spec_tokens": sspec.num_spec_tokens,
                                     "acceptance": sspec.acceptance_frac, "acceptance_source": sspec.acceptance_source,
                                     "tokens_per_iteration": spec_model.tokens_per_iteration}
        context = float(input_len + output_len) if trace is None and input_dist is None and output_dist is None else None
        context = context if eng.kv_sizing_window_aware else None  # TensorRT-LLM: the pool sized for full attention
        role_sched = sched
        if role == "prefill" and prefill_max_num_seqs:  # a context server's own sequence limit
            # per micro-batch where the engine's limits are (`EngineSpec.pipelined`)
            role_sched = sched.model_copy(update={"max_num_seqs": prefill_max_num_seqs * (run_eng.max_num_seqs // eng.max_num_seqs)})
        if dp_ > 1 and eng.chunk_per_dp_rank and not budget_given:  # each rank's share of the engine's budget
            role_sched = role_sched.model_copy(update={"max_num_batched_tokens": max(1, max_batched_tokens // dp_)})
        rspec = replica_spec(d.step_model, d.memory, role_sched, wl.hash_block_tokens, role,
                             policy=for_model(run_eng, d.step_model.model),
                             speculative=spec_model, context_len=context, pipelined_limits=run_eng is not eng)
        together = None
        if not offline and dp_ > 1 and role != "decode" and d.step_model.model.is_moe:
            together_sm = deployment(model, chip, None, tp_, pp, ep_, dp_, dtype, weight_dtype, kv_dtype, profile=None,
                                     moe_tp=moe_tp_, moe_dispatch=moe_dispatch, staggered_prefill=False,
                                     two_batch_overlap=two_batch_overlap,
                                     num_redundant_experts=num_redundant_experts, **mem_kw).step_model
            together = together_sm.fast_step
            if spec_model is not None:  # speculative ranks: their mixed steps verify drafts beside the prompts
                from tokenfab.serving.speculative import SpeculativeTimer

                draft = load_model(spec_draft_model) if spec_draft_model else None
                together = SpeculativeTimer(SpeculativeModel(together_sm, sspec, draft)).step
        return _rank_specs(rspec, together, dp_), d

    config = {"model": model, "hardware": hardware, "tp": tp, "pp": pp, "ep": ep, "dp": dp, "dtype": dtype, "replicas": replicas,
              "engine": eng.name, "max_num_seqs": max_num_seqs, "max_batched_tokens": max_batched_tokens,
              "chunked_prefill": eng.chunked_prefill, "warmup_requests": warmup_requests,
              "request_latency_ms": request_latency_ms,
              "router": router, "arrival": arrival, "num_requests": num_requests, "seed": seed,
              "slo_ttft_ms": slo_ttft_ms, "slo_tpot_ms": slo_tpot_ms}
    if two_batch_overlap:  # recorded only when on, so default runs' configs are unchanged
        config["two_batch_overlap"] = True
    if num_redundant_experts:  # likewise
        config["num_redundant_experts"] = num_redundant_experts
    # what every run takes, aggregated or P/D: randomness, routing, metrics, SLOs, the way from client to engine. The
    # serving front end (an API server's serial request handling) is not on an offline run's way: a batch benchmark
    # (trtllm-bench, an MLPerf offline harness) hands every request to the engine's own API, with no HTTP server between.
    fe_s, fe_tok_s = (0.0, 0.0) if offline else (eng.frontend_s, eng.frontend_s_per_token)
    # the token-delivery stage of an aggregated server's streaming (`serving.delivery`; a batch benchmark streams none)
    deliver_s = 0.0 if offline or prefill_replicas or decode_replicas else eng.delivery_s_per_token
    run_settings = dict(seed=seed, router=router, progress=progress, timeseries_interval_s=timeseries_interval_s,
                        slo_ttft_s=slo_ttft_ms / 1e3 if slo_ttft_ms else None,
                        slo_tpot_s=slo_tpot_ms / 1e3 if slo_tpot_ms else None,
                        frontend_s=fe_s, frontend_s_per_token=fe_tok_s,
                        request_latency_s=request_latency_ms / 1e3)
    if deliver_s:  # passed only when there is a stage, so a P/D run never gets one
        run_settings["delivery_s_per_token"] = deliver_s
    if decode_hardware is not None and not (prefill_replicas and decode_replicas):
        raise InvalidInputError("--decode-hardware needs a disaggregated run (--prefill-replicas and --decode-replicas)")
    if prefill_replicas or decode_replicas:
        if not (prefill_replicas and decode_replicas):
            raise InvalidInputError("disaggregation needs both --prefill-replicas and --decode-replicas")
        p_ranks, p_dep = spec(p_lay, "prefill")
        d_ranks, d_dep = spec(d_lay, "decode")
        from tokenfab.serving.disagg import KvHandoff, handoff_s_per_token

        link = p_dep.step_model.system.scale_out_link or p_dep.step_model.system.scale_up_link
        per_token = handoff_s_per_token(d_dep.memory.kv_bytes_per_token, d_lay[0], p_lay[0], link.bandwidth_bytes_per_s.value)
        sim = Simulation([s for _ in range(prefill_replicas) for s in p_ranks()], wl,
                         decode_specs=[s for _ in range(decode_replicas) for s in d_ranks()],
                         handoff=KvHandoff(per_token, eng.kv_send_streams), **run_settings)
        config.update(prefill_replicas=prefill_replicas, decode_replicas=decode_replicas,
                      prefill_max_num_seqs=prefill_max_num_seqs or max_num_seqs,
                      decode_hardware=decode_hardware or hardware,
                      prefill_tp=prefill_tp or tp, decode_tp=decode_tp or tp, prefill_dp=p_lay[1], prefill_ep=p_lay[2],
                      decode_dp=d_lay[1], decode_ep=d_lay[2])
    else:
        r_ranks, r_dep = spec((tp, dp, ep, moe_tp), "both")
        r_spec = r_ranks()[0]
        p_dep = d_dep = r_dep
        config.update(kv_capacity_tokens=r_spec.kv_blocks * r_spec.block_tokens,
                      memory_bytes=r_dep.memory.ledger(max_batched_tokens, max_num_seqs))
        sim = Simulation([s for _ in range(replicas) for s in r_ranks()], wl, attention_dp=(dp, balance) if balance else None, **run_settings)
        if balance:
            config.update(adp_timeout_iters=balance.timeout_iters, adp_batching_wait_iters=balance.batching_wait_iters)
        if eng.batch_wait_timeout_iters or eng.batch_wait_max_tokens_ratio:  # recorded only when set
            config.update(batch_wait_timeout_iters=eng.batch_wait_timeout_iters,
                          batch_wait_max_tokens_ratio=eng.batch_wait_max_tokens_ratio)
    result = sim.run()
    result.config = config
    slos = (slo_ttft_ms / 1e3 if slo_ttft_ms else None, slo_tpot_ms / 1e3 if slo_tpot_ms else None)
    _add_serving_bands(result, p_dep.step_model, d_dep.step_model, input_len, output_len, band_level, slos)
    return result


def _add_serving_bands(result, prefill_model, decode_model, input_len: int, output_len: int, level: float,
                       slos: tuple[float | None, float | None]) -> None:
    """Bands of the summary from one representative prefill step (one prompt of the run's mean length)
    and one decode step (the run's mean batch at the mean context) of the deployment (docs/bands.md)."""
    from tokenfab.execution.bands import SERVING_TPOT, SERVING_TTFT, SLOTimes, serving_bands, step_parts
    import numpy as np

    from tokenfab.execution.layers import StepBatch

    summary, log = result.summary, result.log
    prompt = int(round(log.column("prompt_tokens").mean())) if log.n else input_len
    output = int(round(log.column("output_tokens").mean())) if log.n else output_len
    prompt, output = max(1, prompt), max(1, output)
    batch = max(1, int(round(summary.get("mean_batch_size") or 1)))
    pre = prefill_model.step(StepBatch(prefill=((1, prompt, prompt),)))
    dec = decode_model.step(StepBatch(num_decode=batch, decode_kv_len=float(prompt + output / 2)))
    first, out = log.column("first_token_s"), log.column("output_tokens")
    tpot = np.where(out > 1, (log.column("finish_s") - first) / np.maximum(out - 1, 1), np.nan)
    slo = SLOTimes(first - log.column("arrival_s"), tpot, *slos)
    serving_bands(summary, composite_band(step_parts(pre.breakdown, "prefill"), level, SERVING_TTFT),
                  composite_band(step_parts(dec.breakdown, "decode"), level, SERVING_TPOT), level, slo)


def _chip_memory(hardware: str) -> float:
    from tokenfab.hardware.catalog import load_system

    return load_system(hardware).chip.device_memory_bytes


def _runtime_reserve(eng, model: str, max_num_seqs: int, world_size: int) -> dict:
    """deployment() keyword for the buffers the engine sizes by max_batch_size x vocabulary before it sizes the
    KV cache (TensorRT-LLM v0.x), whatever KV fraction applies; nothing for engines without them."""
    if not (eng.memory.runtime_bytes_per_slot_vocab or eng.memory.runtime_fixed_bytes):
        return {}
    from tokenfab.workload.hf_config import load_model

    vocab = load_model(model).vocab_size
    return {"runtime_reserved_bytes": eng.memory.runtime_reserved_bytes(max_num_seqs, vocab, world_size)}


def _memory_policy(eng, memory_utilization_frac: float | None, kv_free_memory_frac: float | None,
                   static_memory_frac: float | None = None, layout: tuple[int, int, int, bool] = (1, 1, 1, False)) -> dict:
    """deployment() keyword arguments for the engine's memory policy on a pool's layout (tp, pp, attention-DP,
    speculative), unless the caller chose one (vLLM's gpu_memory_utilization, TensorRT-LLM's
    free_gpu_memory_fraction, SGLang's mem_fraction_static)."""
    # a fraction the caller chose still applies to what the engine sizes against (its total, what it already holds)
    sizing = eng.memory.sizing_kwargs(*layout[:3])
    if static_memory_frac is not None:
        return {"static_memory_frac": static_memory_frac, **(sizing if eng.memory.kind == "static-fraction" else {})}
    if memory_utilization_frac is not None or kv_free_memory_frac is not None:
        own = (eng.memory.kind == "device-fraction" and kv_free_memory_frac is None) or \
            (eng.memory.kind == "free-fraction" and kv_free_memory_frac is not None)
        return {"memory_utilization_frac": memory_utilization_frac or DEFAULT_MEMORY_UTILIZATION_FRAC,
                "kv_free_memory_frac": kv_free_memory_frac, **(sizing if own else {})}
    return eng.memory.memory_model_kwargs(*layout)
