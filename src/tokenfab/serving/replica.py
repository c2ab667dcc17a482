"""One serving replica: a continuous-batching scheduler over a paged KV cache.

Each iteration (vLLM V1 style) every decoding request gets one token, partially prefilled
requests continue their prompt in chunks, and waiting requests are admitted while the
token budget (`max_num_batched_tokens`), the sequence limit (`max_num_seqs`) and free KV
blocks allow; when a decoding request needs a block and none is left, the most recently
admitted request is preempted (recompute: its KV is dropped and it re-prefills later; swap:
its KV goes to host memory and comes back).

Speed: while no request is prefilling and nothing can be admitted, the batch does not
change until the next completion, KV-block shortage or arrival, so the whole run of decode
iterations is advanced in closed form. Decoders are kept as aggregates (count, total KV,
block-boundary phases, a heap of finishing iterations), so per-event work does not grow
with the batch.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heappop, heappush
from dataclasses import dataclass
from typing import Protocol

from tokenfab.serving.admission import Admission
from tokenfab.serving.batch_wait import batch_wait_of
from tokenfab.serving.completion import Completion
from tokenfab.serving.eager import eager_host_s
from tokenfab.serving.invariants import check_replica
from tokenfab.serving.kvcache import BlockPool
from tokenfab.serving.metrics import TimeSeries
from tokenfab.serving.policies import make_queue
from tokenfab.serving.request import Request

class StepTimer(Protocol):
    """How long a replica's engine step takes: the only thing the simulator asks of the execution
    model (tests inject a stub). Times in seconds, energies in joules over the replica's devices."""

    def step(self, prefill: tuple, num_decode: int, decode_kv_len: float) -> tuple[float, float]:
        """One step: prefill groups ((n, q_len, kv_len), ...) plus `num_decode` decoding sequences."""
        ...

    def decode_pair(self, num_decode: int, kv_first: float, kv_last: float) -> tuple[float, float, float, float]:
        """(t_first, e_first, t_last, e_last): first and last step of a run of decode-only steps."""
        ...

MAX_RUN = 4096  # longest closed-form decode run (bounds the linear-in-context approximation)
# The inlined common cases of admission, prefill completion and decode finish (and the simulator's inlined
# arrival): False makes replicas built afterwards take the general methods everywhere, which the equality test
# (tests/property/test_simulate_fast_paths.py) runs against.
FAST_PATHS = True


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything a replica needs, as plain values (built from a deployment by the simulator)."""

    step: StepTimer
    kv_blocks: int
    block_tokens: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunked_prefill: bool = True
    prefix_caching: bool = True
    hash_block_tokens: int = 16
    preemption: str = "recompute"
    queue: str = "fcfs"
    role: str = "both"  # "both", "prefill" (disaggregated prefill pool) or "decode"
    max_context_tokens: int = 1 << 30
    kv_bytes_per_token: float = 0.0  # per device, for swapping
    swap_bytes_per_s: float = 25e9
    idle_power_w: float = 0.0  # all devices of the replica
    policy: SchedulerPolicy | None = None  # the engine's scheduling choices (None: vLLM-like defaults)


class SchedulerPolicy(Protocol):
    """What an engine decides beyond budgets and limits (see `tokenfab.serving.engines`)."""

    prefill_first: bool  # waiting prompts get an iteration of their own, pausing decodes
    step_overhead_s: float  # host time per iteration beyond the kernels
    kv_full: str  # "preempt" (admit on current need) or "reserve" (admit only what can finish)

    def padded_decode(self, num_decode: int) -> int:
        """Decode batch size actually run (CUDA-graph padding)."""
        ...


class _DefaultPolicy:
    prefill_first = False
    step_overhead_s = 0.0
    kv_full = "preempt"

    def padded_decode(self, num_decode: int) -> int:
        return num_decode


@dataclass(slots=True)
class _Work:
    """What the replica is doing until `end_s`. A replica reuses one object for its iterations and decode runs
    (`Replica._w`: reached only through `Replica.work`, which is None between a completion and the next start), so
    the hot path sets fields instead of building one per iteration; the fields an iteration does not use (a run's
    times and blocks) keep earlier values that nothing reads while `run` is False."""

    end_s: float
    start_s: float
    run: bool  # closed-form decode run (interruptible) vs one planned iteration
    iters: int
    t0: float = 0.0  # run: first and last iteration times, energies
    t1: float = 0.0
    e0: float = 0.0
    e1: float = 0.0
    chunks: tuple | list = ()  # iteration: (request, tokens) prefill chunks
    blocks: int = 0  # run: blocks pre-allocated for the run's KV growth
    decode: bool = True  # the decoders advance (False: a prefill-only iteration of a prefill-first engine)
    batch: int = 0  # sequences in the work and the KV use when it started (for the time series)
    kv_frac: float = 0.0


class Replica(Admission, Completion):
    """The iteration state machine: `start` plans the next iteration or decode run, `complete` applies it
    (`serving.completion`), `arrive` queues a request; who is admitted is `serving.admission`'s."""

    def __init__(self, index: int, spec: ReplicaSpec):
        self.index, self.spec = index, spec
        self.pool = BlockPool(spec.kv_blocks, spec.block_tokens, spec.hash_block_tokens, spec.prefix_caching)
        self.waiting = make_queue(spec.queue)
        self.prefilling: list[Request] = []
        self.stack: list[Request] = []  # admission order, for preemption (lazy: skip finished)
        self._stack_cap = 64  # rebuild the stack without finished entries beyond this length
        self.g = 0  # iterations run
        self.num_decode = 0
        self.sum_kv = 0  # KV tokens of decoding requests
        self.bins = [0] * spec.block_tokens  # decoders by (kv - g) mod block size: block-boundary phase
        # Finishing iterations: a heap of the distinct iterations at which some decoder finishes (plain ints,
        # cheap to sift) and who finishes at each; a preempted decoder's entry goes stale and is skipped.
        self.finish_heap: list[int] = []
        self.finishing: dict[int, list[Request]] = {}
        self.work: _Work | None = None
        self._w = _Work(0.0, 0.0, False, 0)  # the work object `start` fills in (see `_Work`)
        self.idle_since = 0.0
        self.energy_j = 0.0
        self.busy_s = 0.0
        self.outstanding = 0
        self.preempted = 0
        self.swap_s = 0.0
        # where busy time goes, by batch size and KV use (the simulator's time series; None: not recorded). Its
        # `sample` is called once or twice per request; the replica adds the common case (an interval inside one
        # bucket) itself, the same three sums `TimeSeries.sample` makes.
        self.series: TimeSeries | None = None
        self._bs, self._budget, self._idle_w = spec.block_tokens, spec.max_num_batched_tokens, spec.idle_power_w
        self._step, self._decode_pair = spec.step.step, spec.step.decode_pair
        self.policy: SchedulerPolicy = spec.policy or _DefaultPolicy()
        # host time per engine iteration; a speculative timer counts iterations in tokens (tau per iteration)
        self._overhead_s = self.policy.step_overhead_s / getattr(spec.step, "tau", 1.0)
        self._overhead_j = self._idle_w * self._overhead_s  # the idle power over that host time (the same product)
        self._reserve = self.policy.kv_full == "reserve"
        # host time of an iteration carrying prompt work beyond `step_overhead_s` (the engines run those eagerly,
        # outside their CUDA graphs: SGLang's prompt-only iterations, TensorRT-LLM's with a context request); 0 for a
        # policy without the field
        self._prefill_overhead_s = getattr(self.policy, "prefill_overhead_s", 0.0)
        self._eager_overlap = getattr(self.policy, "prefill_overhead_overlaps", False)
        self._fast = FAST_PATHS
        self._general_prefill_done = spec.role == "prefill" or not FAST_PATHS  # every prefill completion via _prefill_done
        self.inline_done = FAST_PATHS and spec.role != "prefill"  # the simulator may log its finished requests inline
        # Prefill-first iterations admit only requests that prefill: a decode pool's hand-offs and swapped-out
        # requests resume decoding directly, through the ordinary decode iteration.
        self._prefill_first = self.policy.prefill_first and spec.role != "decode" and spec.preemption != "swap"
        self._final_private = 0  # reserve policy: private blocks the running requests will hold when they finish
        # hot-path constants: the longest request `rejects` lets through, and the CUDA-graph padding of every
        # decode batch size up to max_num_seqs (the policy's own function, tabulated)
        self._max_request_tokens = min(spec.max_context_tokens, spec.kv_blocks * spec.block_tokens)
        # `_admit`'s constants: the sequence limit, chunking, whether its inlined plain case applies, a FIFO deque
        self._max_seqs, self._chunked = spec.max_num_seqs, spec.chunked_prefill
        self._plain_admit = FAST_PATHS and not self._reserve
        self._fifo = isinstance(self.waiting, deque)
        self._padded = [0] + [self.policy.padded_decode(n) for n in range(1, min(spec.max_num_seqs, 2048) + 1)]
        # attention-DP context balancing (`serving.attention_dp.BalanceGate`, shared by an instance's ranks): whether
        # waiting prompts may start, and while they may not, the most decode iterations to run before asking again
        self.gate = None
        self.hold_iters = MAX_RUN
        # ranks of this replica's attention-DP instance whose iterations it shares (the simulator's lock step,
        # `Simulation._start_rank`); None: a replica on its own clock
        self.siblings: list | None = None
        self.joins_until = 0.0  # a sibling's prefill iteration ending by then is one this rank joins (not waits for)
        # disaggregated decode pool: hand-offs admitted in the iteration being planned, whose first token the client
        # sees when that iteration ends (the decode side streams the prefill's token after the KV arrived)
        self._first_out: list[Request] = []
        # TensorRT-LLM's batch waiting (`serving.batch_wait`; None: off)
        self.batch_wait = batch_wait_of(self.policy, spec.max_num_batched_tokens, spec.role)

    # -- views for routers --------------------------------------------------------------
    def outstanding_tokens(self) -> int:
        return self.outstanding

    def cached_prefix_blocks(self, req: Request) -> int:
        if not req.hash_ids or not self.spec.prefix_caching:
            return 0
        return self.pool.leading_hits(req.hash_ids)

    @property
    def num_running(self) -> int:
        return self.num_decode + len(self.prefilling)

    def rejects(self, req: Request) -> str | None:
        """Why this request can never run here (None if it can)."""
        p, o = req.prompt_len, req.output_len
        if 0 < p and 0 < o and p + o <= self._max_request_tokens and (self.spec.chunked_prefill or p <= self._budget):
            return None  # the common case, the negation of every test below
        total = req.prompt_len + req.output_len
        if req.prompt_len <= 0 or req.output_len <= 0:
            return "zero-length prompt or output"
        if total > self.spec.max_context_tokens:
            return f"longer than the model's {self.spec.max_context_tokens}-token context"
        if math.ceil(total / self.spec.block_tokens) > self.spec.kv_blocks:
            return f"longer than the replica's KV capacity ({self.spec.kv_blocks * self.spec.block_tokens} tokens)"
        if not self.spec.chunked_prefill and req.prompt_len > self.spec.max_num_batched_tokens:
            return f"prompt longer than max_num_batched_tokens ({self.spec.max_num_batched_tokens}) without chunked prefill"
        return None

    def enqueue(self, req: Request) -> None:
        """Queue a new request, or (disaggregated decode pool) one arriving with its prompt's KV."""
        req.replica = self.index
        self.outstanding += req.prompt_len + req.output_len
        self.waiting.push(req)

    def arrive(self, req: Request, now: float) -> float | None:
        """`enqueue`, then start if idle or cut a decode run short (the simulator's `_kick`); returns the new end
        time of the work (None: unchanged or idle)."""
        req.replica = self.index
        self.outstanding += req.prompt_len + req.output_len
        self.waiting.push(req)
        return self.start(now) if self.work is None else self.interrupt(now)

    # -- block accounting -----------------------------------------------------------------
    def _blocks_for(self, req: Request, kv_tokens: int) -> int:
        return -(-kv_tokens // self.spec.block_tokens) - req.shared_blocks

    def _kv(self, req: Request) -> int:
        """KV tokens a request holds now."""
        if req.decode_join >= 0:
            return req.computed + (self.g - req.decode_join)
        return req.computed

    def _crossings(self, k: int) -> int:
        """New KV blocks the decoders need over the next k iterations: every decoder crosses a block
        boundary once per `block_tokens` iterations; the remainder comes from the phase bins."""
        bs = self._bs
        full, rest = divmod(k, bs)
        need = full * self.num_decode
        if rest:
            start = (-self.g) % bs  # phase of the decoders that need a block at this iteration
            bins = self.bins
            # iterations g, g+1, ... need the bins at phases start, start-1, ... (mod bs)
            if rest <= start + 1:
                need += sum(bins[start - rest + 1:start + 1])
            else:
                need += sum(bins[:start + 1]) + sum(bins[bs - (rest - start - 1):])
        return need

    # -- leaving the running set ------------------------------------------------------------
    def _release(self, req: Request, kv: int) -> None:
        """Give back a request's private KV blocks and its prefix-cache references."""
        self.pool.release(-(-kv // self._bs) - req.shared_blocks)  # _blocks_for, inlined
        if req.final_blocks:
            self._final_private -= req.final_blocks
            req.final_blocks = 0
        if req.cache_refs:
            self.pool.drop(req.cache_refs)
            req.cache_refs = ()
        req.shared_blocks = 0

    def _stop_decoding(self, req: Request) -> int:
        """Remove a decoder from the aggregates, bringing its own counters up to date; returns its KV."""
        kv = self._kv(req)
        req.generated += self.g - req.decode_join
        self.num_decode -= 1
        self.sum_kv -= kv
        self.bins[(req.computed - req.decode_join) % self.spec.block_tokens] -= 1
        req.computed, req.decode_join = kv, -1
        return kv

    def _finished(self, req: Request, now: float, done: list[Request]) -> None:
        req.finish_s = now
        self.outstanding -= req.prompt_len + req.output_len
        done.append(req)

    # -- planning -----------------------------------------------------------------------------
    def _prefill_done(self, req: Request, now: float, done: list[Request]) -> None:
        """A request's prefill finished in this iteration: it emits a token, then decodes or finishes."""
        self.prefilling.remove(req)
        req.generated += 1
        if req.first_token_s < 0:
            req.first_token_s = now
        if req.hash_ids and not req.published:
            self._publish(req)
        if self.spec.role == "prefill":  # disaggregated: the KV leaves for the decode pool
            self._release(req, req.computed)
            self.outstanding -= req.prompt_len + req.output_len
            done.append(req)
        elif req.generated >= req.output_len:
            self._release(req, req.computed)
            self._finished(req, now, done)
        else:
            self._start_decoding(req)

    def _start_decoding(self, req: Request) -> None:
        """Enter the decode aggregates: its KV count, block phase and finishing iteration."""
        req.decode_join = self.g
        self.num_decode += 1
        self.sum_kv += req.computed
        self.bins[(req.computed - self.g) % self.spec.block_tokens] += 1
        finish_at = self.g + (req.output_len - req.generated)
        bucket = self.finishing.get(finish_at)
        if bucket is None:
            self.finishing[finish_at] = [req]
            heappush(self.finish_heap, finish_at)
        else:
            bucket.append(req)

    def start(self, now: float) -> float | None:
        """Plan the next iteration (or decode run) at `now`; returns its end time, None if idle."""
        if self.work is not None:
            raise AssertionError("replica already busy")
        prefilling, waiting, pool, bins, bs = self.prefilling, self.waiting, self.pool, self.bins, self._bs
        if not self.num_decode and not prefilling and not waiting:
            return None
        if now > self.idle_since:
            self.energy_j += self._idle_w * (now - self.idle_since)
        if self._prefill_first and (prefilling or waiting):
            end = self._start_prefill_only(now)
            if end is not None:
                return end
        extra: list[float] = []
        need = bins[(-self.g) % bs]
        if need > pool.free:
            while need > pool.available:
                spent = self._preempt_one()
                if spent is None:
                    raise AssertionError("KV blocks exhausted with nothing left to preempt")
                extra.append(spent)
                need = bins[(-self.g) % bs]
        budget = self._budget - self.num_decode
        chunks: list[tuple[Request, int]] = []
        if prefilling:
            budget = self._continue_prefills(chunks, budget, need, extra)
            need = bins[(-self.g) % bs]
        if (waiting and budget > 0 and (self.gate is None or self.gate.admits(self))
                and not (self.batch_wait is not None and self.batch_wait.holds(self, budget))):
            self._admit(budget, extra, chunks)
        if not chunks and self.num_decode == 0:
            self.idle_since = now
            return None
        if need <= pool.free:  # pool.allocate's first case, inlined
            pool.free -= need
        else:
            pool.allocate(need)
        if not chunks and not prefilling:
            # Waiting requests (if any) were just refused for lack of blocks, slots or budget, and
            # stay refused until the batch changes: a completion, a shortage or an arrival.
            return self._start_run(now, sum(extra) if extra else 0.0)
        n = self.num_decode
        if len(chunks) == 1:  # the common cases, without a list comprehension
            r, q = chunks[0]
            prefill = ((1, q, r.computed + q),)
        elif len(chunks) == 2:
            (r, q), (r2, q2) = chunks
            prefill = ((1, q, r.computed + q), (1, q2, r2.computed + q2))
        else:
            prefill = tuple([(1, q, r.computed + q) for r, q in chunks])
        t, e = self._step(prefill, n, self.sum_kv / n + 1 if n else 0.0)
        if chunks and self._prefill_overhead_s:  # an eager iteration: its host time, the device idle meanwhile
            h = eager_host_s(self._prefill_overhead_s, self._eager_overlap, t)
            oh = self._overhead_s + h
            e += self._overhead_j + self._idle_w * h
        else:
            oh = self._overhead_s
            e += self._overhead_j
        t += oh + sum(extra) if extra else oh  # sum([]) is 0: oh + 0 is oh
        if self._first_out:
            self._emit_first(now + t)
        self.work = w = self._w  # an iteration (`_Work`); chunks: the list itself, not changed after
        w.end_s = now + t
        w.start_s = now
        w.run = False
        w.iters = 1
        w.chunks = chunks
        w.decode = True
        # _account, inlined (once per iteration)
        self.energy_j += e
        self.busy_s += t
        blocks = pool.num_blocks  # pool.used_frac(), inlined
        w.batch = batch = n + len(prefilling)
        w.kv_frac = kv = (blocks - pool.free - len(pool.lru) * pool.blocks_per_entry) / blocks if blocks else 0.0
        series = self.series
        if series is not None:  # TimeSeries.sample, its one-bucket case inlined
            width, dts = series.interval_s, series.dt
            i = int(now / width)
            if i == int((now + t) / width) and i < len(dts):
                dts[i] += t
                series.batch[i] += t * batch
                series.kv[i] += t * kv
            else:
                series.sample(now, t, batch, kv)
        return now + t

    def _start_prefill_only(self, now: float) -> float | None:
        """A prefill-first engine's iteration: prompt chunks only, decoders wait (None if nothing can be admitted)."""
        extra: list[float] = []
        chunks: list[tuple[Request, int]] = []
        budget = self._budget
        if self.prefilling:
            budget = self._continue_prefills(chunks, budget, 0, extra)
        if self.waiting and budget > 0:
            self._admit(budget, extra, chunks)
        if not chunks:
            return None
        t, e = self._step(tuple([(1, q, r.computed + q) for r, q in chunks]), 0, 0.0)
        oh = self._overhead_s + self._eager_s(t)
        t += oh + sum(extra)
        e += self._idle_w * oh
        self.work = _Work(now + t, now, False, 0, chunks=tuple(chunks), decode=False)
        self._account(now, t, e, len(self.prefilling))
        return now + t

    def _eager_s(self, kernels_s: float) -> float:
        """Host time an eager (prompt-carrying) iteration adds to its kernels' `kernels_s` (`serving.eager`)."""
        return eager_host_s(self._prefill_overhead_s, self._eager_overlap, kernels_s)

    def _start_run(self, now: float, extra_s: float) -> float:
        """Closed-form run of decode iterations until the next completion or block shortage.
        The block for this first iteration is already allocated."""
        heap, finishing = self.finish_heap, self.finishing
        while heap:  # drop finishing iterations left only with stale entries
            at = heap[0]
            for req in finishing[at]:  # any still decoding with this as its finishing iteration?
                join = req.decode_join
                if join >= 0 and req.finish_s < 0 and join + (req.output_len - req.generated) == at:
                    break
            else:
                del finishing[heappop(heap)]
                continue
            break
        else:
            raise AssertionError("decoding requests without a finishing iteration")
        n = self.num_decode
        k = heap[0] - self.g  # max(1, min(k, MAX_RUN)) as conditionals (integers: the same value)
        if k > MAX_RUN:
            k = MAX_RUN
        if k < 1:
            k = 1
        held = self.gate is not None or (self.batch_wait is not None and self.batch_wait.held_from >= 0)
        if held and self.waiting:  # prompts held (attention-DP balancing, batch waiting): ask again in time
            k = max(1, min(k, self.hold_iters))
        first_need = self.bins[(-self.g) % self._bs]
        pool = self.pool
        avail = pool.free + len(pool.lru) * pool.blocks_per_entry  # pool.available, inlined
        blocks = self._crossings(k) - first_need if k > 1 else 0  # one iteration: its block is already allocated
        if blocks > avail:
            lo, hi = 1, k  # largest k whose extra blocks fit
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self._crossings(mid) - first_need <= avail:
                    lo = mid
                else:
                    hi = mid
            k = lo
            blocks = self._crossings(k) - first_need
        if blocks <= pool.free:  # pool.allocate's first case, inlined
            pool.free -= blocks
        else:
            pool.allocate(blocks)
        kv0 = self.sum_kv / n + 1
        padded = self._padded[n] if n < len(self._padded) else self.policy.padded_decode(n)
        # the padding rows of a captured graph are dummy sequences without a KV history: they widen the GEMMs and
        # collectives, not the attention's reads (the step's KV tokens stay n x context, spread over `padded` rows)
        t0, e0, t1, e1 = self._decode_pair(padded, kv0 * n / padded, (kv0 + k - 1) * n / padded)
        oh = self._overhead_s
        if oh:
            oh_j = self._overhead_j
            t0, t1, e0, e1 = t0 + oh, t1 + oh, e0 + oh_j, e1 + oh_j
        total = k * (t0 + t1) / 2 + extra_s
        if self._first_out:
            self._emit_first(now + extra_s + t0)
        self.work = w = self._w  # a decode run (`_Work`)
        w.end_s = now + total
        w.start_s = now
        w.run = True
        w.iters = k
        w.t0 = t0
        w.t1 = t1
        w.e0 = e0
        w.e1 = e1
        w.chunks = ()
        w.blocks = blocks
        w.decode = True
        w.batch = n
        # _account, inlined (once per decode run)
        self.energy_j += k * (e0 + e1) / 2
        self.busy_s += total
        num_blocks = pool.num_blocks  # pool.used_frac(), inlined
        w.kv_frac = kv = (num_blocks - pool.free - len(pool.lru) * pool.blocks_per_entry) / num_blocks if num_blocks else 0.0
        series = self.series
        if series is not None:  # TimeSeries.sample, its one-bucket case inlined
            width, dts = series.interval_s, series.dt
            i = int(now / width)
            if i == int((now + total) / width) and i < len(dts):
                dts[i] += total
                series.batch[i] += total * n
                series.kv[i] += total * kv
            else:
                series.sample(now, total, n, kv)
        return now + total

    def _emit_first(self, at_s: float) -> None:
        """Hand-offs admitted in this work show their first token when its first iteration ends."""
        for req in self._first_out:
            req.first_token_s = at_s
        self._first_out.clear()

    def _account(self, now: float, dt: float, energy: float, batch: int) -> None:
        self.energy_j += energy
        self.busy_s += dt
        pool = self.pool
        blocks = pool.num_blocks  # pool.used_frac(), inlined (twice per request)
        kv = (blocks - pool.free - len(pool.lru) * pool.blocks_per_entry) / blocks if blocks else 0.0
        w = self.work
        w.batch, w.kv_frac = batch, kv
        if self.series is not None:
            self.series.sample(now, dt, batch, kv)

    def check_invariants(self) -> None:
        """Block conservation and aggregate consistency (for tests; O(running)): see `serving.invariants`."""
        check_replica(self)

    # -- interruption and completion ---------------------------------------------------------
