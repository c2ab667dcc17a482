"""Speculative decoding: the acceptance chain, its limits, batching, and a published speedup."""

import pytest

from tokenfab import api
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.execution.speculative import (
    SpeculativeModel, expected_tokens_per_iteration, head_model, resolve_spec, sample_tokens_per_iteration,
    speculative_iteration,
)
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit

BASE = dict(model="llama-3.1-8b", hardware="h100-sxm", input_len=512, output_len=65)


def _tpot(batch: int, **spec) -> float:
    return api.predict(**BASE, batch=batch, **spec).tpot_s


def test_expected_tokens_by_hand():
    assert expected_tokens_per_iteration(0.0, 4) == 1.0
    assert expected_tokens_per_iteration(1.0, 4) == 5.0
    assert expected_tokens_per_iteration(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)


@pytest.mark.parametrize("batch", [1, 16, 128])
def test_zero_acceptance_never_helps(batch):
    spec = _tpot(batch, spec_method="eagle", spec_tokens=3, spec_acceptance=0.0)
    assert spec > _tpot(batch)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_full_acceptance_is_bounded_by_k_plus_one(k):
    base = _tpot(1)
    r = api.predict(**BASE, batch=1, spec_method="eagle", spec_tokens=k, spec_acceptance=1.0)
    assert r.speculative["tokens_per_iteration"] == k + 1
    assert base / r.tpot_s <= k + 1
    # one verify of k+1 tokens costs at least one decode step: the speedup is strictly below k + 1
    assert base / r.tpot_s < k + 1


def test_tpot_monotone_in_acceptance():
    tpots = [_tpot(8, spec_method="eagle", spec_tokens=4, spec_acceptance=a) for a in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    assert all(a > b for a, b in zip(tpots, tpots[1:]))


def test_gains_shrink_as_batches_grow():
    speedups = [_tpot(b) / _tpot(b, spec_method="eagle", spec_tokens=3, spec_acceptance=0.7) for b in (1, 32, 200)]
    assert speedups[0] > speedups[1] > speedups[2]


def test_deepseek_mtp_matches_the_published_speedup():
    """DeepSeek-V3 report (arXiv:2412.19437, sec. 5.4.3): MTP acceptance 85-90%, 1.8x tokens per second.
    The default acceptance is the published low end. Predicted 1.54x when pinned (the 2-token verify
    reads twice the routed experts and the fitted MLA decode kernel charges the packed second query
    row in full); the anchor guards against drifting further from the published figure."""
    kw = dict(model="deepseek-v3", hardware="h200-sxm", tp=8, dtype="fp8", batch=1, input_len=1024, output_len=256)
    base = api.predict(**kw)
    mtp = api.predict(**kw, spec_method="mtp")
    assert mtp.speculative["acceptance_frac"] == 0.85 and "2412.19437" in mtp.speculative["acceptance_source"]
    assert base.tpot_s / mtp.tpot_s == pytest.approx(1.8, rel=0.2)


def test_drafter_memory_is_added():
    kw = dict(model="llama-3.1-70b", hardware="h100-sxm", tp=4, batch=4, input_len=512, output_len=65)
    base = api.predict(**kw).memory
    draft = api.predict(**kw, spec_method="draft", spec_tokens=4, spec_acceptance=0.7, spec_draft_model="llama-3.1-8b").memory
    eagle = api.predict(**kw, spec_method="eagle", spec_tokens=4, spec_acceptance=0.7).memory
    eight = load_model("llama-3.1-8b")
    # the draft model's weights (16 GB in bf16) split over tp 4, within 2% (replicated KV projections)
    assert draft.weights_bytes - base.weights_bytes == pytest.approx(2 * 8.03e9 / 4, rel=0.02)
    assert draft.kv_cache_bytes > base.kv_cache_bytes
    # EAGLE: one 70B-shaped layer (~0.86B params) and no second embedding / LM head
    assert 0 < eagle.weights_bytes - base.weights_bytes < 2 * 1.0e9 / 4
    assert eight.vocab_size == load_model("llama-3.1-70b").vocab_size


def test_head_model_is_one_layer_of_the_target():
    ds = load_model("deepseek-v3")
    head = head_model(ds)
    assert head.num_layers == 1 and head.layers[0].ffn.kind == "moe" and head.vocab_size == ds.vocab_size


def test_serving_entry_point_matches_the_iteration():
    from tokenfab.api.deployment import deployment
    d = deployment("llama-3.1-8b", "h100-sxm")
    spec = resolve_spec(d.step_model.model, "eagle", 2, 0.5)
    t, e, tokens = speculative_iteration(d.step_model, spec, 4, 1000.0)
    assert tokens == pytest.approx(1.75)
    assert (t, e, tokens) == SpeculativeModel(d.step_model, spec).iteration(4, 1000.0)
    assert t > 0 and e > 0


def test_bad_speculative_flags():
    with pytest.raises(InvalidInputError, match="spec-acceptance"):
        api.predict(**BASE, spec_method="eagle", spec_tokens=2)
    with pytest.raises(InvalidInputError, match="no multi-token-prediction layer"):
        api.predict(**BASE, spec_method="mtp", spec_acceptance=0.8)
    with pytest.raises(UnknownNameError, match="eagle"):
        api.predict(**BASE, spec_method="eagel", spec_acceptance=0.8)
    with pytest.raises(InvalidInputError, match="spec-draft-model"):
        api.predict(**BASE, spec_method="draft", spec_acceptance=0.8)
    with pytest.raises(InvalidInputError, match="tokenizer"):
        api.predict(**BASE, spec_method="draft", spec_acceptance=0.8, spec_draft_model="qwen3-1.7b")
    with pytest.raises(InvalidInputError, match="need --spec-method"):
        api.predict(**BASE, spec_acceptance=0.8)


def test_verify_runs_mla_absorbed_and_pays_for_every_verified_logit():
    from tokenfab.api.deployment import deployment
    from tokenfab.execution.layers import MLA_ABSORBED_MAX_Q, StepBatch
    sm = deployment("deepseek-v3", "h200-sxm", None, 8, 1, 1, None, "fp8").step_model
    verify = sm.step(StepBatch(prefill=((4, 3, 1003),))).breakdown
    chunk = sm.step(StepBatch(prefill=((1, 512, 1512),))).breakdown
    assert "attn.kv_up" not in verify and "attn.q_absorb" in verify  # decode-style latent attention
    assert "attn.kv_up" in chunk and 512 > MLA_ABSORBED_MAX_Q
    spec = SpeculativeModel(sm, resolve_spec(sm.model, "mtp", 2, None))
    t, e = spec.extra_logits(4)
    assert t == pytest.approx(sm.head_part(12).time_s - sm.head_part(4).time_s) and t > 0 and e > 0


@pytest.mark.parametrize("a, k", [(0.0, 3), (0.6, 4), (0.9, 2), (1.0, 5)])
def test_sampled_tokens_follow_the_chain(a, k):
    import numpy as np
    draws = sample_tokens_per_iteration(np.random.default_rng(7), a, k, 200_000)
    assert draws.min() >= 1 and draws.max() <= k + 1
    assert draws.mean() == pytest.approx(expected_tokens_per_iteration(a, k), rel=0.01)
