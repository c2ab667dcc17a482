"""Expert loads when experts are not equally popular: the 'zipf:S' routing of `cost.moe`.

A trained router does not pick its experts uniformly: some experts are chosen for more tokens than others
(the reason engines ship expert-load balancers such as DeepSeek's EPLB). Within one decode step the tokens come
from different requests, so their picks are close to independent, but over a skewed popularity they collide
more often than uniform picks do: fewer distinct experts receive a row, and fewer expert weights are streamed.

Popularity here is Zipf-like: the expert of popularity rank i (0-based) is picked with a weight proportional
to (i + 1)^-S; S = 0 is uniform routing. A token's k picks are distinct, so the chance q_i that expert i is
among them is k x its popularity share, water-filled at 1 (an expert cannot be picked twice by one token);
sum(q) = k. Over T independent tokens expert i gets T q_i rows on average and at least one row with
probability 1 - (1 - q_i)^T.

Without redundant experts, experts are placed on EP ranks round-robin in popularity order (rank r holds
popularity ranks r, r + ep, ...); the costed rank is rank 0, which holds the most popular expert of every round.

With R redundant expert slots (SGLang --ep-num-redundant-experts, vLLM --num-redundant-experts, TensorRT-LLM's
EPLB num_slots = experts + R) the E + R physical slots are filled and placed by DeepSeek's EPLB, global policy
(github.com/deepseek-ai/EPLB, eplb.py: `replicate_experts`, then `balanced_packing`; SGLang's
--eplb-algorithm deepseek, vLLM's distributed/eplb/rebalance_algo.py): each extra slot replicates the expert of
the highest load per replica, then the slots, heaviest first, go to the rank of the least load among those with
a free slot, (E + R) / ep slots per rank. The load EPLB balances is the expected one (the popularity above: it
balances on recorded expert loads, which converge to it); a token's pick of a replicated expert goes to one of
its replicas (SGLang's dynamic dispatch picks one at random), so each replica sees q_i / replicas_i. The costed
rank is the one of the highest expected load after placement. An engine running EPLB without redundant slots
(R = 0) places experts by their loads, which the round-robin above already is up to the packing's rounding.

The costed rank's rows carry the same spread as `uniform` (mean + std x sqrt(2 ln ep)). Everything is an
expectation, so a call is deterministic; at S = 0 without redundant slots it equals `uniform` up to float rounding.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def pick_probabilities(topk: int, experts: int, skew: float) -> np.ndarray:
    """q_i: chance that expert i (popularity order) is among one token's `topk` distinct picks; sums to topk."""
    share = (np.arange(experts, dtype=float) + 1.0) ** -skew
    q = np.zeros(experts)
    free = np.ones(experts, dtype=bool)
    left = float(topk)
    while True:  # water-filling: experts whose share would exceed 1 are capped, the rest share what is left
        q[free] = left * share[free] / share[free].sum()
        over = free & (q > 1.0)
        if not over.any():
            return q
        q[over] = 1.0
        free &= ~over
        left = topk - float(q[~free].sum())


def replicate(load: np.ndarray, num_slots: int) -> np.ndarray:
    """Replicas per expert when `num_slots` >= len(load) slots are filled: every expert once, then each extra slot to
    the expert of the highest load per replica (EPLB's `replicate_experts`; ties to the lowest index)."""
    count = np.ones(len(load))
    for _ in range(num_slots - len(load)):
        count[int(np.argmax(load / count))] += 1.0
    return count


def pack(slot_load: np.ndarray, num_ranks: int) -> np.ndarray:
    """Rank of each slot: heaviest first, each to the rank of the least load among those with a free slot, exactly
    len(slot_load) / num_ranks slots per rank (EPLB's `balanced_packing`)."""
    per_rank = len(slot_load) // num_ranks
    rank_load, rank_slots = np.zeros(num_ranks), np.zeros(num_ranks, dtype=int)
    where = np.empty(len(slot_load), dtype=int)
    for slot in np.argsort(-slot_load, kind="stable"):
        open_ranks = np.flatnonzero(rank_slots < per_rank)
        r = int(open_ranks[np.argmin(rank_load[open_ranks])])
        where[slot], rank_load[r], rank_slots[r] = r, rank_load[r] + slot_load[slot], rank_slots[r] + 1
    return where


def eplb_placement(q: np.ndarray, num_slots: int, ep: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-token pick probability of each slot, its rank) when EPLB fills `num_slots` slots with the experts of
    pick probabilities `q` and places them on `ep` ranks: `replicate`, each replica taking its share of the
    expert's picks, then `pack`."""
    count = replicate(q, num_slots)
    expert_of_slot = np.repeat(np.arange(len(q)), count.astype(int))
    slot_q = q[expert_of_slot] / count[expert_of_slot]
    return slot_q, pack(slot_q, ep)


@functools.lru_cache(maxsize=256)
def eplb_rank_probabilities(topk: int, experts: int, skew: float, num_slots: int, ep: int) -> np.ndarray:
    """Per-token pick probabilities of the slots of the most loaded rank after EPLB places `num_slots` slots of the
    experts (popularity `skew`) on `ep` ranks (module doc); the placement does not depend on the step's tokens, so
    it is made once per layout. Read-only: the cached array is shared."""
    slot_q, where = eplb_placement(pick_probabilities(topk, experts, skew), num_slots, ep)
    busiest = int(np.argmax(np.bincount(where, weights=slot_q, minlength=ep)))
    out = slot_q[where == busiest]
    out.flags.writeable = False
    return out


def popularity_load(tokens: int, topk: int, experts: int, ep: int, skew: float, tile: int,
                    redundant: int = 0) -> tuple[float, float, float, float]:
    """(rows, active experts, tile rows, row tiles) of the costed EP rank (module doc), as `cost.moe.ExpertLoad`;
    `redundant` extra slots placed by EPLB (module doc)."""
    if redundant:
        q = eplb_rank_probabilities(topk, experts, skew, experts + redundant, ep)
    else:
        q = pick_probabilities(topk, experts, skew)[0::ep]  # rank 0's experts: popularity ranks 0, ep, 2 ep, ...
    rows_e = tokens * q
    active_e = 1.0 - (1.0 - q) ** tokens
    mean = float(rows_e.sum())
    std = math.sqrt(max(float((tokens * q * (1.0 - q)).sum()), 0.0))
    rows = min(float(tokens * topk), mean + std * math.sqrt(2.0 * math.log(ep))) if ep > 1 else mean
    thick = rows_e >= 1.0  # experts with a row on average; thinner ones count their chance of any row
    tile_rows = float(np.where(thick, np.minimum(rows_e, tile), active_e).sum())
    row_tiles = float(np.where(thick, np.ceil(rows_e / tile - 1e-9), active_e).sum())
    return rows, float(active_e.sum()), tile_rows, row_tiles
