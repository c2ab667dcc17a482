"""How a replica's work ends (`serving.replica`): applying a finished iteration or closed-form decode run (prompts
whose last chunk ran emit their first token and decode on; decoders whose finishing iteration has come leave),
and cutting a decode run short at the first iteration boundary after an arrival.

A mixin of `Replica`: its methods read and update the replica's state (`Replica.__init__` defines every attribute);
the common cases are inlined (`FAST_PATHS`), with the general methods beside them for the equality test.
"""

from __future__ import annotations

import math
import operator
from heapq import heappop, heappush

from tokenfab.serving.request import Request

_by_rid = operator.attrgetter("rid")


class Completion:
    """Completion and interruption of a `Replica`'s work (see the module docstring)."""

    __slots__ = ()

    def interrupt(self, now: float) -> float | None:
        """A request arrived during a decode run: end the run at the first iteration boundary after
        `now`; returns the new end time (None if the current work cannot be shortened)."""
        w = self.work
        if w is None or not w.run or w.iters <= 1 or now >= w.end_s:
            return None
        slope = (w.t1 - w.t0) / (w.iters - 1)
        elapsed = now - w.start_s
        # smallest j >= 1 with j*t0 + slope*j(j-1)/2 >= elapsed
        if slope > 1e-15:
            a, b = slope / 2, w.t0 - slope / 2
            j = math.ceil((-b + math.sqrt(b * b + 4 * a * elapsed)) / (2 * a) - 1e-9)
        else:
            j = math.ceil(elapsed / w.t0 - 1e-9)
        j = max(1, min(j, w.iters))
        if j >= w.iters:
            return None
        old_total = w.end_s - w.start_s
        new_total = j * w.t0 + slope * j * (j - 1) / 2
        e_slope = (w.e1 - w.e0) / (w.iters - 1)
        old_e = w.iters * (w.e0 + w.e1) / 2
        new_e = j * w.e0 + e_slope * j * (j - 1) / 2
        self.energy_j -= old_e - new_e
        self.busy_s -= old_total - new_total
        series = self.series
        if series is not None:  # the time series gives back the cut tail too (TimeSeries.sample's one-bucket case)
            at, dt = w.start_s + old_total, -(old_total - new_total)
            width, dts = series.interval_s, series.dt
            i = int((at + dt) / width)
            if i == int(at / width) and i < len(dts):
                dts[i] += dt
                series.batch[i] += dt * w.batch
                series.kv[i] += dt * w.kv_frac
            else:
                series.sample(at, dt, w.batch, w.kv_frac)
        unused = w.blocks - (self._crossings(j) - self.bins[(-self.g) % self._bs] if j > 1 else 0)
        self.pool.release(unused)
        w.blocks -= unused
        w.iters, w.end_s = j, w.start_s + new_total
        w.t1, w.e1 = w.t0 + slope * (j - 1), w.e0 + e_slope * (j - 1)
        return w.end_s

    def complete(self, now: float) -> list[Request]:
        """Apply the finished work at `now`; returns requests that finished (or, for a prefill
        replica, requests whose prefill finished and move to the decode pool)."""
        w, self.work = self.work, None
        done: list[Request] = []
        iters = w.iters
        self.g = g = self.g + iters
        heap, chunks = self.finish_heap, w.chunks
        if not chunks:
            self.sum_kv += self.num_decode * iters
        else:  # prompts whose last chunk this was emit their first token and decode on (or finish: `_prefill_done`)
            prefilling, finishing, bins, bs = self.prefilling, self.finishing, self.bins, self._bs
            general = self._general_prefill_done
            num_decode = self.num_decode  # the decode aggregates in locals, stored around `_prefill_done`
            sum_kv = self.sum_kv + num_decode * iters
            for req, q in chunks:
                req.computed = computed = req.computed + q
                if req.prompt_len + req.generated != computed:  # prefill not finished (req.to_prefill > 0)
                    continue
                if req.hash_ids or general or req.generated + 1 >= req.output_len:
                    self.num_decode, self.sum_kv = num_decode, sum_kv
                    self._prefill_done(req, now, done)
                    num_decode, sum_kv = self.num_decode, self.sum_kv
                    continue
                # _prefill_done then _start_decoding, inlined for the common case: no prefix blocks to publish,
                # not a prefill pool, and the request decodes on
                prefilling.remove(req)
                req.generated += 1
                if req.first_token_s < 0:
                    req.first_token_s = now
                req.decode_join = g
                num_decode += 1
                sum_kv += computed
                bins[(computed - g) % bs] += 1
                finish_at = g + (req.output_len - req.generated)
                bucket = finishing.get(finish_at)
                if bucket is None:
                    finishing[finish_at] = [req]
                    heappush(heap, finish_at)
                else:
                    bucket.append(req)
            self.num_decode, self.sum_kv = num_decode, sum_kv
        if heap and heap[0] <= g:  # some decoder finishes: `_decoders_done`
            self._decoders_done(heap, g, now, done)
        if len(self.stack) > self._stack_cap:  # drop finished entries (amortised O(1))
            self.stack = [r for r in self.stack if r.finish_s < 0 and (r.decode_join >= 0 or r in self.prefilling)]
            self._stack_cap = 2 * len(self.stack) + 64
        self.idle_since = now
        return done

    def _decoders_done(self, heap: list[int], g: int, now: float, done: list[Request]) -> None:
        """Decoders whose finishing iteration has come leave, in id order within an iteration (`_stop_decoding`,
        `_release` and `_finished`, inlined for the common case)."""
        if not self._fast:
            self._decoders_done_general(heap, g, now, done)
            return
        bins, bs, pool, finishing = self.bins, self._bs, self.pool, self.finishing
        # the aggregates `_stop_decoding` and `_finished` update, kept in locals and stored once (`_release` reads
        # none of them); the same integer sums
        num_decode, sum_kv, outstanding = self.num_decode, self.sum_kv, self.outstanding
        while heap and heap[0] <= g:
            finish_at = heappop(heap)
            bucket = finishing.pop(finish_at)
            if len(bucket) > 1:
                bucket.sort(key=_by_rid)  # requests finishing together leave in id order
            for req in bucket:
                # still decoding and this entry is its current finishing iteration (not stale after a preemption)
                join = req.decode_join
                if join >= 0 and req.finish_s < 0 and join + (req.output_len - req.generated) == finish_at:
                    # _stop_decoding, inlined
                    kv = req.computed + (g - join)
                    req.generated += g - join
                    num_decode -= 1
                    sum_kv -= kv
                    bins[(req.computed - join) % bs] -= 1
                    req.computed, req.decode_join = kv, -1
                    if req.final_blocks or req.cache_refs:
                        self._release(req, kv)
                    else:  # _release without reserve blocks or prefix-cache references (pool.release inlined)
                        pool.free += -(-kv // bs) - req.shared_blocks
                        if pool.free > pool.num_blocks:
                            raise AssertionError(f"KV pool over-released: {pool.free} free of {pool.num_blocks}")
                        req.shared_blocks = 0
                    req.finish_s = now  # _finished, inlined
                    outstanding -= req.prompt_len + req.output_len
                    done.append(req)
        self.num_decode, self.sum_kv, self.outstanding = num_decode, sum_kv, outstanding

    def _decoders_done_general(self, heap: list[int], g: int, now: float, done: list[Request]) -> None:
        """`_decoders_done` through the general methods (`FAST_PATHS` off)."""
        while heap and heap[0] <= g:
            finish_at = heappop(heap)
            bucket = self.finishing.pop(finish_at)
            if len(bucket) > 1:
                bucket.sort(key=_by_rid)
            for req in bucket:
                join = req.decode_join
                if join >= 0 and req.finish_s < 0 and join + (req.output_len - req.generated) == finish_at:
                    self._release(req, self._stop_decoding(req))
                    self._finished(req, now, done)

