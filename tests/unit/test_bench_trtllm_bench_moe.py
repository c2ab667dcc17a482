"""How bench/accuracy_moe_serving.py sets a trtllm-bench MoE row's engine limits and KV format: trtllm-bench's own
heuristic (tensorrt_llm/bench/build/tuning.py, as bench/trtllm_bench_moe.py replays it), hand-computed here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from accuracy_moe_serving import offline_kv_dtype, offline_limits  # noqa: E402
from accuracy_serving import PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES  # noqa: E402
from trtllm_bench_moe import bench_kv_requests, captured_list, checkpoint_elements, trtllm_bench_moe_limits  # noqa: E402

pytestmark = pytest.mark.unit


def _kw(**over) -> dict:
    kw = dict(model="deepseek-v3", hardware="b200", tp=1, dp=4, ep=4, pp=1, dtype="fp4", kv_dtype="fp8", input_len=1000,
              output_len=1000, engine_version="1.1")
    return {**kw, **over}


def test_nvfp4_checkpoint_counts_packed_bytes_and_block_scales_as_elements():
    """DeepSeek-V3: 671,026,404,352 parameters, of which embedding + LM head 2 x 926,679,040 and norms 881,664 stay
    16-bit: 669,172,164,608 x (1/2 + 1/16) + 1,854,239,744 = 378,263,582,336 stored elements; FP8: one per weight."""
    assert checkpoint_elements("deepseek-v3", "fp4") == pytest.approx(378_263_582_336, rel=1e-12)
    assert checkpoint_elements("deepseek-v3", "fp8") == 671_026_404_352


def test_deepseek_dep4_charges_mla_as_128_kv_heads_of_56_and_gets_384_per_rank():
    """B200 183,359 MiB x 4 (--tp 4) = 716.246 GiB, less 378.26e9 x 0.5 B = 176.14 GiB, x 0.90 = 486.10 GiB over
    2 x 61 x max(4, 128) x (7168 / 128 = 56) x 1 B = 874,496 B per token x 2000 = 298.4 requests -> 128 x ceil(2.33)
    = 384; tokens 596.8 -> 2048, above 1000 + 384. The absorbed MLA cache (61 x 576 B per token) would admit ~25x more."""
    assert bench_kv_requests(_kw(), 4) == pytest.approx(298.42, abs=0.01)
    assert trtllm_bench_moe_limits(_kw()) == {"max_num_seqs": 384, "max_batched_tokens": 2048,
                                              "cuda_graph_batch_sizes": captured_list(384, 2048)}


def test_qwen3_dep8_on_h100_counts_every_gpu_of_the_attention_group():
    """H100 81,559 MiB x 8 = 637.18 GiB less 235.09e9 x 1 B = 218.95 GiB, x 0.90 = 376.41 GiB over 2 x 94 x max(8, 4)
    x 128 x 1 B = 192,512 B per token x 2000 = 1049.7 requests -> 256 x ceil(4.10) = 1280; tokens 2099 -> 2304."""
    kw = _kw(model="qwen3-235b-a22b", hardware="h100-sxm", dp=8, ep=8, dtype="fp8")
    assert bench_kv_requests(kw, 8) == pytest.approx(1049.7, abs=0.1)
    assert trtllm_bench_moe_limits(kw) == {"max_num_seqs": 1280, "max_batched_tokens": 2304,
                                           "cuda_graph_batch_sizes": captured_list(1280, 2304)}


def test_mxfp4_checkpoint_takes_build_config_defaults_and_raises_tokens_to_the_prompt():
    """GPT-OSS's MXFP4 quantisation is not one trtllm-bench tunes: max_batch_size 2048, max_num_tokens 8192, raised to
    ISL + 2048 without chunking; the perf overview's capture list."""
    kw = _kw(model="gpt-oss-120b", dp=2, ep=2, input_len=32768, output_len=1024)
    assert offline_limits(kw) == {"max_num_seqs": 2048, "max_batched_tokens": 34816,
                                  "cuda_graph_batch_sizes": captured_list(2048, 34816)}
    assert offline_limits({**kw, "input_len": 1000})["max_batched_tokens"] == 8192


def test_moe_rows_capture_the_perf_overview_list_up_to_the_largest_decode_batch_and_pad_to_it():
    """The perf overview's MoE llm_options capture 1, 2, 4, ..., 256, 384, 512, 1024, 2048, 4096, 8192 with padding; the
    engine keeps those up to min(max_batch_size, max_num_tokens) and, since the list goes beyond it, that batch too
    (_filter_cuda_graph_batch_sizes): 1280 / 2304 keeps ..., 1024 and adds 1280; 384 is in the list; 2048 / 34816
    keeps 2048; a bound above the list's 8192 adds nothing."""
    assert captured_list(1280, 2304) == (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 1280)
    assert captured_list(384, 2048) == (1, 2, 4, 8, 16, 32, 64, 128, 256, 384)
    assert captured_list(2048, 34816)[-2:] == (1024, 2048)
    assert captured_list(4096, 1500)[-1] == 1500  # max_num_tokens bounds a pure-decode batch too
    assert captured_list(10_000, 20_000) == PERF_OVERVIEW_CUDA_GRAPH_BATCH_SIZES


def test_a_larger_kv_share_never_lowers_the_batch_limit():
    low, high = (trtllm_bench_moe_limits(_kw(kv_free_memory_frac=f))["max_num_seqs"] for f in (0.85, 0.95))
    assert high >= low


def test_gpt_oss_keeps_a_16_bit_kv_cache_on_hopper_and_fp8_on_blackwell():
    assert offline_kv_dtype("gpt-oss-120b", "fp8", "h100-sxm") == "bf16"
    assert offline_kv_dtype("gpt-oss-120b", "fp4", "b200") == "fp8"
    assert offline_kv_dtype("qwen3-235b-a22b", "fp8", "h100-sxm") == "fp8"
    assert offline_kv_dtype("mixtral-8x7b", "fp16", "a100-sxm") == "fp16"
