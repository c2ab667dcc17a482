"""Who enters the next iteration of a replica (`serving.replica`): admission of waiting requests under the token
budget, the sequence limit and the free KV blocks (with prefix-cache hits and TensorRT-LLM's reserve-on-admission
accounting), the next chunks of partially prefilled prompts, and preemption when blocks run out.

A mixin of `Replica`: its methods read and update the replica's state (`Replica.__init__` defines every attribute);
kept apart so the replica module holds the iteration state machine and this one the admission policy's arithmetic.
"""

from __future__ import annotations

from tokenfab.serving.request import Request


class Admission:
    """Admission, chunk continuation and preemption of a `Replica` (see the module docstring)."""

    __slots__ = ()

    def _preempt_one(self) -> float | None:
        """Preempt the most recently admitted running request; returns the swap time it costs
        (None if nothing is left to preempt)."""
        while self.stack:
            victim = self.stack.pop()
            if victim.finish_s < 0 and (victim.decode_join >= 0 or victim in self.prefilling):
                break
        else:
            return None
        if victim.decode_join >= 0:
            kv = self._stop_decoding(victim)
        else:
            kv = victim.computed
            self.prefilling.remove(victim)
        self._release(victim, kv)
        victim.preemptions += 1
        self.preempted += 1
        spent = 0.0
        if self.spec.preemption == "swap":
            spent = kv * self.spec.kv_bytes_per_token / self.spec.swap_bytes_per_s
            victim.computed = kv  # KV kept in host memory, swapped back in on re-admission
            self.swap_s += spent
        else:
            victim.computed = 0  # recompute: prompt and generated tokens are prefilled again
        self.waiting.push_front(victim)
        return spent

    def _publish(self, req: Request) -> None:
        """Offer the request's full prompt hash blocks to the prefix cache (once)."""
        if req.published or not self.spec.prefix_caching or not req.hash_ids:
            return
        req.published = True
        pool = self.pool
        have = len(req.cache_refs)
        full = min(len(req.hash_ids), req.prompt_len // pool.hash_block_tokens)
        new_ids = req.hash_ids[have:full]
        moved = pool.insert(new_ids)
        req.cache_refs = (*req.cache_refs, *new_ids)
        req.shared_blocks += len(moved) * pool.blocks_per_entry
        if req.final_blocks:
            shift = min(req.final_blocks, len(moved) * pool.blocks_per_entry)
            req.final_blocks -= shift
            self._final_private -= shift

    def _admit(self, budget: int, extra_s: list[float], chunks: list[tuple[Request, int]]) -> None:
        """Admit waiting requests into this iteration, appending their prefill chunks to `chunks`."""
        pool, waiting, prefilling, bins, bs = self.pool, self.waiting, self.prefilling, self.bins, self._bs
        max_seqs, plain, fifo = self._max_seqs, self._plain_admit, self._fifo
        lru, per_entry = pool.lru, pool.blocks_per_entry
        first_need = bins[(-self.g) % bs]  # the decoders' block at this iteration (changes only in `_start_decoding`)
        while budget > 0 and waiting and self.num_decode + len(prefilling) < max_seqs:
            req = waiting[0] if fifo else waiting.peek()  # a first-come-first-served deque's head without a call
            if plain and not req.computed and not req.hash_ids:
                # the general path below for this case (no hits, start 0, nothing shared, no final reserve)
                todo = req.prompt_len + req.generated
                chunk = todo if todo < budget else budget  # min(todo, budget)
                if chunk < todo and not self._chunked:
                    break
                need = -(-chunk // bs)
                free = pool.free
                if need > free + len(lru) * per_entry - first_need:  # pool.available
                    break
                if need <= free:  # pool.allocate's first case
                    pool.free = free - need
                else:
                    pool.allocate(need)
                waiting.pop()
                req.shared_blocks = req.computed = 0
                self.stack.append(req)
                prefilling.append(req)
                chunks.append((req, chunk))
                budget -= chunk
                continue
            spec, hash_tokens = self.spec, pool.hash_block_tokens
            swapped_in = req.computed > 0
            hits = pool.match(req.hash_ids, req.prompt_len + req.generated) if req.hash_ids and not swapped_in else 0
            start = req.computed if swapped_in else hits * hash_tokens
            shared = hits * pool.blocks_per_entry
            todo = req.prompt_len + req.generated - start
            resume_decode = swapped_in and req.generated > 0 and todo == 1
            chunk = 0 if resume_decode else min(todo, budget)
            if not spec.chunked_prefill and not resume_decode and chunk < todo:
                break
            if hits:  # referencing cached entries takes them off the evictable list: check after
                pool.acquire(req.hash_ids[:hits])
            need = -(-(start + chunk) // bs) - shared
            if resume_decode and start % bs == 0:
                need += 1  # its first decode iteration writes into a new block
            final = 0
            if self._reserve:  # admit only if this request and every running one can finish without eviction
                out = 1 if spec.role == "prefill" else req.output_len
                final = max(need, -(-(req.prompt_len + out) // bs) - shared)
                held = pool.num_blocks - pool.free - pool.cached_blocks
                if final + self._final_private - held > pool.available:
                    if hits:
                        pool.drop(req.hash_ids[:hits])
                    break
            if need > pool.available - self.bins[(-self.g) % bs] or not pool.allocate(need):
                if hits:
                    pool.drop(req.hash_ids[:hits])
                break
            if final:
                req.final_blocks = final
                self._final_private += final
            waiting.pop()
            if not swapped_in and req.hash_ids:
                pool.record(req.prompt_len + req.generated, start)
            if hits:
                req.cache_refs = tuple(req.hash_ids[:hits])
                req.cached_hit_tokens = max(req.cached_hit_tokens, start)
            req.shared_blocks, req.computed = shared, start
            if swapped_in and req.ready_s < 0:  # swapped out by a preemption (handoffs arrive with their KV)
                extra_s.append(start * spec.kv_bytes_per_token / spec.swap_bytes_per_s)
            self.stack.append(req)
            if resume_decode:
                if req.first_token_s < 0:
                    self._first_out.append(req)
                self._start_decoding(req)
                first_need = bins[(-self.g) % bs]
                continue
            prefilling.append(req)
            chunks.append((req, chunk))
            budget -= chunk

    def _continue_prefills(self, chunks: list, budget: int, need: int, extra: list[float]) -> int:
        """Next chunks of partially prefilled requests (preempting later ones if blocks run out)."""
        pool, bins, bs = self.pool, self.bins, self._bs
        for req in list(self.prefilling):
            chunk = min(req.to_prefill, budget)
            if chunk <= 0:
                break
            grow = self._blocks_for(req, req.computed + chunk) - self._blocks_for(req, req.computed)
            while grow > pool.available - need and self.stack and self.stack[-1] is not req:
                spent = self._preempt_one()
                if spent is None:
                    break
                extra.append(spent)
                need = bins[(-self.g) % bs]
            if grow > pool.available - need or req not in self.prefilling:
                break
            pool.allocate(grow)
            chunks.append((req, chunk))
            budget -= chunk
        return budget
