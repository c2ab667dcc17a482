"""Consistency checks of a replica's bookkeeping (for tests and `Simulation(check_invariants=True)`; O(running)).

Kept beside the replica rather than in it: they read its aggregates the slow, obvious way (request by request),
which is what makes them a check of the closed-form bookkeeping the hot path keeps."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenfab.serving.replica import Replica


def check_replica(replica: Replica) -> None:
    """KV blocks conserved (free + private + cached + in flight = all), decode aggregates equal to the sums over
    the decoding requests, and no more running sequences than max_num_seqs; raises AssertionError otherwise."""
    running = [r for r in replica.stack if r.finish_s < 0 and (r.decode_join >= 0 or r in replica.prefilling)]
    private = sum(replica._blocks_for(r, replica._kv(r)) for r in running)
    pool = replica.pool
    if pool.free < 0 or private < 0:
        raise AssertionError("negative block count")
    # a decode run pre-allocates its KV growth; those blocks are not yet attributed to requests
    work = replica.work
    pending = work.blocks if work is not None and work.run else 0
    if work is not None and not work.run:
        pending = sum(replica._blocks_for(r, replica._kv(r) + q) - replica._blocks_for(r, replica._kv(r))
                      for r, q in work.chunks)
        pending += replica.bins[(-replica.g) % replica.spec.block_tokens] if replica.num_decode and work.decode else 0
    elif work is not None:
        pending += replica.bins[(-replica.g) % replica.spec.block_tokens]
    if pool.free + private + pool.cached_blocks + pending != pool.num_blocks:
        raise AssertionError(f"KV blocks not conserved: free {pool.free} + private {private} + cached "
                             f"{pool.cached_blocks} + in-flight {pending} != {pool.num_blocks}")
    decoders = [r for r in running if r.decode_join >= 0]
    if len(decoders) != replica.num_decode or sum(replica._kv(r) for r in decoders) != replica.sum_kv:
        raise AssertionError("decode aggregates out of sync")
    if len(running) > replica.spec.max_num_seqs:
        raise AssertionError("more running sequences than max_num_seqs")
