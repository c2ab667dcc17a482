"""SGLang engine (v0.5.x), as `python -m sglang.launch_server` runs by default.

Sources: python/sglang/srt/server_args.py (`_handle_gpu_memory_settings`: chunked_prefill_size 2048 below
35 GB of device memory, 4096 below 60 GB, 8192 below 90 GB, 16384 above; cuda_graph_max_bs 160 for
TP < 4 on 80 GB-class GPUs, 256 above; mem_fraction_static ~0.88 on 80 GB GPUs at TP 1),
python/sglang/srt/managers/scheduler.py (a new prefill batch is run as soon as waiting requests can be
admitted, pausing decodes; enable_mixed_chunk is off by default; requests are retracted, i.e. recomputed,
when the KV pool runs out), python/sglang/srt/model_executor/cuda_graph_runner.py (capture sizes
1, 2, 4, 8, 12, 16, 24, 32, then steps of 8 / 16).
"""

from __future__ import annotations

from tokenfab.serving.engines import EngineSpec, MemoryPolicy, register_engine
from tokenfab.units import GB

SOURCE = ("SGLang v0.5.x: python/sglang/srt/server_args.py (chunked_prefill_size, cuda_graph_max_bs, "
          "mem_fraction_static), srt/managers/scheduler.py (prefill-first, retract), srt/model_executor/cuda_graph_runner.py")


def _chunk(device_memory_bytes: float) -> int:
    gb = device_memory_bytes / GB
    return 2048 if gb < 35 else 4096 if gb < 60 else 8192 if gb < 90 else 16384


def capture_sizes(max_bs: int) -> tuple[int, ...]:
    sizes = [1, 2, 4, 8, 12, 16, 24, 32, *range(40, 161, 8), *range(176, 513, 16)]
    return tuple(s for s in sizes if s <= max_bs)


@register_engine("sglang")
def sglang_engine(device_memory_bytes: float, tp: int) -> EngineSpec:
    max_bs = 160 if (tp < 4 and device_memory_bytes < 90 * GB) else 256
    chunk = _chunk(device_memory_bytes)
    return EngineSpec(
        name="sglang", version="0.5.x", max_num_seqs=4096, max_num_batched_tokens=chunk, chunked_prefill=True,
        prefill_chunk_tokens=chunk, prefill_first=True, cuda_graph_sizes=capture_sizes(max_bs), kv_full="preempt",
        block_tokens=1,
        memory=MemoryPolicy(kind="static-fraction", fraction=0.88, source="SGLang server_args mem_fraction_static (80 GB GPU, TP 1)"),
        source=SOURCE,
    )
