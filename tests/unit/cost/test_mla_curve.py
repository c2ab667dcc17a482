"""Absorbed-MLA decode on a chip without measured MLA rows: decode curve's memory side, prefill's compute."""

import pytest

from tokenfab.cost.attention import decode_curve, estimate_decode_attention, mla_curve_from_chip
from tokenfab.cost.chip_cost import chip_cost
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("kv, kind", [("bf16", "mla"), ("fp8", "mla-fp8")])
def test_chip_without_mla_rows_takes_decode_memory_side_and_prefill_compute(kv, kind):
    cc = chip_cost(load_chip("b200"))  # its profile has GQA decode and prefill fits, no MLA rows
    decode, _ = cc.resolved.attention("decode", kv)
    prefill, _ = cc.resolved.attention("prefill", kv)
    params, _ = decode_curve(cc, kind, 576)
    assert params == mla_curve_from_chip(cc, kv)[0]
    assert params.compute_eff == prefill.compute_eff
    assert (params.launch_s, params.memory_eff, params.cache_bw_factor) == (
        decode.launch_s, decode.memory_eff, decode.cache_bw_factor)


def test_chip_with_mla_rows_keeps_its_own_fit():
    cc = chip_cost(load_chip("h20"))  # H20 profile has an 'mla' decode fit (vendor FlashInfer MLA rows)
    params, _ = decode_curve(cc, "mla", 576)
    assert params != mla_curve_from_chip(cc, "bf16")[0]


def test_b200_mla_decode_streams_the_latent_cache_near_the_decode_kernels_bandwidth():
    """DeepSeek-V3 TP8 decode, 256 sequences at 5k context, fp8 latent cache: memory bound, and no slower
    than the cache bytes at the GQA decode kernel's fitted bandwidth plus its fixed cost (it was ~6x that
    when the prefill curve's unconstrained memory efficiency, 0.18, was used)."""
    cc = chip_cost(load_chip("b200"))
    c = estimate_decode_attention(cc, 256, 5120.0, 16, 1, 576, 512, "fp8", latent_dim=576)
    decode, _ = cc.resolved.attention("decode", "fp8")
    stream_s = c.bytes / (cc.bandwidth_bytes_per_s * decode.memory_eff)
    assert c.bound == "memory"
    assert c.time_s <= 1.05 * (stream_s + decode.launch_s)
