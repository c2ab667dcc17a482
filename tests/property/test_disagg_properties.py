"""Invariants of the P/D KV hand-off (`serving.disagg.KvHandoff`) on random streams of finished prompts."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab.serving.disagg import KvHandoff

pytestmark = pytest.mark.property

_PROMPTS = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 9000), st.floats(0.0, 1.0)), min_size=1, max_size=60)


@settings(max_examples=50)
@given(prompts=_PROMPTS, s_per_token=st.floats(1e-9, 1e-5), streams=st.integers(1, 4))
def test_no_kv_arrives_before_its_own_transfer_time_and_a_queue_only_delays(prompts, s_per_token, streams):
    """Each prompt's KV arrives no earlier than its end plus its own transfer; with queued sends, never earlier
    than without a queue; one stream's busy time is the sum of its transfers (sends never overlap)."""
    queued, free = KvHandoff(s_per_token, streams), KvHandoff(s_per_token)
    finished = sorted(prompts, key=lambda p: p[2])  # the simulator hands prompts over in time order
    spans: dict[int, list[tuple[float, float]]] = {}
    for replica, tokens, now in finished:
        own = tokens * s_per_token
        at, unqueued = queued.arrival_s(replica, tokens, now), free.arrival_s(replica, tokens, now)
        assert unqueued == pytest.approx(now + own)
        assert at >= unqueued - 1e-12
        spans.setdefault(replica, []).append((at - own, at))
    if streams == 1:
        for sends in spans.values():
            for (_, end), (start, _) in zip(sends, sends[1:]):
                assert start >= end - 1e-12
