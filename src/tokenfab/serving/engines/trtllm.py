"""TensorRT-LLM engine (v1.0 - v1.3, PyTorch backend), as `trtllm-serve` runs by default.

Sources: tensorrt_llm/llmapi/llm_args.py (max_num_tokens 8192, max_batch_size 2048, enable_chunked_prefill
False, KvCacheConfig.free_gpu_memory_fraction 0.9 of the memory free after loading the model,
CapacitySchedulerPolicy GUARANTEED_NO_EVICT: a request is admitted only if its whole generation fits in the
KV cache), CudaGraphConfig (batch sizes 1, 2, 4, 8, 16, 24, 32, ... up to max_batch_size 128 by default, with
padding enabled), docs nvidia.github.io/TensorRT-LLM "Inflight batching" (context and generation requests share
an iteration).
"""

from __future__ import annotations

from tokenfab.serving.engines import EngineSpec, MemoryPolicy, register_engine

SOURCE = ("TensorRT-LLM v1.0-v1.3: tensorrt_llm/llmapi/llm_args.py (max_num_tokens, max_batch_size, "
          "enable_chunked_prefill, KvCacheConfig.free_gpu_memory_fraction, CudaGraphConfig), "
          "nvidia.github.io/TensorRT-LLM/advanced/gpt-attention.html#inflight-batching")


def capture_sizes(max_bs: int = 128) -> tuple[int, ...]:
    sizes = [1, 2, 4, 8, *range(16, max_bs + 1, 8)]
    return tuple(s for s in sizes if s <= max_bs)


@register_engine("trtllm")
def trtllm_engine(device_memory_bytes: float, tp: int) -> EngineSpec:
    return EngineSpec(
        name="trtllm", version="1.0-1.3 (PyTorch backend)", max_num_seqs=2048, max_num_batched_tokens=8192,
        chunked_prefill=False, prefill_first=False, cuda_graph_sizes=capture_sizes(), kv_full="reserve",
        block_tokens=32,
        memory=MemoryPolicy(kind="free-fraction", fraction=0.9, source="TensorRT-LLM KvCacheConfig.free_gpu_memory_fraction=0.9"),
        source=SOURCE,
    )
