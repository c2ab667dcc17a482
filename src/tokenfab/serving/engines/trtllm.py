"""TensorRT-LLM engine (v1.0 - v1.3, PyTorch backend), as `trtllm-serve` runs by default; `version` 0.12-0.16
selects the TensorRT-engine runtime's memory sizing (runtime and decoder buffers and the engine process's fixed reserve,
held before the KV cache is sized) and its 64-token KV blocks.

Sources: tensorrt_llm/llmapi/llm_args.py (max_num_tokens 8192, max_batch_size 2048, enable_chunked_prefill
False, KvCacheConfig.free_gpu_memory_fraction 0.9 of the memory free after loading the model,
CapacitySchedulerPolicy GUARANTEED_NO_EVICT: a request is admitted only if its whole generation fits in the
KV cache), CudaGraphConfig (batch sizes 1, 2, 4, 8, 16, 24, 32, ... up to max_batch_size 128 by default, with
padding enabled), docs nvidia.github.io/TensorRT-LLM "Inflight batching" (context and generation requests share
an iteration). The rows a decode batch is padded with to a captured size are one dummy request repeated, whose
context is 1 + draft tokens (_torch/pyexecutor/model_engine.py _get_padded_batch extends the generation requests with
`[cuda_graph_dummy_request] * padding_size`; resource_manager.py KVCacheManager.add_dummy_requests gives it
token_num = 1 + max_num_draft_tokens): they widen the GEMMs and collectives, not the attention's KV reads.
An iteration that schedules a context request replays no graph (_torch/pyexecutor/scheduler.py,
ScheduledRequests.can_run_cuda_graph is `not self.context_requests`; piecewise CUDA graphs for context need
torch_compile_config, off by default): it launches every layer's kernels from Python, a host time
(`EngineSpec.prefill_overhead_s`) fitted per decoder layer for the MoE model classes by bench/fit_moe_prefill.py
(prefill_overheads.yaml, applied by `engines.for_model`); dense models keep none.
Its KV pool is sized as if every layer were full attention, also for a sliding-window model run with per-layer
windows (VSWA, e.g. GPT-OSS): cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp BlockManager::calculateWindowSizeToShare,
"Currently the use of this function is not used for BaseKVCacheManager::calculateMaxNumBlocks because we want to
first achieve identical performance as assuming all layers as full attention" (each window size gets the blocks a
full-attention layer would), so the windowed layers' memory is not lent to the full-attention ones.
"""

from __future__ import annotations

import math

from tokenfab.errors import InvalidInputError
from tokenfab.serving.engines import EngineSpec, MemoryPolicy, register_engine
from tokenfab.serving.engines.sglang import CONTEXT_BYTES as TORCH_CONTEXT_BYTES

SOURCE = ("TensorRT-LLM v1.0-v1.3: tensorrt_llm/llmapi/llm_args.py (max_num_tokens, max_batch_size, "
          "enable_chunked_prefill, KvCacheConfig.free_gpu_memory_fraction, CudaGraphConfig), "
          "nvidia.github.io/TensorRT-LLM/advanced/gpt-attention.html#inflight-batching")


def capture_sizes(max_bs: int = 128) -> tuple[int, ...]:
    """Decode batch sizes captured as CUDA graphs up to `max_bs` (cuda_graph_config.max_batch_size) with padding on,
    as CudaGraphConfig._generate_cuda_graph_batch_sizes (tensorrt_llm/llmapi/llm_args.py, v0.20-v1.0) generates
    them: 1, 2, 4, then multiples of 8 to 128, powers of two from 256 below `max_bs`, and `max_bs` itself."""
    sizes = [1, 2, 4, *range(8, 129, 8), *(2**i for i in range(8, math.floor(math.log2(max_bs))))]
    sizes = sorted(s for s in sizes if s <= max_bs)
    return tuple(sizes if sizes[-1] == max_bs else [*sizes, max_bs])


# The v0.x TensorRT-engine runtime (trtllm-bench's C++ executor) allocates, before it measures free memory for the
# paged KV cache, runtime buffers (logits [max_batch_size x beam, vocab_padded], batch_manager/runtimeBuffers.cpp
# setMaxBufferSizes: numLogits = maxBatchSize x beam) and the decoder's per-slot buffers (GptDecoderBatched:
# sampling workspaces over the vocabulary per sequence slot); trtGptModelInflightBatching.cpp logs both
# ("[MemUsageChange] Allocated ... GPU memory for runtime buffers / for decoder") before createKvCacheManager.
# Coefficient: the one published log that states the sizes these scale with, NVIDIA/TensorRT-LLM v0.12 docs
# "Performance benchmarking" (docs/source/performance/perf-benchmarking.md, trtllm-bench throughput, Llama-2-7B FP8,
# H100, engine 0.12.0.dev2024073000): maxBatchSize 4096, vocab 32000, "Allocated 1.14 GB GPU memory for runtime
# buffers", "Allocated 4.35 GB GPU memory for decoder" (MemoryCounters::bytesToString: GB = 2^30 bytes).
# Per slot the same log's [batch, beam, max_seq_len] buffers (output ids, cache indirection; max_seq_len 4098) are
# folded into this figure: a measurement of one configuration, not a fit. Those grow with max_seq_len, which this
# law does not follow (NVIDIA/TensorRT-LLM issue #2317, v0.12: Llama-3.1's default max_seq_len 131072 against
# Llama-3's 8192 took runtime buffers to about 3 GB and the decoder to about 5 GB); no published log states enough
# of its configuration to separate the two terms. trtllm-bench builds for the dataset's ISL + OSL, mostly below 4098.
LOG_MAX_BATCH_SIZE, LOG_VOCAB_SIZE = 4096, 32000
LOG_RUNTIME_BUFFERS_BYTES, LOG_DECODER_BYTES = 1.14 * 2.0**30, 4.35 * 2.0**30
ENGINE_RUNTIME_BYTES_PER_SLOT_VOCAB = (LOG_RUNTIME_BUFFERS_BYTES + LOG_DECODER_BYTES) / (LOG_MAX_BATCH_SIZE * LOG_VOCAB_SIZE)
# The same log also states the device total and what was free when the KV cache was sized ("Memory usage when
# calculating max tokens in paged kv cache: total: 79.10 GiB, available: 63.62 GiB") beside every allocation it names:
# "Loaded engine size: 6214 MiB", "Allocated 928.77 MiB for execution context memory", the runtime buffers and the
# decoder above. What it does not name, 79.10 - 63.62 - (6214 + 928.77) / 1024 - 1.14 - 4.35 = 3.01 GiB, the engine
# process held all the same (its CUDA context, TensorRT's, cuBLAS's and the plugins' workspaces and kernel images);
# it is taken as fixed per GPU, a measurement of one configuration like the per-slot term, not a fit. (The ledger sizes
# against CUDA's total as the runtime does, below; the catalog's H100 figure, 79.22 GiB from another published log, is
# 0.12 GiB above this one's.)
LOG_TOTAL_GIB, LOG_AVAILABLE_GIB, LOG_ENGINE_MIB, LOG_EXECUTION_CONTEXT_MIB = 79.10, 63.62, 6214.0, 928.77
ENGINE_RUNTIME_FIXED_BYTES = (LOG_TOTAL_GIB - LOG_AVAILABLE_GIB) * 2.0**30 - (LOG_ENGINE_MIB + LOG_EXECUTION_CONTEXT_MIB) * 2.0**20 \
    - LOG_RUNTIME_BUFFERS_BYTES - LOG_DECODER_BYTES
ENGINE_RUNTIME_SOURCE = ("NVIDIA/TensorRT-LLM v0.12 docs/source/performance/perf-benchmarking.md trtllm-bench log "
                         "(Llama-2-7B, maxBatchSize 4096, vocab 32000: runtime buffers 1.14 GB, decoder 4.35 GB; "
                         "3.01 GiB held beyond the allocations it names); "
                         "batch_manager/runtimeBuffers.cpp setMaxBufferSizes")
# What both runtimes measure free memory against is CUDA's total, not the device's: the v0.12 log's "total: 79.10 GiB"
# is cudaMemGetInfo's (nvidia-smi reports 81,559 MiB = 79.65 GiB for the same 80 GB H100), and the PyTorch backend
# sizes the KV cache as (total - peak) x free_gpu_memory_fraction with total from torch.cuda.mem_get_info and peak the
# profiling forward's torch peak plus the memory the process holds outside torch, its CUDA context among it
# (tensorrt_llm/_torch/pyexecutor/_util.py KvCacheCreator: estimate_max_kv_cache_tokens, _cal_max_tokens, logging
# "Peak memory during memory usage profiling (torch + non-torch)"). The v0.x fixed term above already holds the engine
# process's context (it is what the log's total leaves unnamed); for the PyTorch backend the context of a torch process
# is taken as measured on an H100 at TP 1, 0.79 GiB (serving/engines/sglang.py CONTEXT_BYTES: CUDA's 79.22 GiB total
# less the 78.43 GiB free after init). Its NCCL communicators and all-reduce workspaces at TP > 1 are not counted: no
# published TensorRT-LLM log states them.
PYTORCH_SIZING_SOURCE = ("CUDA's total (torch.cuda.mem_get_info) less the profiling peak and the process's non-torch memory "
                         "(tensorrt_llm/_torch/pyexecutor/_util.py _cal_max_tokens); CUDA context of a torch process on H100 "
                         "0.79 GiB (SGLang log, serving/engines/sglang.py)")
# The v0.12 log's paged KV cache has "Number of tokens per block: 64" (the TensorRT engine's tokens_per_block); the
# PyTorch backend's KvCacheConfig uses 32.
ENGINE_BLOCK_TOKENS = 64
ENGINE_RUNTIME_MINORS = range(12, 17)  # v0.12-v0.16: trtllm-bench runs a TensorRT engine through the C++ executor
PYTORCH_RELEASES = ("0.20", "0.21")  # trtllm-bench's PyTorch backend, as the 1.x releases (the rows' v0.20 runs)


# With pipeline parallelism the PyTorch executor keeps pp_size micro-batches in flight (py_executor.py:
# num_micro_batches = dist.pp_size, `_executor_loop_pp` schedules one per iteration from the requests not in flight);
# its capacity scheduler admits max_batch_size x pp_size sequences and its micro-batch scheduler bounds each
# micro-batch by max_batch_size and max_num_tokens (_torch/pyexecutor/_util.py create_py_executor_instance:
# max_num_sequences = max_batch_size * mapping.pp_size, BindCapacityScheduler(max_num_sequences, ...),
# BindMicroBatchScheduler(max_batch_size, max_num_tokens, ...); the same in v1.0-v1.2).
PP_LIMITS_SOURCE = ("TensorRT-LLM _torch/pyexecutor/_util.py create_py_executor_instance (capacity scheduler "
                    "max_batch_size x pp_size, micro-batch scheduler max_batch_size / max_num_tokens), py_executor.py "
                    "num_micro_batches = pp_size")


def _era(version: str | None) -> str:
    """'engine' for the v0.12-v0.16 TensorRT-engine runtime, 'pytorch' for v0.20, v0.21 and 1.x (None: 1.x)."""
    if version is None:
        return "pytorch"
    parts = version.lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise InvalidInputError(f"TensorRT-LLM version {version!r} is not of the form 0.N or 1.N; modelled: "
                                f"0.12-0.16 (TensorRT engine), {', '.join(PYTORCH_RELEASES)}, 1.0-1.3 (PyTorch backend)") from None
    if major == 1 or f"{major}.{minor}" in PYTORCH_RELEASES:
        return "pytorch"
    if major == 0 and minor in ENGINE_RUNTIME_MINORS:
        return "engine"
    raise InvalidInputError(f"TensorRT-LLM {version} is not modelled; choose 0.12-0.16 (TensorRT engine), "
                            f"{', '.join(PYTORCH_RELEASES)} or 1.0-1.3 (PyTorch backend)")


def is_engine_runtime(version: str | None) -> bool:
    """True for a release whose trtllm-bench runs a TensorRT engine through the C++ executor (0.12-0.16)."""
    return _era(version) == "engine"


def captured_sizes(sizes: tuple[int, ...], max_batch_size: int, max_num_tokens: int) -> tuple[int, ...]:
    """The batch sizes of an explicit cuda_graph_config.batch_sizes list the engine captures: those not above its
    max_batch_size and max_num_tokens (_torch/pyexecutor/model_engine.py, `self._cuda_graph_batch_sizes`); a decode
    batch above the largest of them runs without a graph and without padding."""
    return tuple(s for s in sizes if s <= max_batch_size and s <= max_num_tokens)


@register_engine("trtllm")
def trtllm_engine(device_memory_bytes: float, tp: int, version: str | None = None,
                  cuda_graph_max_batch: int | None = None, cuda_graph_batch_sizes: tuple[int, ...] | None = None) -> EngineSpec:
    """`cuda_graph_max_batch`: cuda_graph_config.max_batch_size (default 128; trtllm-bench's PyTorch backend sets it to
    the run's max_batch_size, benchmark/utils/general.py get_settings). `cuda_graph_batch_sizes`: cuda_graph_config.
    batch_sizes given explicitly (an --extra_llm_api_options file), which replace the generated list; the engine
    captures those not above max_batch_size and max_num_tokens (_torch/pyexecutor/model_engine.py keeps
    `bs <= max_num_tokens and bs <= batch_size`; `captured_sizes`). An empty list: no CUDA graphs (the v0.x
    TensorRT-engine runtime under trtllm-bench throughput, whose PerformanceOptions leave cuda_graphs off)."""
    engine_runtime = _era(version) == "engine"
    memory = MemoryPolicy(kind="free-fraction", fraction=0.9, sizing_base="cuda-total",
                          source="TensorRT-LLM KvCacheConfig.free_gpu_memory_fraction=0.9 of what is free of CUDA's total")
    if engine_runtime:
        memory = memory.model_copy(update={"runtime_bytes_per_slot_vocab": ENGINE_RUNTIME_BYTES_PER_SLOT_VOCAB,
                                           "runtime_fixed_bytes": ENGINE_RUNTIME_FIXED_BYTES,
                                           "source": f"{memory.source}; runtime and decoder buffers: {ENGINE_RUNTIME_SOURCE}"})
    else:
        memory = memory.model_copy(update={"context_bytes": TORCH_CONTEXT_BYTES,
                                           "source": f"{memory.source}; {PYTORCH_SIZING_SOURCE}"})
    return EngineSpec(
        name="trtllm", version=version or "1.0-1.3 (PyTorch backend)", max_num_seqs=2048, max_num_batched_tokens=8192,
        chunked_prefill=False, prefill_first=False, kv_full="reserve",
        cuda_graph_sizes=tuple(sorted(set(cuda_graph_batch_sizes))) if cuda_graph_batch_sizes is not None
        else capture_sizes(cuda_graph_max_batch or 128),
        block_tokens=ENGINE_BLOCK_TOKENS if engine_runtime else 32, memory=memory, kv_sizing_window_aware=False,
        eager_prompt_iterations=not engine_runtime,  # v0.x: one TensorRT engine launch per iteration, not per kernel
        kv_send_streams=1,  # the context side's one KV send buffer (serving.disagg.SOURCE)
        pp_limits="micro-batch",  # PP_LIMITS_SOURCE
        source=f"{SOURCE}; v0.12-v0.16: {ENGINE_RUNTIME_SOURCE}" if engine_runtime else SOURCE,
    )
