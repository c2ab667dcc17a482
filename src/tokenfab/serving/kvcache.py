"""Paged KV-cache block pool with prefix caching.

Blocks are counted, not materialised: the pool holds `free` blocks owned by nobody, blocks
owned privately by running requests (the caller tracks those counts), and blocks held by
prefix-cache entries. A cache entry is one hash block of a prompt (`blocks_per_entry` KV
blocks), keyed by its hash id; an id stands for the whole prefix up to and including it
(vLLM's chained hashes, the Mooncake traces' hash_ids). Entries referenced by running
requests cannot be evicted; unreferenced ones sit in an LRU list and are evicted, oldest
first, when an allocation needs their blocks.

Invariant: free + private (caller's) + blocks_per_entry x len(entries) == num_blocks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class BlockPool:
    def __init__(self, num_blocks: int, block_tokens: int, hash_block_tokens: int, prefix_caching: bool):
        self.num_blocks = num_blocks
        self.block_tokens = block_tokens
        self.hash_block_tokens = hash_block_tokens
        self.blocks_per_entry = -(-hash_block_tokens // block_tokens)
        self.prefix_caching = prefix_caching
        self.free = num_blocks
        self.refs: dict[int, int] = {}
        self.lru: OrderedDict[int, None] = OrderedDict()
        self.lookup_tokens = 0
        self.hit_tokens = 0
        self.evictions = 0

    # -- capacity ------------------------------------------------------------------
    @property
    def evictable(self) -> int:
        return len(self.lru) * self.blocks_per_entry

    @property
    def available(self) -> int:
        """Blocks an allocation can get: free ones plus evictable cache entries."""
        return self.free + len(self.lru) * self.blocks_per_entry

    @property
    def cached_blocks(self) -> int:
        return len(self.refs) * self.blocks_per_entry

    def used_frac(self) -> float:
        """Fraction of blocks holding live KV (private or referenced by a running request)."""
        return (self.num_blocks - self.free - len(self.lru) * self.blocks_per_entry) / self.num_blocks if self.num_blocks else 0.0

    def allocate(self, n: int) -> bool:
        """Take `n` blocks, evicting unreferenced cache entries if needed; False (no change) if impossible."""
        if n <= self.free:
            self.free -= n
            return True
        if n > self.available:
            return False
        while self.free < n:
            h, _ = self.lru.popitem(last=False)
            del self.refs[h]
            self.free += self.blocks_per_entry
            self.evictions += 1
        self.free -= n
        return True

    def release(self, n: int) -> None:
        self.free += n
        if self.free > self.num_blocks:
            raise AssertionError(f"KV pool over-released: {self.free} free of {self.num_blocks}")

    # -- prefix cache ----------------------------------------------------------------
    def match(self, hash_ids: Sequence[int] | None, prompt_len: int) -> int:
        """Leading hash blocks of a prompt already cached (leaving at least one token to compute)."""
        if not self.prefix_caching or not hash_ids:
            return 0
        return self.leading_hits(hash_ids, (prompt_len - 1) // self.hash_block_tokens)

    def leading_hits(self, hash_ids: Sequence[int], limit: int | None = None) -> int:
        """How many of the leading `hash_ids` (at most `limit`) are cached."""
        limit = len(hash_ids) if limit is None else min(limit, len(hash_ids))
        k, refs = 0, self.refs
        while k < limit and hash_ids[k] in refs:
            k += 1
        return k

    def record(self, prompt_tokens: int, hit_tokens: int) -> None:
        """Count one admitted prompt for the hit rate (tokens served from cache / prompt tokens)."""
        self.lookup_tokens += prompt_tokens
        self.hit_tokens += hit_tokens

    def acquire(self, hash_ids: Sequence[int]) -> None:
        """Reference cached entries (a request reuses them)."""
        for h in hash_ids:
            n = self.refs[h]
            if n == 0:
                del self.lru[h]
            self.refs[h] = n + 1

    def insert(self, hash_ids: Sequence[int]) -> list[int]:
        """Publish a request's finished prompt blocks; returns the ids it now references that it
        contributed (its private blocks move to the cache). Ids already cached are just referenced."""
        moved = []
        for h in hash_ids:
            n = self.refs.get(h)
            if n is None:
                self.refs[h] = 1
                moved.append(h)
            else:
                if n == 0:
                    del self.lru[h]
                self.refs[h] = n + 1
        return moved

    def drop(self, hash_ids: Sequence[int]) -> None:
        """A request stops using these entries; unreferenced entries become evictable (most recent last)."""
        for h in hash_ids:
            n = self.refs[h] - 1
            self.refs[h] = n
            if n == 0:
                self.lru[h] = None

    def hit_rate(self) -> float:
        return self.hit_tokens / self.lookup_tokens if self.lookup_tokens else 0.0
