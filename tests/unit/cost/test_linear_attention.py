"""Linear-attention (Gated DeltaNet) and DSA-indexer kernels: hand-counted work and the roofline floor."""

import pytest

from tokenfab.cost.linear_attention import (
    CHUNK, estimate_dsa_indexer, estimate_linear_attention, linear_decode_work, linear_prefill_work,
)

pytestmark = pytest.mark.unit


def test_decode_work_by_hand(ideal_cost):
    w = linear_decode_work(ideal_cost, batch=2, num_heads=4, num_key_heads=2, key_dim=8, value_dim=16)
    assert w.flops == 2 * 4 * 6 * 8 * 16
    state = 2 * 4 * 8 * 16 * 4.0 * 2  # fp32 state read + written per sequence
    io = 2 * (2 * 2 * 8 + 2 * 4 * 16 + 2 * 4) * 2.0  # q, k, v, o, gates in bf16
    assert w.dram_bytes == state + io


def test_prefill_work_by_hand(ideal_cost):
    w = linear_prefill_work(ideal_cost, batch=1, q_len=256, num_heads=2, num_key_heads=1, key_dim=8, value_dim=8)
    assert w.flops == 256 * 2 * (4 * 8 * 8 + 2 * CHUNK * 16)
    assert w.work_units == 2 * 256 // CHUNK


def test_never_below_the_roofline(ideal_cost):
    for phase, q in (("prefill", 4096), ("decode", 1)):
        c = estimate_linear_attention(ideal_cost, phase, 16, q, 32, 16, 128, 128)
        assert c.time_s >= c.roofline_s > 0
    idx = estimate_dsa_indexer(ideal_cost, 8, 1, 100000, 64, 128)
    assert idx.time_s >= idx.roofline_s > 0
    # the indexer scans the whole context: 10x the context, about 10x the bytes
    big = estimate_dsa_indexer(ideal_cost, 8, 1, 1000000, 64, 128)
    assert big.bytes == pytest.approx(10 * idx.bytes, rel=0.01)
