"""Physical limits of speculative decoding, for any batch, draft length and acceptance."""

import pytest
from hypothesis import given, settings, strategies as st

from tokenfab import api

pytestmark = pytest.mark.property

BASE = dict(model="qwen3-8b", hardware="h20", input_len=256, output_len=33)


@settings(max_examples=25)
@given(batch=st.integers(1, 96), k=st.integers(1, 6), a=st.floats(0.0, 0.95), da=st.floats(0.01, 0.05))
def test_speculation_limits(batch, k, a, da):
    base = api.predict(**BASE, batch=batch).tpot_s
    lo = api.predict(**BASE, batch=batch, spec_method="eagle", spec_tokens=k, spec_acceptance=a)
    hi = api.predict(**BASE, batch=batch, spec_method="eagle", spec_tokens=k, spec_acceptance=min(1.0, a + da))
    zero = api.predict(**BASE, batch=batch, spec_method="eagle", spec_tokens=k, spec_acceptance=0.0).tpot_s
    assert zero > base  # drafting that is never accepted only adds work
    assert hi.tpot_s < lo.tpot_s  # more acceptance, faster tokens
    assert 1.0 <= lo.speculative["tokens_per_iteration"] <= k + 1
    assert base / hi.tpot_s < k + 1  # never more than k + 1 tokens per verify step
