"""Steady-state capacity of one deployment under a workload and an SLO, from the one step model.

A continuous-batching engine with chunked prefill (vLLM V1's scheduler, as `serving.replica`
runs it) holding B sequences reaches a steady state where, per iteration, d sequences decode
one token each and new requests replace finished ones by prefilling their prompts in chunks of
the token budget left after the decodes. With mean lengths I (prompt) and O (output, the first
token coming from the prefill), each decoder finishes after O - 1 iterations, so per iteration

    c = d / (O - 1)           requests complete (and as many prefills complete),
    B = d + c x n_chunks      sequences are running (n_chunks iterations of prefill each),
    c x I <= budget - d       prefill tokens fit the token budget.

The mean iteration time is the decode step of d sequences at the mean context I + O/2 plus, per
completion, the extra time its prefill chunks add to the iterations they ride in (each chunk
costed by `StepModel.step` as a mixed step; admissions per iteration are Poisson with mean c).
Output tokens/s = c x O / t_iter, TPOT = t_iter, TTFT = the chunks' iterations plus the wait for
the iteration in flight. The engine's policy (`serving.engines`) shapes each iteration: its host
overhead, decode-only batches padded to captured CUDA-graph sizes, prefill-first scheduling, the eager host time
of every iteration carrying prompt work (prompt-only or mixed, added to its kernels or beside them: `serving.eager`,
the formula `serving.replica` charges), and
reserve-on-admission KV accounting. Under open-loop arrivals the batch itself is Poisson
(`tail_batch`), so the SLO is checked at its percentile, and a request's TPOT spreads with the
iteration-time mix (`SteadyState.tpot_at`). The KV cache bounds B:
the decoders' contexts are spread over the output, so B sequences hold B x (I + O/2) tokens on
average (plus a partly filled block each). Nothing here is fitted: every time is a step of the
execution model, the same function `predict` and `simulate` use.
"""

from __future__ import annotations

import bisect
import functools
import math
import statistics
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, fields, replace

import numpy as np

from tokenfab.cost.bands import DEFAULT_BAND_LEVEL, Band, add_bands, composite_band
from tokenfab.errors import DoesNotFitError, InvalidInputError
from tokenfab.execution.bands import SERVING_TPOT, step_parts
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.step import StepModel
from tokenfab.serving.eager import eager_host_s


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """The engine's scheduling as the steady state sees it (`limits_for` builds it from an EngineSpec)."""

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_tokens: int = 16
    chunked_prefill: bool = True
    prefill_first: bool = False  # waiting prompts run in an iteration of their own (SGLang)
    cuda_graph_sizes: tuple[int, ...] = ()  # decode-only batches padded up to these
    step_overhead_s: float = 0.0  # host time per iteration (fitted per engine)
    reserve_kv: bool = False  # admit only requests whose whole output fits (TensorRT-LLM)
    frontend_s: float = 0.0  # serial front-end time per request before the engine (fitted per engine; 0: none)
    prefill_overhead_s: float = 0.0  # host time of an iteration carrying prompt work, run eagerly (`serving.eager`)
    prefill_overhead_overlaps: bool = False  # that host time runs beside the kernels (the longer of the two)
    delivery_s_per_token: float = 0.0  # the same serial server's time per streamed output token (fitted per release)

    def server_s(self, output_len: int) -> float:
        """Time one request takes of the serial server process: its front end plus streaming its output tokens."""
        return self.frontend_s + self.delivery_s_per_token * output_len


@functools.lru_cache(maxsize=64)
def _normal_quantile(q: float) -> float:
    """The standard normal's q-quantile, cached: a bisection asks for the same percentile many times."""
    return statistics.NormalDist().inv_cdf(q)


@dataclass(frozen=True, slots=True)
class SteadyState:
    """One replica's steady state at `batch` running sequences (times s, rates per s, power W)."""

    batch: int
    num_decode: float
    tokens_per_s: float
    requests_per_s: float
    tpot_s: float
    ttft_s: float
    iteration_s: float
    power_w: float
    kv_tokens: float
    iteration_std_s: float = 0.0  # spread of iteration times (prefills ride in some, not others)

    def tpot_at(self, percentile: float, output_len: int) -> float:
        """A request's TPOT at `percentile`: the mean of its O - 1 iterations, each drawn from the
        iteration-time mix (independent draws: the mean's spread is std / sqrt(O - 1))."""
        if self.iteration_std_s <= 0.0 or percentile <= 50.0:
            return self.tpot_s
        z = _normal_quantile(min(percentile, 99.99) / 100.0)
        return self.tpot_s + z * self.iteration_std_s / math.sqrt(max(1, output_len - 1))

    def point(self, i: int) -> SteadyState:
        """Chip `i`'s state out of one whose figures are arrays over chips (a sweep's); floats stay."""
        return SteadyState(**{f.name: _item(getattr(self, f.name), i) for f in fields(self)})

    def to_dict(self) -> dict:
        return {"batch": self.batch, "num_decode": self.num_decode, "tokens_per_s": self.tokens_per_s,
                "requests_per_s": self.requests_per_s, "tpot_s": self.tpot_s, "ttft_s": self.ttft_s,
                "iteration_s": self.iteration_s, "power_w": self.power_w, "kv_tokens": self.kv_tokens}


def _item(value, i: int):
    return float(value[i]) if isinstance(value, np.ndarray) else value


@dataclass(frozen=True, slots=True)
class CapacityResult:
    """The best steady state within the SLO, per replica and per chip."""

    state: SteadyState
    num_devices: int
    max_batch: int  # largest batch the KV cache and the engine limits allow
    band: Band | None = None  # error band of the decode iteration the throughput rests on (docs/bands.md)

    @property
    def tokens_per_s_per_chip(self) -> float:
        return self.state.tokens_per_s / self.num_devices

    @property
    def power_w_per_chip(self) -> float:
        return self.state.power_w / self.num_devices

    def to_dict(self) -> dict:
        out = {**self.state.to_dict(), "num_devices": self.num_devices, "max_batch": self.max_batch,
               "tokens_per_s_per_chip": self.tokens_per_s_per_chip, "power_w_per_chip": self.power_w_per_chip}
        if self.band is None:
            return out
        out["band_level"] = self.band.level
        return add_bands(out, self.band, ("tpot_s", "iteration_s", "tokens_per_s", "requests_per_s", "tokens_per_s_per_chip"))


class IterationTimes:
    """Iteration times of one deployment under an engine's policy: the step model's time plus the
    engine's host overhead (the idle draw of the replica meanwhile), decode-only batches padded to
    the next captured CUDA-graph size, linear between integer decode counts.

    `step_time_energy` is the one place a step is timed. A design sweep overrides it to return the
    step's (time, energy) for many chips at once as arrays (an exact vectorisation of `StepModel.step`,
    tested equal to it), with `ovh_j` an array of the chips' idle draw; every other line here, and
    the steady state built on it, then runs unchanged on arrays."""

    def __init__(self, sm: StepModel, limits: EngineLimits | None = None):
        limits = limits or EngineLimits()
        self.sm, self.sizes, self.ovh = sm, limits.cuda_graph_sizes, limits.step_overhead_s
        idle_w = sm.system.chip.power.idle_w.value * sm.par.num_devices
        self.ovh_j = idle_w * self.ovh
        self.idle_w, self.pre, self.pre_overlaps = idle_w, limits.prefill_overhead_s, limits.prefill_overhead_overlaps

    def step_time_energy(self, batch: StepBatch):
        """(time s, energy J) of one engine step: `StepModel.step`, the function predict and simulate use."""
        r = self.sm.step(batch)
        return r.time_s, r.energy_j

    def _one(self, prefill: tuple, n: int, kv: float, eager: bool = True):
        if not prefill and not n:
            return 0.0, 0.0  # no work, no iteration
        if not prefill and n and self.sizes and n <= self.sizes[-1]:
            padded = self.sizes[bisect.bisect_left(self.sizes, n)]
            n, kv = padded, kv * n / padded  # padding rows hold no KV (as the replica costs them)
        t, e = self.step_time_energy(StepBatch(prefill, n, kv if n else 0.0))
        if prefill and eager and self.pre:  # prompt work runs eagerly: its host time, as `serving.replica` charges it
            h = self.eager_s(t)
            t, e = t + h, e + self.idle_w * h
        return t + self.ovh, e + self.ovh_j

    def eager_s(self, kernels_s):
        """Host time an iteration with prompt work adds to its kernels' `kernels_s` (`serving.eager`)."""
        return eager_host_s(self.pre, self.pre_overlaps, kernels_s)

    def prompt_only(self, prefill: tuple, eager: bool = True):
        """A prefill-first engine's prompt-only iteration: the step, its eager host time and the per-step one."""
        return self._one(prefill, 0, 0.0, eager)

    def at(self, prefill: tuple, num_decode: float, kv: float, eager: bool = True):
        lo = int(num_decode)
        t0, e0 = self._one(prefill, lo, kv, eager)
        w = num_decode - lo
        if w < 1e-9:
            return t0, e0
        t1, e1 = self._one(prefill, lo + 1, kv, eager)
        return t0 + w * (t1 - t0), e0 + w * (e1 - e0)


def _chunks(input_len: int, room: int) -> list[tuple[int, int, int]]:
    """Prefill chunks (1, q, kv_end) of one prompt when `room` tokens per iteration are left."""
    room = max(1, room)
    out, done = [], 0
    while done < input_len:
        q = min(room, input_len - done)
        done += q
        out.append((1, q, done))
    return out


def _poisson(mean: float, tail: float = 1e-4) -> list[tuple[int, float]]:
    """(n, probability) of a Poisson count, renormalised after dropping a tail below `tail`."""
    out, p, n, total = [], math.exp(-mean), 0, 0.0
    while True:
        out.append((n, p))
        total += p
        if n > mean and 1.0 - total < tail:
            break
        n += 1
        p *= mean / n
    return [(k, q / total) for k, q in out]


def kv_tokens_at(batch: int, input_len: int, output_len: int, block_tokens: int) -> float:
    """KV tokens B staggered sequences hold on average: prompt, half the output, half a block each."""
    return batch * (input_len + output_len / 2 + block_tokens / 2)


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # StepModel -> {key: SteadyState}


def estimate_steady_state(sm: StepModel, batch: int, input_len: int, output_len: int, limits: EngineLimits,
                          wait_frac: float = 0.5, _stepper: IterationTimes | None = None) -> SteadyState:
    """Steady state of one replica holding `batch` sequences (see `steady_state`), memoised per step
    model: a search asks for the same states under many engine limits that do not change them."""
    key = (batch, input_len, output_len, limits.max_num_batched_tokens, limits.chunked_prefill, limits.block_tokens,
           limits.prefill_first, limits.cuda_graph_sizes, limits.step_overhead_s, limits.prefill_overhead_s,
           limits.prefill_overhead_overlaps, wait_frac)
    cache = _STATES.get(sm)
    if cache is None:
        cache = _STATES[sm] = {}
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = steady_state(_stepper or IterationTimes(sm, limits), batch, input_len, output_len, limits,
                                        wait_frac)
    return hit


def _iteration_mix(st: IterationTimes, chunks: list, c: float, d: float, kv: float,
                   first: bool) -> tuple[float, float, float, float]:
    """(mean iteration time, mean energy, mean squared time, TTFT chain of one prompt) with d decoders
    on average and c prompts admitted per iteration, each prefilled in `chunks`."""
    t_dec, e_dec = st.at((), d, kv)
    if len(chunks) == 1:
        # whole prompts ride in the decode iterations (or, prefill-first, in an iteration of their own
        # after it); completions, hence admissions, per iteration are a superposition of many
        # decoders' renewals: Poisson with mean c. The step time is convex in the prefill count
        # (memory-bound, then compute-bound), so average over it.
        (_, q, kv_end), = chunks
        t_iter = e_iter = t_sq = 0.0
        for n, p in _poisson(c):
            # the n sequences prefilling now are not decoding: d + c - n decoders (mean d)
            dn = max(0.0, d + c - n)
            if first:
                tp_, ep_ = st.prompt_only(((n, q, kv_end),)) if n else (0.0, 0.0)
                td, ed = st.at((), dn, kv)
                t, e = td + tp_, ed + ep_
            else:
                t, e = st.at(((n, q, kv_end),) if n else (), dn, kv)
            t_iter += p * t
            e_iter += p * e
            t_sq += p * t * t
        chain_s = st.prompt_only(((1, q, kv_end),))[0] if first else st.at(((1, q, kv_end),), d, kv)[0]
    else:
        # chunked prompts: each chunk adds its marginal time to the iteration it rides in (mixed with
        # the decodes), or an iteration of its own (prefill-first); c prompts per iteration. Chunks of
        # different prompts share iterations when c x n_chunks > 1, so marginal costs, not whole
        # iterations, are summed (chunks are compute-bound: their cost is close to linear).
        # The eager host time is per iteration carrying prompt work, not per chunk: a mixed iteration pays it once
        # whatever chunks ride in it, so it is charged to the share of iterations that carry any (a prompt-only
        # iteration of a prefill-first engine carries one chunk and pays it in full).
        if first:
            mixed = [st.prompt_only((ch,)) for ch in chunks]
            chain_s = sum(t for t, _ in mixed)
            extra, h = mixed, 0.0
        else:
            mixed = [st.at((ch,), d, kv, eager=False) for ch in chunks]
            extra = [(t - t_dec, e - e_dec) for t, e in mixed]
            h = st.eager_s(t_dec - st.ovh + sum(t for t, _ in extra) / len(chunks)) if st.pre else 0.0
            chain_s = sum(t + st.eager_s(t - st.ovh) for t, _ in mixed) if st.pre else sum(t for t, _ in mixed)
        share = min(1.0, c * len(chunks))
        t_iter = t_dec + c * sum(t for t, _ in extra) + share * h
        e_iter = e_dec + c * sum(e for _, e in extra) + share * h * st.idle_w
        t_sq = (1.0 - share) * t_dec ** 2 + share * (t_dec + sum(t for t, _ in extra) / len(chunks) + h) ** 2
    return t_iter, e_iter, t_sq, chain_s


def steady_state(st: IterationTimes, batch: int, input_len: int, output_len: int, limits: EngineLimits,
                 wait_frac: float) -> SteadyState:
    """Steady state of one replica holding `batch` sequences (see the module docstring), not memoised.

    `wait_frac` is the share of an iteration a new request waits before it is admitted (0: it
    arrives as a slot frees, as closed-loop clients do; p/100 for the p-th percentile of open-loop
    arrivals, whose wait for the iteration in flight is uniform over it). The shapes of the steps
    depend on the batch, the lengths and the limits only, so with array times (a sweep's
    `IterationTimes`) the same lines give every chip's state at once, as arrays."""
    if output_len < 2:
        raise InvalidInputError("steady-state capacity needs an output of at least 2 tokens (one decode step)")
    kv = input_len + output_len / 2
    budget = limits.max_num_batched_tokens
    d = batch * (output_len - 1) / output_len  # first guess: one chunk per prompt
    chunks: list[tuple[int, int, int]] = []
    for _ in range(4):  # n_chunks depends on the room the decodes leave; converges in 1-2 rounds
        chunks = _chunks(input_len, budget - math.ceil(d))
        d = batch * (output_len - 1) / (output_len - 1 + len(chunks))
    c = d / (output_len - 1)
    saturated = c * input_len > max(0.0, budget - d) + 1e-9
    if saturated or (not limits.chunked_prefill and input_len > budget):
        # budget-bound: prefills queue; report the throughput ceiling and an unbounded TTFT
        d = budget * (output_len - 1) / (input_len + output_len - 1)
        c = d / (output_len - 1)
        chunks = _chunks(input_len, budget - math.ceil(d))
        saturated = True
    t_iter, e_iter, t_sq, chain_s = _iteration_mix(st, chunks, c, d, kv, limits.prefill_first)
    ttft = math.inf if saturated else chain_s + wait_frac * t_iter
    return SteadyState(batch=batch, num_decode=d, tokens_per_s=c * output_len / t_iter, requests_per_s=c / t_iter,
                       tpot_s=t_iter, ttft_s=ttft, iteration_s=t_iter, power_w=e_iter / t_iter,
                       kv_tokens=kv_tokens_at(batch, input_len, output_len, limits.block_tokens),
                       iteration_std_s=_sqrt_pos(t_sq - t_iter * t_iter))


def _sqrt_pos(x):
    """sqrt(max(0, x)) of a float or, elementwise, an array (both correctly rounded: the same values)."""
    if isinstance(x, np.ndarray):
        return np.sqrt(np.maximum(x, 0.0))
    return math.sqrt(max(0.0, x))


def _mva(clients: int, engine_s: float, frontend_s: float) -> tuple[float, float]:
    """(throughput, time in the front end) of `clients` closed-loop clients cycling through one FCFS server of service
    `frontend_s` and a delay of `engine_s`: mean-value analysis (exact for exponential service; a deterministic server
    queues less, so this errs towards a longer wait)."""
    x, r, q = 0.0, frontend_s, 0.0
    for n in range(1, clients + 1):
        r = frontend_s * (1.0 + q)
        x = n / (engine_s + r)
        q = x * r
    return x, r


def closed_loop_state(sm: StepModel, clients: int, input_len: int, output_len: int, limits: EngineLimits,
                      _stepper: IterationTimes | None = None) -> SteadyState:
    """Steady state of `clients` closed-loop clients whose requests each pass the engine's serial front end
    (`limits.frontend_s`: one request at a time, as an API server's request handling in one process) before the engine
    holds them. Without a front end every client's request is in the engine: the steady state at batch = clients.
    With one, the clients divide between the front end and the engine: `_mva` of the front end and the engine as a
    delay of one request's time in it (Z = batch / requests per s, Little's law), iterated because the batch the
    engine then holds, X x Z, sets Z. TTFT adds the time in the front end. Where the same server also streams the
    tokens (`limits.delivery_s_per_token`, `serving.delivery`), a request's demand on it is its front end plus its
    output tokens' delivery (`EngineLimits.server_s`), which bounds the throughput; the wait is charged to TTFT (the
    simulator also spaces the tokens of a saturated server, which this mean-value view leaves in TTFT)."""
    state = estimate_steady_state(sm, clients, input_len, output_len, limits, 0.0, _stepper)
    demand_s = limits.server_s(output_len)
    if demand_s <= 0.0:
        return state
    batch, x, front_s = clients, state.requests_per_s, 0.0
    for _ in range(12):
        x, front_s = _mva(clients, batch / state.requests_per_s, demand_s)
        new = max(1, min(clients, round(x * batch / state.requests_per_s)))
        if new == batch:
            break
        batch = max(1, (batch + new) // 2) if abs(new - batch) > 1 else new  # damped: the batch sets Z
        state = estimate_steady_state(sm, batch, input_len, output_len, limits, 0.0, _stepper)
    return replace(state, tokens_per_s=x * output_len, requests_per_s=x, ttft_s=state.ttft_s + front_s)


def _open_loop_frontend(state: SteadyState, frontend_s: float) -> SteadyState:
    """An open-loop state behind a serial front end: Poisson arrivals at the state's request rate queue for it
    (M/D/1 mean wait rho f / 2(1 - rho)) and TTFT adds wait and service; at rho >= 1 the front end cannot feed the
    state (TTFT unbounded)."""
    if frontend_s <= 0.0:
        return state
    rho = state.requests_per_s * frontend_s
    wait = math.inf if rho >= 1.0 else rho * frontend_s / (2.0 * (1.0 - rho))
    return replace(state, ttft_s=state.ttft_s + frontend_s + wait)


def max_batch_for(memory: MemoryModel, input_len: int, output_len: int, limits: EngineLimits) -> int:
    """Most sequences the engine runs at once: max_num_seqs, and the KV cache at the mean context."""
    cap = memory.kv_capacity_tokens(limits.max_num_batched_tokens, limits.max_num_seqs)
    cap = cap // limits.block_tokens * limits.block_tokens
    if cap < input_len + output_len:
        return 0
    per_seq = (input_len + output_len + limits.block_tokens if limits.reserve_kv
               else kv_tokens_at(1, input_len, output_len, limits.block_tokens))
    return max(1, min(limits.max_num_seqs, int(cap // per_seq)))


@functools.lru_cache(maxsize=65536)
def tail_batch(mean_batch: int, percentile: float) -> int:
    """Running sequences at the `percentile` under open-loop (Poisson) arrivals with `mean_batch` on
    average: below the engine's limits every request is served at once, so the replica is an
    M/G/infinity system and the number in it is Poisson with mean = arrival rate x time in system
    (Little's law), whatever the length distributions. (The smallest k with P(N <= k) >= p, summed
    in log space so large means do not underflow; scipy.stats.poisson.ppf gives the same.)"""
    q, m = percentile / 100.0, float(mean_batch)
    log_p, cdf, k = -m, 0.0, 0
    while True:
        cdf += math.exp(log_p)
        if cdf >= q - 1e-12:
            return max(mean_batch, k)
        k += 1
        log_p += math.log(m / k)


def bisection(top: int, output_len: int, ttft_s: float | None, tpot_s: float | None, percentile: float,
              closed_loop: bool) -> Generator[int, SteadyState, SteadyState | None]:
    """The search `estimate_capacity` runs, as a generator: it yields each batch whose steady state it
    needs, is sent that state, and returns the state to report (None when even one sequence misses
    the SLO). `top` (>= 1) is the largest batch the KV cache and engine allow. `best_state` drives it
    with a function; a design sweep drives thousands at once, in lock-step, on states it computes for
    all the chips that ask for the same batch together.

    Closed loop (a fixed number of clients): the biggest batch whose TPOT and TTFT meet the targets.
    Open loop (arrivals at a rate): the biggest mean batch whose `percentile` batch (`tail_batch`)
    still meets them and fits the KV cache; throughput is the mean batch's, latency the tail's.
    Latency and throughput grow with the batch, so bisection finds it."""

    def meets(s: SteadyState) -> bool:
        tpot = s.tpot_at(percentile, output_len)
        return (tpot_s is None or tpot <= tpot_s) and (ttft_s is None or s.ttft_s <= ttft_s)

    def tail(b: int) -> int:
        return b if closed_loop else tail_batch(b, percentile)

    def ok(b: int) -> Generator[int, SteadyState, bool]:
        t = tail(b)
        if t > top:
            return False
        return meets((yield t))

    if not meets((yield 1)):
        return None
    lo, hi = 1, top + 1  # invariant: ok(lo) (or lo == 1, light load), not ok(hi)
    if (yield from ok(top)):
        lo = top
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if (yield from ok(mid)):
                lo = mid
            else:
                hi = mid
    mean = yield lo
    worst = yield min(tail(lo), top)
    tail_tpot = max(mean.tpot_at(percentile, output_len), worst.tpot_at(percentile, output_len))
    return replace(mean, tpot_s=tail_tpot, ttft_s=max(mean.ttft_s, worst.ttft_s))


def best_state(state: Callable[[int], SteadyState], top: int, output_len: int, ttft_s: float | None,
               tpot_s: float | None, percentile: float, closed_loop: bool) -> SteadyState | None:
    """`bisection` on the steady state at each batch that `state` gives."""
    search = bisection(top, output_len, ttft_s, tpot_s, percentile, closed_loop)
    try:
        b = next(search)
        while True:
            b = search.send(state(b))
    except StopIteration as done:
        return done.value


def estimate_capacity(sm: StepModel, memory: MemoryModel, input_len: int, output_len: int, ttft_s: float | None,
                      tpot_s: float | None, limits: EngineLimits = EngineLimits(), percentile: float = 99.0,
                      closed_loop: bool = False) -> CapacityResult:
    """The largest steady-state throughput within the SLO, up to what the KV cache and engine allow
    (`best_state` on the step model's steady states). Raises DoesNotFitError when even one sequence
    misses the SLO."""
    top = max_batch_for(memory, input_len, output_len, limits)
    if top < 1:
        raise DoesNotFitError(f"{sm.model.name}: no room for one {input_len}+{output_len}-token sequence's KV cache "
                              f"on {sm.system.chip.name} with tp={sm.par.tp} pp={sm.par.pp}")
    st = IterationTimes(sm, limits)
    wait = 0.0 if closed_loop else percentile / 100.0

    def state(b: int) -> SteadyState:
        if closed_loop:  # b clients, some of them in the front end's queue when it has one
            return closed_loop_state(sm, b, input_len, output_len, limits, st)
        return _open_loop_frontend(estimate_steady_state(sm, b, input_len, output_len, limits, wait, st),
                                   limits.server_s(output_len))

    best = best_state(state, top, output_len, ttft_s, tpot_s, percentile, closed_loop)
    if best is None:
        first = state(1)
        raise DoesNotFitError(
            f"{sm.model.name} on {sm.system.chip.name} tp={sm.par.tp} pp={sm.par.pp}: even one sequence misses the SLO "
            f"(TPOT {first.tpot_s * 1e3:.1f} ms, TTFT {first.ttft_s * 1e3:.0f} ms)")
    decode = sm.step(StepBatch((), max(1, round(best.num_decode)), float(input_len + output_len / 2)))
    band = composite_band(step_parts(decode.breakdown, "decode"), DEFAULT_BAND_LEVEL, SERVING_TPOT)
    return CapacityResult(state=best, num_devices=sm.par.num_devices, max_batch=top, band=band)
