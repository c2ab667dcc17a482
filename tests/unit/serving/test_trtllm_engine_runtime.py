"""TensorRT-LLM v0.x (TensorRT-engine runtime): buffers sized by max_batch_size x vocabulary that the runtime holds
before it sizes the paged KV cache, against the published trtllm-bench log they are taken from
(NVIDIA/TensorRT-LLM v0.12 docs/source/performance/perf-benchmarking.md: Llama-2-7B FP8 on H100, maxBatchSize 4096,
maxNumTokens 8192, vocab 32000, "Allocated 1.14 GB GPU memory for runtime buffers", "Allocated 4.35 GB GPU memory
for decoder", KV Memory Percentage 99%, "Allocated 62.99 GiB for max tokens in paged KV cache")."""

from __future__ import annotations

import pytest

from tokenfab import api
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.catalog import load_chip
from tokenfab.serving.engines import engine_spec

GIB = 2.0**30
H100 = load_chip("h100-sxm").device_memory_bytes


def _memory(version: str | None):
    return engine_spec("trtllm", H100, 1, version).memory


@pytest.mark.unit
def test_published_log_runtime_plus_decoder_bytes():
    """The log's configuration reproduces the log's two allocations: 1.14 GB + 4.35 GB = 5.49 x 2^30 bytes, beside the
    fixed part: 79.10 - 63.62 GiB not free, less the engine (6214 MiB = 6.0684 GiB), the execution context
    (928.77 MiB = 0.9070 GiB) and those 5.49 GiB: 15.48 - 6.0684 - 0.9070 - 5.49 = 3.0146 GiB."""
    mem = _memory("0.12")
    assert mem.runtime_fixed_bytes == pytest.approx(3.0146 * GIB, rel=1e-4)
    assert mem.runtime_reserved_bytes(4096, 32000) - mem.runtime_fixed_bytes == pytest.approx(5.49 * GIB, rel=1e-12)


@pytest.mark.unit
def test_llama3_vocab_at_a_small_batch_hand_computed():
    """Llama-3 (vocab 128,256) at max_batch_size 64: 5.49 GiB x (64 x 128256) / (4096 x 32000) = 5.49 x 0.062625
    = 0.34381 GiB beside the fixed 3.0146 GiB; the padded vocabulary is the full width on every TP rank (128256 is a
    multiple of 4)."""
    mem = _memory("0.14.0")
    assert mem.runtime_reserved_bytes(64, 128256) == pytest.approx((3.0146 + 0.34381) * GIB, rel=1e-4)
    assert mem.runtime_reserved_bytes(64, 128256, world_size=4) == mem.runtime_reserved_bytes(64, 128256)
    # a vocabulary TP x PP does not divide is padded up to the next multiple: 32001 -> 32004 at 4 ranks
    assert mem.runtime_reserved_bytes(1, 32001, 4) - mem.runtime_fixed_bytes == \
        pytest.approx(mem.runtime_bytes_per_slot_vocab * 32004)


@pytest.mark.unit
def test_pytorch_backend_releases_hold_no_such_buffers():
    for version in (None, "0.20", "1.0", "1.2.0rc6"):
        assert _memory(version).runtime_bytes_per_slot_vocab == 0.0
        assert _memory(version).runtime_fixed_bytes == 0.0


@pytest.mark.unit
@pytest.mark.parametrize("version", ["0.8.1", "0.18", "2.0", "latest"])
def test_unmodelled_release_names_the_valid_ones(version):
    with pytest.raises(InvalidInputError, match="0.12-0.16"):
        engine_spec("trtllm", H100, 1, version)


@pytest.mark.unit
def test_published_log_kv_cache_bytes():
    """The log's KV cache (62.99 GiB at free fraction 0.99) against the ledger with and without the engine runtime's
    terms. Both runtimes size against CUDA's total (the log's "total: 79.10 GiB"; the catalog's H100 figure is 79.22
    GiB): with the v0.x terms, 79.22 - 6.52 (the ledger's weights) - 0.95 (its activations at 8192 tokens and 4096
    logits rows) - 5.49 - 3.01 = 63.25 GiB free, x 0.99 = 62.62 GiB (-0.6%); the PyTorch backend instead holds a torch
    process's CUDA context (0.79 GiB) and no v0.x buffers, 0.99 x (5.49 + 3.01 - 0.79) GiB more. Only the fixed term is
    taken from this log's totals; weights and activations are the ledger's own."""
    kv = {}
    for version in (None, "0.12"):
        r = api.simulate(model="llama-2-7b", hardware="h100-sxm", dtype="fp8", kv_dtype="fp8", engine="trtllm",
                         engine_version=version, max_num_seqs=4096, max_batched_tokens=8192, kv_free_memory_frac=0.99,
                         rate=1.0, num_requests=2, input_len=64, output_len=2)
        led = r.config["memory_bytes"]
        assert led["weights"] + led["activations"] + led["runtime_buffers"] + led["kv_cache"] + led["unused"] + \
            led["driver_and_context"] == pytest.approx(led["capacity"], rel=1e-9)
        kv[version] = led["kv_cache"]
    assert kv[None] - kv["0.12"] == pytest.approx(0.99 * (5.49 + 3.0146 - 0.79) * GIB, rel=1e-3)
    assert kv["0.12"] == pytest.approx(62.62 * GIB, rel=2e-3)
    assert abs(kv["0.12"] / (62.99 * GIB) - 1) < 0.01 < abs(kv[None] / (62.99 * GIB) - 1)


@pytest.mark.unit
def test_both_runtimes_size_against_cuda_total():
    """TensorRT-LLM measures free memory against CUDA's total (cudaMemGetInfo / torch.cuda.mem_get_info), below the
    device-reported one by what the driver keeps; the PyTorch backend's profiling peak also holds the process's CUDA
    context, the v0.x fixed term already does. H100 at TP 1, no v0.x buffers: 0.9 x (79.22 - 0.79 - weights - act)."""
    d = api.deployment("llama-3.1-8b", "h100-sxm", tp=1, dtype="fp8", kv_dtype="fp8",
                       **engine_spec("trtllm", H100, 1).memory.memory_model_kwargs())
    mem = d.memory
    expected = 0.9 * ((79.22 - 0.79) * GIB - mem.weights_bytes - mem.activations_bytes(0, 0)) / mem.kv_bytes_per_token
    assert mem.kv_capacity_tokens() == pytest.approx(expected, abs=1)
    assert mem.ledger()["driver_and_context"] == pytest.approx(H100 - (79.22 - 0.79) * GIB, rel=1e-3)
    engine = engine_spec("trtllm", H100, 1, "0.14.0").memory.memory_model_kwargs()
    assert engine == {"kv_free_memory_frac": 0.9, "sizing_base": "cuda-total"}


@pytest.mark.unit
def test_engine_releases_page_the_kv_cache_in_64_token_blocks():
    """The v0.12 log: "Number of tokens per block: 64"; the PyTorch backend's KvCacheConfig pages 32 tokens."""
    assert engine_spec("trtllm", H100, 1, "0.14.0").block_tokens == 64
    assert engine_spec("trtllm", H100, 1, "0.20").block_tokens == engine_spec("trtllm", H100, 1).block_tokens == 32


@pytest.mark.unit
def test_cuda_graph_capture_list_follows_the_largest_captured_batch():
    """CudaGraphConfig with padding: 1, 2, 4, multiples of 8 to 128, powers of two from 256 below the maximum, the
    maximum itself (1792 -> ..., 128, 256, 512, 1792); the default maximum 128 keeps the multiples of 8."""
    eight = tuple(range(8, 129, 8))
    assert engine_spec("trtllm", H100, 1).cuda_graph_sizes == (1, 2, 4, *eight)
    assert engine_spec("trtllm", H100, 1, cuda_graph_max_batch=1792).cuda_graph_sizes == (1, 2, 4, *eight, 256, 512, 1792)
    assert engine_spec("trtllm", H100, 1, cuda_graph_max_batch=4096).cuda_graph_sizes[-4:] == (512, 1024, 2048, 4096)
    assert engine_spec("trtllm", H100, 1, cuda_graph_max_batch=64).cuda_graph_sizes == (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64)
    with pytest.raises(InvalidInputError, match="trtllm"):
        engine_spec("vllm", H100, 1, cuda_graph_max_batch=256)


@pytest.mark.unit
def test_simulate_takes_the_capture_limit_for_trtllm_only():
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", rate=1.0, num_requests=2, input_len=64, output_len=2)
    assert api.simulate(engine="trtllm", cuda_graph_max_batch=512, **kw).summary["completed"] == 2
    with pytest.raises(InvalidInputError, match="largest captured batch can be chosen for: trtllm"):
        api.simulate(engine="sglang", cuda_graph_max_batch=512, **kw)
