"""The P/D hand-off (`serving.disagg`): bytes the decode layout holds, and a prefill replica's sends in order."""

import pytest

from tokenfab.serving.disagg import KvHandoff, handoff_s_per_token

pytestmark = pytest.mark.unit


def test_mla_kv_goes_to_every_tp_rank_of_the_decode_instance():
    """DeepSeek-V3 FP8 KV: 61 layers x 576 B = 35,136 B per token on every device. An attention-DP prefill rank
    (tp 1) sending to a TP8 decode instance moves 8 copies over its one 50 GB/s NIC: 8192 tokens in
    8192 x 35,136 x 8 / 50e9 = 46.05 ms; to an attention-DP decode rank (tp 1), one copy: 5.76 ms."""
    tp8 = handoff_s_per_token(35_136.0, decode_tp=8, prefill_tp=1, link_bytes_per_s=50e9)
    dp = handoff_s_per_token(35_136.0, decode_tp=1, prefill_tp=1, link_bytes_per_s=50e9)
    assert 8192 * tp8 == pytest.approx(46.05e-3, rel=1e-3)
    assert 8192 * dp == pytest.approx(5.757e-3, rel=1e-3)


def test_a_tp_prefill_instance_sends_over_all_its_ranks_links():
    """GQA split over TP4 on both sides: each decode rank holds a quarter (6,016 B of 24,064 B per token); the four
    prefill ranks send in parallel: 6,016 x 4 / (4 x 50e9) = 120.3 ns per token, as one rank sending its own share."""
    assert handoff_s_per_token(6_016.0, 4, 4, 50e9) == pytest.approx(6_016.0 / 50e9)
    with pytest.raises(ValueError):
        handoff_s_per_token(1.0, 0, 1, 50e9)


def test_one_send_stream_queues_a_replicas_transfers_and_leaves_other_replicas_alone():
    """1 ms per token, one stream: prompts of 2 and 3 tokens ending at t = 0 on replica 0 arrive at 2 and 5 ms; a
    prompt on replica 1 at t = 1 ms arrives at 3 ms; one ending after the queue drained starts at once."""
    h = KvHandoff(1e-3, streams=1)
    assert h.arrival_s(0, 2, 0.0) == pytest.approx(2e-3)
    assert h.arrival_s(0, 3, 0.0) == pytest.approx(5e-3)
    assert h.arrival_s(1, 2, 1e-3) == pytest.approx(3e-3)
    assert h.arrival_s(0, 1, 10e-3) == pytest.approx(11e-3)
    two = KvHandoff(1e-3, streams=2)
    assert [two.arrival_s(0, 2, 0.0) for _ in range(3)] == pytest.approx([2e-3, 2e-3, 4e-3])


def test_without_streams_every_transfer_starts_when_its_prompt_ends():
    h = KvHandoff(1e-3)
    assert [h.arrival_s(0, 2, 0.0) for _ in range(3)] == pytest.approx([2e-3] * 3)
