"""Discrete-event simulation of a serving deployment.

Events: request arrivals (an open-loop stream read lazily, closed-loop clients, hand-offs
from a prefill pool), and the end of each replica's current work (one iteration or a
closed-form decode run). A heap orders replica events by (time, sequence number) so ties
are deterministic; an event made stale by an interruption carries an old version number
and is skipped. Memory holds the requests in flight plus the per-request metric columns.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tokenfab.execution.memory import MemoryModel
from tokenfab.execution.step import StepModel
from tokenfab.serving import delivery
from tokenfab.serving.attention_dp import AttentionDpBalance, BalanceGate
from tokenfab.serving.disagg import KvHandoff
from tokenfab.serving.metrics import ROW, RequestLog, TimeSeries, summarize
from tokenfab.serving.policies import make_router
from tokenfab.serving.replica import Replica, ReplicaSpec
from tokenfab.serving.request import Request
from tokenfab.serving.workload import WorkloadSpec, open_loop_requests, synthetic_lengths

INF = math.inf


class SchedulerConfig(BaseModel):
    """Per-replica engine settings (defaults follow vLLM V1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_num_seqs: int = Field(default=256, ge=1, description="Most sequences in one iteration (vLLM default 256).")
    max_num_batched_tokens: int = Field(default=8192, ge=1, description="Token budget of one iteration.")
    block_tokens: int = Field(default=16, ge=1, description="Tokens per KV-cache block (vLLM default 16).")
    chunked_prefill: bool = Field(default=True, description="Split long prompts over iterations, mixed with decodes.")
    prefix_caching: bool = Field(default=True, description="Reuse KV blocks of identical prompt prefixes.")
    preemption: Literal["recompute", "swap"] = Field(default="recompute", description="What happens to a preempted request's KV.")
    policy: str = Field(default="fcfs", description="Waiting-queue policy (registry: fcfs, sjf).")
    swap_bytes_per_s: float = Field(default=25e9, gt=0, description="Host link for swapping (PCIe Gen4 x16 ~25 GB/s).")


class PoolConfig(BaseModel):
    """Replicas of one kind: how many and how each is parallelised."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    replicas: int = Field(default=1, ge=1)
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)


@dataclass
class SimulationResult:
    summary: dict
    log: RequestLog
    series: TimeSeries
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.summary, "config": self.config}

    def requests_frame(self):
        return self.log.to_frame()

    def timeseries_frame(self):
        return self.series.to_frame()


def replica_spec(sm: StepModel, mem: MemoryModel, sched: SchedulerConfig, hash_block_tokens: int,
                 role: str = "both", policy=None, speculative=None, context_len: float | None = None,
                 pipelined_limits: bool = False) -> ReplicaSpec:
    """Plain-value replica description from a deployment's step and memory models.

    `speculative` (an `execution.speculative.SpeculativeModel`) makes decode iterations speculative and
    takes the drafter's weights and KV out of the pool; `context_len` (the workload's typical prompt +
    output) costs the pool's tokens at that length, so sliding-window and linear layers hold only their
    window or state. `pipelined_limits`: `sched`'s limits are those of a step of the pp micro-batches in flight,
    pp times the engine's per-micro-batch ones (`EngineSpec.pipelined`), and the KV sizing leaves room for the
    activations of the engine's own (one micro-batch's) limits."""
    per = sm.par.pp if pipelined_limits else 1
    capacity = mem.kv_capacity_tokens(prefill_tokens=-(-sched.max_num_batched_tokens // per),
                                      num_sequences=-(-sched.max_num_seqs // per), context_len=context_len)
    timer = _StepModelTimer(sm.fast_step, sm.decode_pair)
    if speculative is not None:
        from tokenfab.serving.speculative import SpeculativeTimer

        per_token = mem.kv_bytes_per_token_at(context_len) if context_len else mem.kv_bytes_per_token
        free = capacity * per_token - speculative.extra_weights_bytes()
        capacity = max(0, int(free // (per_token + speculative.extra_kv_bytes_per_token())))
        timer = SpeculativeTimer(speculative)
    return ReplicaSpec(
        step=timer, kv_blocks=capacity // sched.block_tokens, block_tokens=sched.block_tokens,
        max_num_seqs=sched.max_num_seqs, max_num_batched_tokens=sched.max_num_batched_tokens,
        chunked_prefill=sched.chunked_prefill, prefix_caching=sched.prefix_caching,
        hash_block_tokens=hash_block_tokens, preemption=sched.preemption, queue=sched.policy, role=role,
        max_context_tokens=sm.model.max_position_embeddings, kv_bytes_per_token=mem.kv_bytes_per_token,
        swap_bytes_per_s=sched.swap_bytes_per_s,
        idle_power_w=sm.power.idle_wall_w(sm.system.chip.power.idle_w.value * sm.par.num_devices), policy=policy,
    )


@dataclass(frozen=True)
class _StepModelTimer:
    """The execution model's step model seen through the simulator's StepTimer protocol."""

    step: Callable
    decode_pair: Callable


class Simulation:
    """One run: replicas (optionally a prefill and a decode pool), a router, a workload."""

    def __init__(self, specs: Sequence[ReplicaSpec], workload: WorkloadSpec, *, seed: int = 0, router: str = "least-outstanding",
                 decode_specs: Sequence[ReplicaSpec] = (), transfer_s_per_token: float = 0.0,
                 timeseries_interval_s: float = 1.0, progress: bool = False,
                 slo_ttft_s: float | None = None, slo_tpot_s: float | None = None, check_invariants: bool = False,
                 frontend_s: float = 0.0, frontend_s_per_token: float = 0.0, request_latency_s: float = 0.0,
                 attention_dp: tuple[int, AttentionDpBalance] | None = None, handoff: KvHandoff | None = None,
                 delivery_s_per_token: float = 0.0):
        """`frontend_s` + `frontend_s_per_token` x prompt tokens: time each request spends in the serving front end
        (HTTP, detokenising the previous stream, tokenising the prompt), a single-threaded queue in front of the
        engine as in vLLM's and SGLang's API servers. Its serialisation staggers requests that clients send at
        the same instant, as real servers do. `request_latency_s`: latency each request spends between the client
        and the engine that is not serialised (network and HTTP round trip, a router hop, the first chunk's way
        back), part of the TTFT a benchmark client measures. `attention_dp` (ranks per instance, balance setting):
        each run of that many consecutive replicas is one attention-DP instance whose ranks start prompts under
        TensorRT-LLM's context balancing (`serving.attention_dp`). `handoff`: when a prefill replica's finished
        prompt reaches the decode pool (`serving.disagg`; default: `transfer_s_per_token` per prompt token, no queue).
        `delivery_s_per_token`: time per output token in the server process that streams tokens to the clients, the
        same serial server as the front end (`serving.delivery`); a request's first token and its finish are when the
        server delivered them, and its client sends the next request then. Aggregated serving only (a P/D run's decode
        side streams through its own server)."""
        if delivery_s_per_token and decode_specs:
            raise ValueError("token delivery is modelled for aggregated serving only")
        self.workload = workload
        self.rng = np.random.default_rng(seed)
        self.replicas = [Replica(i, s) for i, s in enumerate(specs)]
        self.decoders = [Replica(len(specs) + i, s) for i, s in enumerate(decode_specs)]
        self.router, self.decode_router = make_router(router), make_router("least-outstanding")
        self.handoff = handoff if handoff is not None else KvHandoff(transfer_s_per_token)
        self.series = TimeSeries(timeseries_interval_s)
        for r in self.replicas + self.decoders:
            r.series = self.series
        if attention_dp is not None:
            _gate_instances(self.replicas, *attention_dp)
        for r in self.replicas:  # ranks of an attention-DP instance costed in lock step (`attention_dp.LockstepTimer`)
            join = getattr(r.spec.step, "join", None)
            if join is not None:
                join(r)
                r.siblings = r.spec.step.ranks  # and they share iteration boundaries (`_start_rank`)
        self.log = RequestLog()
        self.rejected: Counter = Counter()
        self.events: list[tuple[float, int, int, int]] = []  # (time, seq, replica index, version)
        self.pending: list[tuple[float, int, int, Request]] = []  # (time, seq, kind, request; kind 3: a Replica)
        self.version = [0] * (len(self.replicas) + len(self.decoders))  # by replica index: its live event
        self.seq = itertools.count()
        self.issued = 0
        self.progress = progress
        self.slo_ttft_s, self.slo_tpot_s = slo_ttft_s, slo_tpot_s
        self.check_invariants = check_invariants
        self.frontend_s, self.frontend_s_per_token = frontend_s, frontend_s_per_token
        self.request_latency_s = request_latency_s
        self.front_free_s = 0.0
        self._frontend = bool(frontend_s or frontend_s_per_token)
        self.delivery_s_per_token = delivery_s_per_token
        self._warmup = workload.warmup_requests

    # -- request sources -------------------------------------------------------------------
    def _closed_loop(self) -> Iterator[tuple[int, int, tuple | None]]:
        return synthetic_lengths(self.workload, self.rng)

    def _issue_closed(self, client: int, now: float) -> None:
        if self.issued >= self.workload.total_requests:
            return
        p, o, h = next(self._lengths)
        wl = self.workload
        if wl.desync_warmup and self.issued < min(wl.warmup_requests, wl.concurrency):
            o = max(1, math.ceil(o * (client + 1) / wl.concurrency))
        think = self.workload.think_time_s
        if think > 0:
            now += self.rng.exponential(think)
        req = Request(self.issued, now, p, o, h, client=client)
        self.issued += 1
        heapq.heappush(self.pending, (now, next(self.seq), 0, req))

    # -- replica plumbing --------------------------------------------------------------------
    def _all(self) -> list[Replica]:
        return self.replicas + self.decoders

    def _schedule(self, replica: Replica, end: float | None) -> None:
        if end is None:
            return
        v = self.version[replica.index] + 1
        self.version[replica.index] = v
        heapq.heappush(self.events, (end, next(self.seq), replica.index, v))

    def _kick(self, replica: Replica, now: float) -> None:
        """A request was queued on `replica`: start it if idle, or cut its decode run short."""
        if replica.work is None:
            self._schedule(replica, replica.start(now) if replica.siblings is None else self._start_rank(replica, now))
        else:
            self._schedule(replica, replica.interrupt(now))

    def _arrive(self, req: Request, now: float) -> None:
        pool = self.replicas
        reason = pool[0].rejects(req)
        if reason is not None:
            self.rejected[reason] += 1
            if req.client >= 0:
                self._issue_closed(req.client, now)
            return
        if self._frontend:
            start = now + self.request_latency_s
            self.front_free_s = max(self.front_free_s, start) + self.frontend_s + self.frontend_s_per_token * req.prompt_len
            heapq.heappush(self.pending, (self.front_free_s, next(self.seq), 2, req))
            return
        if self.request_latency_s:
            heapq.heappush(self.pending, (now + self.request_latency_s, next(self.seq), 2, req))
            return
        self._enter_engine(req, now)

    def _enter_engine(self, req: Request, now: float) -> None:
        pool = self.replicas
        target = pool[self.router.route(req, pool)] if len(pool) > 1 else pool[0]  # one replica: nothing to choose
        target.enqueue(req)
        released = target.gate.balanced() if target.gate is not None else ()
        if target.work is not None:  # _kick, inlined
            end = target.interrupt(now)
        else:
            end = target.start(now) if target.siblings is None else self._start_rank(target, now)
        if end is not None:
            self._schedule(target, end)
        for rank in released:  # the instance's other ranks start their held prompts at their next iteration
            if rank is not target:
                self._kick(rank, now)

    def _start_rank(self, replica: Replica, now: float) -> float | None:
        """`replica.start` for a rank of an attention-DP instance, whose ranks run their iterations in lock step: every
        MoE layer's token exchange joins all ranks, so no rank begins an iteration while a sibling is inside one
        (TensorRT-LLM's PyExecutor ranks meet in each iteration's collectives, idle ranks running dummy
        requests; SGLang's DP-attention ranks all-gather their batch sizes before every forward, idle ranks
        running idle batches). A rank that would start while a sibling is in a prefill iteration starts when
        that iteration ends (its decodes wait with it). A rank that starts a prefill iteration starts it for the
        instance: every sibling with prompts waiting joins it (each rank schedules its own prompts at every
        iteration, and TensorRT-LLM's balancing decides on all-gathered counts, alike on every rank), the
        others' decode runs stop at their next iteration and wait for it. Decode runs (many iterations planned at
        once) are not waited for: their iterations are the short ones every rank runs alike."""
        boundary, joined = now, replica.joins_until
        for s in replica.siblings:
            w = s.work
            if w is not None and not w.run and w.start_s < now < w.end_s and w.end_s > boundary and w.end_s > joined:
                boundary = w.end_s
        if boundary > now:
            heapq.heappush(self.pending, (boundary, next(self.seq), 3, replica))
            return None
        queued = len(replica.waiting)
        end = replica.start(now)
        w = replica.work
        if w is None or w.run or not w.chunks:
            return end
        admitted = len(replica.waiting) < queued  # new prompts started (not only chunks of started ones)
        if admitted and replica.gate is not None:
            replica.gate.restart()  # the instance's one wait counter restarts
        for s in replica.siblings:  # a prefill iteration began: the instance's iteration
            sw = s.work
            if s is replica or (sw is not None and not sw.run):
                continue
            if admitted and len(s.waiting):  # its prompts start in this iteration too
                s.joins_until = w.end_s
                if s.gate is not None:
                    s.gate.release_at[s.index] = s.g
                self._schedule(s, self._start_rank(s, now) if sw is None else s.interrupt(now))
            elif sw is not None:
                self._schedule(s, s.interrupt(now))
        return end

    def _wake(self, replica: Replica, now: float) -> None:
        """A rank held by `_start_rank` reaches the iteration boundary it waited for."""
        if replica.work is None:
            self._schedule(replica, self._start_rank(replica, now))

    def _handoff_arrive(self, req: Request, now: float) -> None:
        # The client sees the first token from the decode side (TensorRT-LLM's disaggregated server streams the
        # generation server's response, which carries the context server's token once the KV has arrived:
        # PyExecutor._prepare_disagg_gen_transmission_complete; SGLang's decode server likewise): it is set when
        # the decode replica admits the request and its first iteration there ends (Replica._emit_first).
        req.ready_s, req.first_token_s = now, -1.0
        target = self.decoders[self.decode_router.route(req, self.decoders)]
        target.enqueue(req)
        self._kick(target, now)

    def _delivered(self, w, num_decode: int, finished: list[Request], now: float) -> float:
        """Pass the tokens of the engine work `w` that ended at `now` (`num_decode` decoders when it began) through the
        token-delivery server (`serving.delivery`): the requests whose first token it made see it, and those it
        finished see their last, when the server has delivered the batch; returns that time."""
        b = self.delivery_s_per_token
        fresh = [r for r, _ in w.chunks if r.first_token_s == now]  # prompts whose first token this iteration made
        if w.run:
            free = delivery.after_run(self.front_free_s, w.start_s, now, w.iters, w.batch * b)
        else:
            free = delivery.after_batch(self.front_free_s, now, ((num_decode if w.decode else 0) + len(fresh)) * b)
        self.front_free_s = free
        for r in fresh:
            r.first_token_s = free
        for r in finished:
            r.finish_s = free
        return free

    def _done(self, replica: Replica, reqs: list[Request], now: float, issue_s: float | None = None) -> None:
        """`reqs` finished on `replica` at `now` (their clients send again at `issue_s`, when their last token was
        delivered; `now` without a delivery stage), or, on a prefill pool, go to the decode pool."""
        prefill_pool = replica.spec.role == "prefill"
        for req in reqs:
            if prefill_pool:
                arrive = self.handoff.arrival_s(replica.index, req.prompt_len, now)
                heapq.heappush(self.pending, (arrive, next(self.seq), 1, req))
                continue
            if req.rid >= self._warmup:  # warm-up requests are served but not measured
                self.log.add(req)
            if req.client >= 0:
                self._issue_closed(req.client, now if issue_s is None else issue_s)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> SimulationResult:
        wall0 = time.perf_counter()
        wl = self.workload
        stream: Iterator[Request] = iter(())
        if wl.arrival == "closed":
            self._lengths = self._closed_loop()
            for c in range(min(wl.concurrency, wl.total_requests)):
                self._issue_closed(c, 0.0)
        else:
            stream = open_loop_requests(wl, self.rng)
        now = self._loop(stream)
        self._check_drained()
        energy = sum(r.energy_j + r.spec.idle_power_w * max(0.0, now - r.idle_since) for r in self._all())
        pool_hits = [r.pool for r in self._all()]
        lookups = sum(p.lookup_tokens for p in pool_hits)
        hit_rate = sum(p.hit_tokens for p in pool_hits) / lookups if lookups else 0.0
        summary = summarize(self.log, energy_j=energy, wall_s=time.perf_counter() - wall0,
                            preempted=sum(r.preempted for r in self._all()), rejected=self.rejected,
                            slo_ttft_s=self.slo_ttft_s, slo_tpot_s=self.slo_tpot_s, prefix_hit_rate=hit_rate,
                            series=self.series)
        return SimulationResult(summary, self.log, self.series)

    def _loop(self, stream: Iterator[Request]) -> float:
        """The event loop; returns the time of the last event. `_schedule`, `_done` (outside a prefill pool) and,
        with one replica and no front end, `_arrive` are inlined: they run once or twice per request."""
        only = self.replicas[0]
        if (len(self.replicas) == 1 and not self.decoders and not self._frontend and not self.request_latency_s
                and only._fast and only.inline_done and only.gate is None and not self.delivery_s_per_token):
            return self._loop_single(stream, only)
        return self._loop_general(stream)

    def _loop_general(self, stream: Iterator[Request]) -> float:
        """`_loop` over the event heap: any number of replicas and pools, front end, request latency, token delivery."""
        nxt = next(stream, None)
        by_index = self._all()  # replica i sits at position i
        events, pending, version, heappop, heappush = self.events, self.pending, self.version, heapq.heappop, heapq.heappush
        next_seq = self.seq.__next__
        # by the kind of a pending entry (3: an attention-DP rank's held start, whose entry holds the replica)
        handlers = (self._arrive, self._handoff_arrive, self._enter_engine, self._wake)
        arrive, done = self._arrive, self._done
        rows, pack, warmup, issue_closed = self.log.rows, ROW.pack, self._warmup, self._issue_closed
        bar = _Progress(min(self.workload.num_requests, 10**9)) if self.progress else None
        check = self.check_invariants
        streams = bool(self.delivery_s_per_token)  # tokens reach the clients through the delivery server
        # one replica, requests straight into the engine: an arrival is queued on it here (`_arrive`, inlined)
        direct = len(self.replicas) == 1 and not self._frontend and not self.request_latency_s and self.replicas[0]._fast
        only = self.replicas[0] if direct else None
        max_tokens, chunked, budget = (only._max_request_tokens, only.spec.chunked_prefill, only._budget) if only else (0, 0, 0)
        now = 0.0
        while True:
            t_arr = nxt.arrival_s if nxt is not None else INF
            t_pend = pending[0][0] if pending else INF
            t_evt = events[0][0] if events else INF
            if t_arr == INF and t_pend == INF and t_evt == INF:
                break
            if t_arr <= t_pend and t_arr <= t_evt:
                now = t_arr
                p, o = nxt.prompt_len, nxt.output_len
                # Replica.rejects' common case (nothing to reject), inlined; anything else goes through `_arrive`
                if only is not None and 0 < p and 0 < o and p + o <= max_tokens and (chunked or p <= budget):
                    end = only.arrive(nxt, now)
                    if end is not None:  # _schedule, inlined
                        v = version[0] + 1
                        version[0] = v
                        heappush(events, (end, next_seq(), 0, v))
                else:
                    arrive(nxt, now)
                nxt = next(stream, None)
            elif t_pend <= t_evt:
                now, _, kind, req = heappop(pending)
                handlers[kind](req, now)
            else:
                now, _, idx, v = heappop(events)
                if version[idx] != v:  # made stale by an interruption
                    continue
                replica = by_index[idx]
                if streams:
                    work, num_decode = replica.work, replica.num_decode
                finished = replica.complete(now)
                issue_s = self._delivered(work, num_decode, finished, now) if streams else now
                if finished:
                    if not replica.inline_done:  # a prefill pool's hand-offs (or the general path)
                        done(replica, finished, now, issue_s)
                    else:  # _done, inlined
                        for req in finished:
                            if req.rid >= warmup:  # warm-up requests are served but not measured (RequestLog.add)
                                rows += pack(req.arrival_s, req.first_token_s, req.finish_s, req.prompt_len,
                                             req.output_len, req.preemptions, req.replica, req.cached_hit_tokens)
                            if req.client >= 0:
                                issue_closed(req.client, issue_s)
                end = replica.start(now) if replica.siblings is None else self._start_rank(replica, now)
                if end is not None:  # _schedule, inlined
                    v = version[idx] + 1
                    version[idx] = v
                    heappush(events, (end, next_seq(), idx, v))
                if bar is not None:
                    bar.update(self.log.n)
            if check:
                for r in self._all():
                    r.check_invariants()
        if bar is not None:
            bar.close(self.log.n)
        return now

    def _loop_single(self, stream: Iterator[Request], only: Replica) -> float:
        """`_loop` for one replica whose requests go straight into its engine: the same events in the same order
        without the event heap. The replica has at most one live event, the end of its current work (`end`); an
        arrival that cuts a decode run short replaces it, and the general loop's stale heap entry for the old end
        would only move the time of the last event, kept here as `last`. Arrivals are queued inline (`_arrive`'s
        common case) and finished requests logged inline (`_done`, `RequestLog.add`)."""
        nxt = next(stream, None)
        pending, heappop, events = self.pending, heapq.heappop, self.events
        arrive, issue_closed, warmup = self._arrive, self._issue_closed, self._warmup
        rows, pack = self.log.rows, ROW.pack
        bar = _Progress(min(self.workload.num_requests, 10**9)) if self.progress else None
        check = self.check_invariants
        max_tokens, chunked, budget = only._max_request_tokens, only.spec.chunked_prefill, only._budget
        complete, start, queue = only.complete, only.start, only.arrive
        push, index = only.waiting.push, only.index
        now = last = 0.0
        end = INF
        while True:
            # the general loop's order (arrival, then pending, then the work's end, on ties) with the pending heap,
            # empty in an open loop, asked first: it goes first only when strictly before the arrival
            t_arr = nxt.arrival_s if nxt is not None else INF
            if pending and pending[0][0] < t_arr and pending[0][0] <= end:
                now, _, _, req = heappop(pending)  # a closed-loop client's request (the only pending kind here)
            elif t_arr <= end:
                if t_arr == INF:
                    break
                now, req = t_arr, nxt
                nxt = next(stream, None)
            else:
                now = end
                for req in complete(now):
                    if req.rid >= warmup:  # warm-up requests are served but not measured
                        rows += pack(req.arrival_s, req.first_token_s, req.finish_s, req.prompt_len, req.output_len,
                                     req.preemptions, req.replica, req.cached_hit_tokens)
                    if req.client >= 0:
                        issue_closed(req.client, now)
                new_end = start(now)
                end = INF if new_end is None else new_end
                if bar is not None:
                    bar.update(self.log.n)
                if check:
                    only.check_invariants()
                continue
            p, o = req.prompt_len, req.output_len
            # Replica.rejects' common case (nothing to reject), inlined; anything else goes through `_arrive`
            if 0 < p and 0 < o and p + o <= max_tokens and (chunked or p <= budget):
                w = only.work
                if w is not None and not w.run:  # `arrive` during a planned iteration, which `interrupt` leaves as it
                    req.replica = index  # is: the request waits for the iteration's end (`enqueue`, inlined)
                    only.outstanding += p + o
                    push(req)
                    if check:
                        only.check_invariants()
                    continue
                new_end = queue(req, now)
            else:
                arrive(req, now)
                new_end = heappop(events)[0] if events else None  # what `_arrive` scheduled, if anything
            if new_end is not None:
                if end != INF and end > last:  # the cut run's end: a stale event in the general loop
                    last = end
                end = new_end
            if check:
                only.check_invariants()
        if bar is not None:
            bar.close(self.log.n)
        return max(now, last)

    def _check_drained(self) -> None:
        """Every admitted request finished and every KV block came back (a bug otherwise)."""
        for r in self._all():
            if r.num_running or len(r.waiting):
                raise AssertionError(f"replica {r.index} ended with {r.num_running} running, {len(r.waiting)} waiting")
            if r.pool.free + r.pool.cached_blocks != r.pool.num_blocks or any(r.pool.refs.values()):
                raise AssertionError(f"replica {r.index} leaked KV blocks")


def _gate_instances(replicas: list[Replica], ranks: int, setting: AttentionDpBalance) -> None:
    """One balance gate per attention-DP instance: each `ranks` consecutive replicas."""
    if ranks < 2:
        return
    for first in range(0, len(replicas) - ranks + 1, ranks):
        gate = BalanceGate(setting)
        for r in replicas[first:first + ranks]:
            gate.attach(r)


class _Progress:
    """A progress bar on stderr (rich), refreshed at most every 1% of the requests."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.total, self.step, self.shown = total, max(1, total // 100), 0
        self.bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} requests"),
                            TimeElapsedColumn(), transient=True, console=Console(stderr=True))
        self.task = self.bar.add_task("sim", total=total)
        self.bar.start()

    def update(self, n: int) -> None:
        if n - self.shown >= self.step:
            self.bar.update(self.task, completed=n)
            self.shown = n

    def close(self, n: int) -> None:
        self.bar.update(self.task, completed=n)
        self.bar.stop()
