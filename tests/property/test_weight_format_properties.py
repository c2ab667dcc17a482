"""Checkpoint weight formats: physical invariants of the ledger's weight bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab import api

pytestmark = pytest.mark.property

MODELS = ["deepseek-v3", "gpt-oss-120b", "qwen3-235b-a22b", "llama-3.1-70b", "qwen3-30b-a3b"]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(MODELS), st.sampled_from([1, 2, 4, 8]))
def test_fewer_weight_bits_never_cost_more_memory(model, tp):
    """Block scales and 16-bit attention included, an fp4 checkpoint never holds more bytes than an fp8 one, nor
    fp8 more than bf16."""
    by = {w: api.deployment(model, "b200", tp=tp, weight_dtype=w).memory.weights_bytes for w in ("fp4", "fp8", "bf16")}
    assert by["fp4"] < by["fp8"] < by["bf16"]


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(MODELS), st.sampled_from(["fp4", "fp8", "bf16"]))
def test_wider_tp_never_raises_weight_bytes_per_device(model, weights):
    """Replicated pieces (MLA down-projections, routers, norms) stay whole, the rest splits: per-device bytes fall
    as TP grows but never below the 1/TP share."""
    w = [api.deployment(model, "b200", tp=t, weight_dtype=weights).memory.weights_bytes for t in (1, 2, 4, 8)]
    assert all(b < a for a, b in zip(w, w[1:]))
    assert all(b >= w[0] / t * (1 - 1e-12) for b, t in zip(w, (1, 2, 4, 8)))
