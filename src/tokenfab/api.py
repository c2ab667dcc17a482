"""The Python API: the CLI's commands as functions with the same parameter names.

    from tokenfab import api
    r = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=8, input_len=1024, output_len=256)
    r.to_dict()  # == `tokenfab predict ... --json`

Names may be catalog names or paths to a user's YAML (chips, systems) or config.json
(models). Every user mistake raises an `tokenfab.errors.TokenfabError` subclass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from tokenfab.cost.attention import estimate_decode_attention, estimate_prefill_attention
from tokenfab.cost.chip_cost import chip_cost
from tokenfab.cost.collectives import COLLECTIVES, bus_bandwidth_bytes_per_s, collective_name, estimate_collective
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.result import OpCost
from tokenfab.errors import TokenfabError, InvalidInputError, UnknownNameError
from tokenfab.execution.config import ParallelConfig, PrecisionConfig
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import DEFAULT_MEMORY_UTILIZATION_FRAC, MemoryModel
from tokenfab.execution.predict import PredictResult, estimate_static_batch
from tokenfab.execution.step import StepModel, StepResult
from tokenfab.hardware.catalog import load_chip, load_system
from tokenfab.units import DTYPES
from tokenfab.workload.hf_config import load_model

__all__ = ["predict", "op", "step", "simulate", "predicted_capacity", "deployment", "PredictResult", "OpResult", "StepInfo", "Deployment"]

OPS = ("gemm", "attention", "allreduce", "allgather", "reducescatter", "alltoall", "sendrecv")


def _dtype(value: str | None, what: str) -> str | None:
    if value is not None and value not in DTYPES:
        raise UnknownNameError(what, value, DTYPES)
    return value


def _positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


@dataclass(frozen=True)
class Deployment:
    """A model on a system under a parallel plan and formats: the step and memory models."""

    step_model: StepModel
    memory: MemoryModel

    @property
    def parallel(self) -> ParallelConfig:
        return self.step_model.par


@functools.lru_cache(maxsize=512)
def deployment(
    model: str, hardware: str, devices: int | None = None, tp: int = 1, pp: int = 1, ep: int = 1, dp: int | None = None,
    dtype: str = "bf16", weight_dtype: str | None = None, kv_dtype: str | None = None,
    memory_utilization_frac: float = DEFAULT_MEMORY_UTILIZATION_FRAC, profile: str | None = None,
    kv_free_memory_frac: float | None = None,
) -> Deployment:
    """Build (and cache) the deployment; `devices` defaults to tp x pp x dp, `dp` to devices / (tp x pp)."""
    _positive(devices=devices, tp=tp, pp=pp, ep=ep, dp=dp)
    _dtype(dtype, "data type"), _dtype(weight_dtype, "weight data type"), _dtype(kv_dtype, "kv-cache data type")
    if not 0.0 < memory_utilization_frac <= 1.0:
        raise InvalidInputError(f"memory utilisation must lie in (0, 1], got {memory_utilization_frac}")
    if dp is None:
        if devices is not None and devices % (tp * pp):
            raise InvalidInputError(f"--devices {devices} is not a multiple of tp x pp = {tp * pp}")
        dp = devices // (tp * pp) if devices is not None else 1
    if devices is not None and devices != tp * pp * dp:
        raise InvalidInputError(f"--devices {devices} != tp x pp x dp = {tp}x{pp}x{dp} = {tp * pp * dp}")
    par = ParallelConfig(tp=tp, pp=pp, ep=ep, dp=dp)
    system = load_system(hardware, par.num_devices)
    spec = load_model(model)
    prec = PrecisionConfig(dtype=dtype, weight_dtype=weight_dtype, kv_dtype=kv_dtype)
    sm = StepModel(spec, system, par, prec, profile)
    if kv_free_memory_frac is not None and not 0.0 < kv_free_memory_frac <= 1.0:
        raise InvalidInputError(f"KV share of free memory must lie in (0, 1], got {kv_free_memory_frac}")
    return Deployment(sm, MemoryModel(spec, system, par, prec, memory_utilization_frac, kv_free_memory_frac))


def predict(
    model: str = "llama-3.1-8b", hardware: str = "h100-sxm", devices: int | None = None, tp: int = 1, pp: int = 1,
    ep: int = 1, dp: int | None = None, dtype: str = "bf16", weight_dtype: str | None = None,
    kv_dtype: str | None = None, batch: int = 1, input_len: int = 1024, output_len: int = 128,
    memory_utilization_frac: float = DEFAULT_MEMORY_UTILIZATION_FRAC, profile: str | None = None,
) -> PredictResult:
    """Latency, throughput, memory and energy of a static batch of `batch` requests."""
    _positive(batch=batch, input_len=input_len, output_len=output_len)
    d = deployment(model, hardware, devices, tp, pp, ep, dp, dtype, weight_dtype, kv_dtype, memory_utilization_frac, profile)
    return estimate_static_batch(d.step_model, d.memory, batch, input_len, output_len)


@dataclass(frozen=True)
class StepInfo:
    """Time and energy of one engine step (per replica; energy over all devices)."""

    result: StepResult

    @property
    def time_s(self) -> float:
        return self.result.time_s

    @property
    def energy_j(self) -> float:
        return self.result.energy_j

    def to_dict(self) -> dict:
        r = self.result
        return {"time_s": r.time_s, "energy_j": r.energy_j, "num_tokens": r.num_tokens,
                "breakdown": {k: {"time_s": v.time_s, "bound": v.bound} for k, v in r.breakdown.items()}}


def step(
    model: str, hardware: str, *, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1, dtype: str = "bf16",
    weight_dtype: str | None = None, kv_dtype: str | None = None, batch: int = 1, context_len: int = 1024,
    phase: str = "decode", new_tokens: int | None = None,
) -> StepInfo:
    """One engine step on one replica: `batch` sequences decoding one token at `context_len`, or
    (phase='prefill') prefilling `new_tokens` (default context_len) tokens each over context_len positions."""
    d = deployment(model, hardware, None, tp, pp, ep, dp, dtype, weight_dtype, kv_dtype)
    _positive(batch=batch, context_len=context_len)
    if phase == "decode":
        b = StepBatch(num_decode=batch, decode_kv_len=float(context_len))
    elif phase == "prefill":
        q = new_tokens or context_len
        b = StepBatch(prefill=((batch, q, max(q, context_len)),))
    else:
        raise UnknownNameError("phase", phase, ["prefill", "decode"])
    return StepInfo(d.step_model.step(b))


@dataclass(frozen=True)
class OpResult:
    """Cost of one operator on one device (or one collective on a group of devices)."""

    op: str
    hardware: str
    cost: OpCost
    num_devices: int = 1
    message_bytes: float = 0.0

    def to_dict(self) -> dict:
        c = self.cost
        out = {"op": self.op, "hardware": self.hardware, "time_s": c.time_s, "bound": c.bound,
               "flops": c.flops, "bytes": c.bytes, "roofline_s": c.roofline_s, "efficiency_source": c.source}
        if self.op == "gemm" or self.op == "attention":
            out["tflops"] = c.flops / c.time_s / 1e12 if c.time_s > 0 else 0.0
        if self.op not in ("gemm", "attention"):
            out["devices"] = self.num_devices
            out["message_bytes"] = self.message_bytes
            out["bus_bandwidth_bytes_per_s"] = bus_bandwidth_bytes_per_s(self.op, self.num_devices, self.message_bytes, c.time_s)
        return out


def op(
    name: str, hardware: str = "h100-sxm", *, m: int | None = None, n: int | None = None, k: int | None = None,
    dtype: str = "bf16", weight_dtype: str | None = None, variant: str = "", warm_cache: bool = False,
    phase: str = "decode", batch: int = 1, q_len: int | None = None, kv_len: int = 1024, heads: int = 32,
    kv_heads: int | None = None, head_dim: int = 128, kv_dtype: str | None = None, devices: int = 8,
    bytes: float | None = None, profile: str | None = None,
) -> OpResult:
    """Cost of one operator: 'gemm', 'attention' (one layer, one device) or a collective."""
    if name not in OPS and name.replace("_", "") not in OPS:
        raise UnknownNameError("op", name, OPS)
    _dtype(dtype, "data type"), _dtype(weight_dtype, "weight data type"), _dtype(kv_dtype, "kv-cache data type")
    if name == "gemm":
        if m is None or n is None or k is None:
            raise InvalidInputError("op gemm needs --m, --n and --k")
        _positive(m=m, n=n, k=k)
        cc = chip_cost(load_chip(hardware), profile)
        return OpResult("gemm", cc.chip.name, estimate_gemm(cc, m, n, k, dtype, weight_dtype, variant=variant, warm_cache=warm_cache))
    if name == "attention":
        return OpResult("attention", hardware, _attention(hardware, phase, batch, q_len, kv_len, heads, kv_heads,
                                                          head_dim, dtype, kv_dtype, profile))
    coll = collective_name(name)
    if coll not in COLLECTIVES:
        raise UnknownNameError("op", name, OPS)
    if bytes is None:
        raise InvalidInputError(f"op {name} needs --bytes")
    if bytes <= 0:
        raise InvalidInputError(f"--bytes must be > 0, got {bytes}")
    _positive(devices=devices)
    system = load_system(hardware, devices)
    cc = chip_cost(system.chip, profile)
    cost = estimate_collective(cc, system, coll, devices, bytes)
    return OpResult(name.replace("_", ""), system.chip.name, cost, devices, bytes)


def _attention(hardware: str, phase: str, batch: int, q_len: int | None, kv_len: int, heads: int, kv_heads: int | None,
               head_dim: int, dtype: str, kv_dtype: str | None, profile: str | None) -> OpCost:
    kv_heads = kv_heads or heads
    _positive(batch=batch, kv_len=kv_len, heads=heads, kv_heads=kv_heads, head_dim=head_dim, q_len=q_len)
    if heads % kv_heads:
        raise InvalidInputError(f"--heads {heads} is not a multiple of --kv-heads {kv_heads}")
    cc = chip_cost(load_chip(hardware), profile)
    kv = kv_dtype or ("bf16" if dtype not in ("fp16",) else "fp16")
    if phase == "prefill":
        q = q_len or kv_len
        if q > kv_len:
            raise InvalidInputError(f"--q-len {q} exceeds --kv-len {kv_len}")
        return estimate_prefill_attention(cc, batch, q, kv_len, heads, kv_heads, head_dim, None, dtype, kv)
    if phase == "decode":
        return estimate_decode_attention(cc, batch, kv_len, heads, kv_heads, head_dim, None, kv, act_dtype=dtype)
    raise UnknownNameError("phase", phase, ["prefill", "decode"])


# -- serving simulation ------------------------------------------------------------------------

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
              "router": router, "arrival": arrival, "num_requests": num_requests, "seed": seed}
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


# -- capacity for fleet planning -----------------------------------------------------------------

def _compute_dtype(chip_name: str) -> str:
    chip = load_chip(chip_name)
    for d in ("bf16", "fp16", "fp8", "int8"):
        if chip.supports(d):
            return d
    return next(iter(chip.peak_flop_per_s))


@functools.lru_cache(maxsize=4096)
def _capacity(chip: str, model: str, ttft_s: float, tpot_s: float, input_tokens: int, output_tokens: int):
    """Best steady-state output tokens/s per chip within the SLO, over TP degrees and batch sizes.

    A continuously batched server holding B sequences of I prompt / O output tokens spends, per O
    iterations, O decode steps of the batch plus B single-request prefills (the requests that
    replace the finished ones), so
        effective TPOT = (O * t_decode(B) + B * t_prefill(1)) / O,   TTFT ~ t_prefill(1) + t_decode(B),
        output tokens/s = B * O / (O * t_decode(B) + B * t_prefill(1)).
    t_decode and t_prefill come from `predict`; the best feasible (TP, B) wins.
    """
    from tokenfab.errors import DoesNotFitError
    from tokenfab.fleet.capacity import CapacityEstimate

    dtype = _compute_dtype(chip)
    domain = load_chip(chip).scale_up.domain_size if load_chip(chip).scale_up else 1
    best = None
    for tp in (1, 2, 4, 8):
        if tp > domain:
            break
        try:
            single = predict(model=model, hardware=chip, tp=tp, dtype=dtype, batch=1, input_len=input_tokens, output_len=output_tokens)
        except TokenfabError:
            continue
        if not single.fits:
            continue
        t_prefill, b = single.ttft_s, 1
        while b <= single.max_batch_that_fits:
            r = predict(model=model, hardware=chip, tp=tp, dtype=dtype, batch=b, input_len=input_tokens, output_len=output_tokens)
            cycle = output_tokens * r.tpot_s + b * t_prefill
            tpot_eff, ttft = cycle / output_tokens, t_prefill + r.tpot_s
            if tpot_eff > tpot_s or ttft > ttft_s:
                break
            rate = b * output_tokens / cycle / tp
            power = r.energy_j / r.e2e_s / tp
            if best is None or rate > best[0]:
                best = (rate, power, f"tokenfab predict: tp{tp} batch {b} {dtype} ({single.efficiency_source} curves)")
            b *= 2
    if best is None:
        raise DoesNotFitError(f"{model} cannot meet TTFT {ttft_s * 1e3:.0f} ms / TPOT {tpot_s * 1e3:.0f} ms on {chip} at tp <= 8")
    return CapacityEstimate(tokens_per_s_per_chip=best[0], avg_power_w_per_chip=best[1], source=best[2])


def predicted_capacity(chip_name: str, model_name: str, slo):
    """Capacity provider for `tokenfab.fleet.plan_fleet` backed by the predictor (see `_capacity`)."""
    return _capacity(chip_name, model_name, slo.ttft_s, slo.tpot_s, slo.input_tokens, slo.output_tokens)
