"""How a model's tokens pick experts in engine steps: the routing `execution.layers` costs MoE layers with.

Model steps cost the routed experts over independent per-token picks (`cost.moe`), never the microbenchmarks'
round-robin ('balanced'), which gives every pick its own expert. Whether the picks are uniform or skewed toward
popular experts (`cost.moe_popularity`, 'zipf:S') decides how many distinct experts a decode step reads at
moderate batch sizes. The skew S is not a property any operator table measures, so it is fitted on measured
serving runs: on the fit half of the aggregated fixed-concurrency MoE runs (`bench/fit_moe_routing.py`, TPOT
MAPE over the skews of its grid), scored on the other half, and stored with its provenance in
`moe_routing.yaml`: one global skew, and per model family (Hugging Face model_type) the skew the fit chose for
it (its own where its runs support one, else the global one). A family the file does not list takes the global
skew. Without the file, or with a fitted skew of 0, routing is uniform.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

DATA_PATH = Path(__file__).with_name("moe_routing.yaml")
UNIFORM = "uniform"
# A routing every model step takes whatever the fit says (None: the fit's); set by bench/fit_moe_routing.py's
# workers while they simulate one skew of the grid.
OVERRIDE: str | None = None


def model_routing(family: str | None = None) -> str:
    """The `cost.moe` distribution of a model family's steps: 'zipf:S' with the fitted skew, or 'uniform'."""
    if OVERRIDE is not None:
        return OVERRIDE
    return _fitted(family)


@functools.lru_cache(maxsize=64)
def _fitted(family: str | None) -> str:
    if not DATA_PATH.exists():
        return UNIFORM
    data = yaml.safe_load(DATA_PATH.read_text()) or {}
    skew = float(data.get("zipf_skew") or 0.0)
    own = (data.get("families") or {}).get(family) if family else None
    if own is not None:
        skew = float(own.get("zipf_skew") or 0.0)
    return f"zipf:{skew:g}" if skew > 0 else UNIFORM


model_routing.cache_clear = _fitted.cache_clear  # type: ignore[attr-defined]  # tests re-read a patched DATA_PATH
