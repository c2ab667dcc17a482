"""How bench/accuracy_serving.py sets a trtllm-bench row's engine limits: trtllm-bench's own estimate of the KV room
(tensorrt_llm/bench/build/tuning.py calc_engine_setting + finetune_setting), hand-computed here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from accuracy_serving import _finetune_setting, _trtllm_bench_limits  # noqa: E402

pytestmark = pytest.mark.unit


def _kw(**over) -> dict:
    kw = dict(model="llama-3.1-70b", hardware="h100-sxm", tp=1, pp=1, dtype="fp8", kv_dtype="fp8", input_len=128,
              output_len=2048, engine_version="0.14.0")
    return {**kw, **over}


def test_engine_release_tp1_is_held_at_the_minimum_batch_and_chunks_context():
    """H100 (81,559 MiB = 79.6475 GiB), 70,553,706,496 parameters as 70.5537 'GB' at 1 byte (FP8): (79.6475 - 70.5537)
    x 0.95 = 8.6391 GiB over 2 x 80 x 8 x 128 x 1 B = 1.52588e-4 GiB per token = 56,617 tokens, / 2176 = 26.0
    requests -> max_batch_size max(64, 32) = 64, max_num_tokens max(2048, 27.6) = 2048, kept under chunking."""
    assert _trtllm_bench_limits(_kw()) == {"max_num_seqs": 64, "max_batched_tokens": 2048, "chunked_prefill": True,
                                           "cuda_graph_batch_sizes": ()}


def test_engine_release_tp8_rounds_the_batch_up_to_256():
    """TP8: 8 x 79.6475 - 70.5537 = 566.63 GiB x 0.95 = 538.29 GiB / 1.52588e-4 (max(8, 8) KV heads) = 3.5277M
    tokens / 2176 = 1621.2 requests -> 256 x ceil(6.33) = 1792; tokens 1621.2 x 1.0625 = 1722 -> 2048."""
    assert _trtllm_bench_limits(_kw(tp=8)) == {"max_num_seqs": 1792, "max_batched_tokens": 2048, "chunked_prefill": True,
                                               "cuda_graph_batch_sizes": ()}


def test_pytorch_backend_counts_nvfp4_weights_at_half_a_byte_and_raises_tokens_to_the_prompt():
    """B200 (179.0615 GiB), FP4 weights 70,553,706,496 x 0.5 B = 32.854 GiB, the run's fraction 0.95: 146.207 x 0.95
    = 138.90 GiB / 1.52588e-4 = 910.3k tokens / 2176 = 418.3 requests -> 128 x ceil(3.27) = 512; tokens 444 -> 2048.
    A 20,000-token prompt without chunking raises max_num_tokens to 20,000 + max_batch_size. The CUDA graphs are the
    perf overview's llm_options.yml list."""
    kw = _kw(hardware="b200", dtype="fp4", engine_version="0.20", kv_free_memory_frac=0.95)
    sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)
    assert _trtllm_bench_limits(kw) == {"max_num_seqs": 512, "max_batched_tokens": 2048, "cuda_graph_batch_sizes": sizes}
    long = _trtllm_bench_limits({**kw, "input_len": 20000, "output_len": 2000})
    assert long["max_batched_tokens"] == 20000 + long["max_num_seqs"]


@pytest.mark.parametrize(("requests", "isl", "osl", "pp", "expected"), [
    (10.0, 128, 128, 1, (64, 2048)),          # floors: batch 64, tokens 2048
    (300.0, 128, 128, 1, (384, 2048)),        # 256 <= 300 < 1024: 128 x ceil(2.34) = 384; 600 tokens -> 2048
    (5000.0, 128, 128, 1, (4096, 8192)),      # capped at 4096 requests; 4096 x 2 = 8192 tokens (1024-step)
    (5000.0, 2048, 128, 1, (4096, 32768)),    # tokens capped at 32768
    (5000.0, 128, 128, 2, (2048, 4096)),      # the cap is shared by the pp stages
])
def test_finetune_setting_rounding(requests, isl, osl, pp, expected):
    assert _finetune_setting(requests, isl, osl, pp) == expected


def test_moe_layouts_keep_tokenfabs_kv_room_and_capture_graphs_up_to_the_batch():
    """An MoE model sizes the batch from tokenfab's KV room (of one attention-DP rank); the PyTorch backend's graphs
    reach max_batch_size, the TensorRT-engine release keeps no such setting."""
    kw = _kw(model="mixtral-8x7b", tp=2, engine_version="1.0", kv_free_memory_frac=0.9)
    out = _trtllm_bench_limits(kw)
    assert out["cuda_graph_max_batch"] == out["max_num_seqs"] >= 64
    assert "cuda_graph_max_batch" not in _trtllm_bench_limits({**kw, "engine_version": "0.14.0"})
