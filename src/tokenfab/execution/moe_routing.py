"""How a model's tokens pick experts in engine steps: the routing `execution.layers` costs MoE layers with.

Model steps cost the routed experts over independent per-token picks (`cost.moe`), never the microbenchmarks'
round-robin ('balanced'), which gives every pick its own expert. Whether the picks are uniform or skewed toward
popular experts (`cost.moe_popularity`, 'zipf:S') decides how many distinct experts a decode step reads at
moderate batch sizes. The skew S is not a property any operator table measures, so it is fitted on measured
serving runs: on the fit half of the aggregated fixed-concurrency MoE runs (`bench/fit_moe_routing.py`, TPOT
MAPE over the skews of its grid), scored on the other half, and stored with its provenance in
`moe_routing.yaml`. Without the file, or with a fitted skew of 0, routing is uniform.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

DATA_PATH = Path(__file__).with_name("moe_routing.yaml")
UNIFORM = "uniform"


@functools.lru_cache(maxsize=1)
def model_routing() -> str:
    """The `cost.moe` distribution of model steps: 'zipf:S' with the fitted skew, or 'uniform'."""
    if not DATA_PATH.exists():
        return UNIFORM
    skew = float((yaml.safe_load(DATA_PATH.read_text()) or {}).get("zipf_skew") or 0.0)
    return f"zipf:{skew:g}" if skew > 0 else UNIFORM
