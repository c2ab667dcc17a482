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

Experts are placed on EP ranks round-robin in popularity order (rank r holds popularity ranks r, r + ep, ...),
the placement a load balancer aims for; the costed rank is rank 0, which holds the most popular expert of every
round. Its rows carry the same spread as `uniform` (mean + std x sqrt(2 ln ep)). Everything is an expectation,
so a call is deterministic; at S = 0 it equals `uniform` up to float rounding.
"""

from __future__ import annotations

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


def popularity_load(tokens: int, topk: int, experts: int, ep: int, skew: float, tile: int) -> tuple[float, float, float, float]:
    """(rows, active experts, tile rows, row tiles) of the costed EP rank (module doc), as `cost.moe.ExpertLoad`."""
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
