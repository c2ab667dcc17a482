"""`simulate`: a serving simulation in the API."""

from __future__ import annotations

from tokenfab.api.boundary import SIMULATE_RULES, validated
from tokenfab.api.deployment import _positive, deployment
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.execution.memory import DEFAULT_MEMORY_UTILIZATION_FRAC


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
    burstiness: float = 1.0, think_time_ms: float = 0.0, num_requests: int = 1000, input_len: int = 1024, output_len: int = 256,
    input_dist: str | None = None, output_dist: str | None = None, shared_prefix_tokens: int = 0, seed: int = 0,
    slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None, replicas: int = 1, router: str = "least-outstanding",
    prefill_replicas: int = 0, decode_replicas: int = 0, prefill_tp: int | None = None, decode_tp: int | None = None,
    max_num_seqs: int = 256, max_batched_tokens: int = 8192, block_size: int = 16, chunked_prefill: bool = True,
    prefix_caching: bool = True, preemption: str = "recompute", policy: str = "fcfs",
    memory_utilization_frac: float = DEFAULT_MEMORY_UTILIZATION_FRAC, progress: bool = False,
    timeseries_interval_s: float = 1.0, kv_free_memory_frac: float | None = None,
):
    """Simulate serving a stream of requests (see `tokenfab simulate --help`)."""
    from pydantic import ValidationError

    from tokenfab.serving.simulator import SchedulerConfig, Simulation, replica_spec
    from tokenfab.serving.workload import TraceSpec, WorkloadSpec

    modes = sum([rate is not None, concurrency is not None, offline, trace is not None])
    if modes != 1:
        raise InvalidInputError("choose exactly one of --rate, --concurrency, --offline, --trace")
    _positive(num_requests=num_requests, replicas=replicas, input_len=input_len, output_len=output_len)
    try:
        sched = SchedulerConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_batched_tokens,
                                block_tokens=block_size, chunked_prefill=chunked_prefill, prefix_caching=prefix_caching,
                                preemption=preemption, policy=policy)
        arrival = "trace" if trace else "offline" if offline else "closed" if concurrency else ("gamma" if burstiness != 1.0 else "poisson")
        wl = WorkloadSpec(
            arrival=arrival, rate=rate or 1.0, cv=burstiness, concurrency=concurrency or 1, num_requests=num_requests,
            think_time_s=think_time_ms / 1e3,
            input=_length_dist(input_dist, input_len, "input"), output=_length_dist(output_dist, output_len, "output"),
            trace=TraceSpec(path=trace, format=trace_format, rate_scale=rate_scale, start_s=trace_start_s,
                            duration_s=trace_duration_s) if trace else None,
            shared_prefix_tokens=shared_prefix_tokens,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidInputError(f"{'.'.join(map(str, err['loc'])) or 'workload'}: {err['msg']}") from None
    if trace is not None:
        _require_trace_requests(wl, trace, trace_start_s, trace_duration_s)
    from tokenfab.serving.policies import QUEUES, ROUTERS

    QUEUES.get(policy), ROUTERS.get(router)  # unknown names fail here, before any work

    def spec(tp_: int, role: str):
        d = deployment(model, hardware, None, tp_, pp, ep, 1, dtype, weight_dtype, kv_dtype, memory_utilization_frac,
                       None, kv_free_memory_frac)
        if d.memory.kv_capacity_tokens(max_batched_tokens, max_num_seqs) < block_size:
            raise InvalidInputError(
                f"{model} leaves no room for a KV cache on {hardware} with tp={tp_} "
                f"(weights {d.memory.weights_bytes / 1e9:.1f} GB per device); raise --tp or lower --max-batched-tokens")
        return replica_spec(d.step_model, d.memory, sched, wl.hash_block_tokens, role), d

    config = {"model": model, "hardware": hardware, "tp": tp, "pp": pp, "ep": ep, "dtype": dtype, "replicas": replicas,
              "router": router, "arrival": arrival, "num_requests": num_requests, "seed": seed,
              "slo_ttft_ms": slo_ttft_ms, "slo_tpot_ms": slo_tpot_ms}
    if prefill_replicas or decode_replicas:
        if not (prefill_replicas and decode_replicas):
            raise InvalidInputError("disaggregation needs both --prefill-replicas and --decode-replicas")
        p_spec, p_dep = spec(prefill_tp or tp, "prefill")
        d_spec, _ = spec(decode_tp or tp, "decode")
        link = p_dep.step_model.system.scale_out_link or p_dep.step_model.system.scale_up_link
        bw = link.bandwidth_bytes_per_s.value * (prefill_tp or tp)
        per_token = p_dep.memory.kv_bytes_per_token * (prefill_tp or tp) / bw
        sim = Simulation([p_spec] * prefill_replicas, wl, seed=seed, router=router, decode_specs=[d_spec] * decode_replicas,
                         transfer_s_per_token=per_token, progress=progress, timeseries_interval_s=timeseries_interval_s,
                         slo_ttft_s=slo_ttft_ms / 1e3 if slo_ttft_ms else None, slo_tpot_s=slo_tpot_ms / 1e3 if slo_tpot_ms else None)
        config.update(prefill_replicas=prefill_replicas, decode_replicas=decode_replicas,
                      prefill_tp=prefill_tp or tp, decode_tp=decode_tp or tp)
    else:
        r_spec, _ = spec(tp, "both")
        sim = Simulation([r_spec] * replicas, wl, seed=seed, router=router, progress=progress,
                         timeseries_interval_s=timeseries_interval_s,
                         slo_ttft_s=slo_ttft_ms / 1e3 if slo_ttft_ms else None, slo_tpot_s=slo_tpot_ms / 1e3 if slo_tpot_ms else None)
    result = sim.run()
    result.config = config
    return result


