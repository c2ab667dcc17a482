"""vLLM V1 engine (v0.11 - v0.18), as `vllm serve` runs by default.

Sources: vllm/engine/arg_utils.py `EngineArgs._set_default_args` (API server on a GPU with >= 70 GiB:
max_num_batched_tokens 8192, max_num_seqs 1024; smaller GPUs 2048 / 256) and docs.vllm.ai
"Optimization and Tuning" (chunked prefill always on in V1; the scheduler serves running requests,
decodes first, then fills the budget with waiting prompts); vllm/config/compilation.py (CUDA graph
capture sizes 1, 2, 4, 8..248 step 8, then step 16 up to min(2 x max_num_seqs, 512));
gpu_memory_utilization 0.9 (EngineArgs default); preemption by recompute (V1 default).
"""

from __future__ import annotations

from tokenfab.serving.engines import EngineSpec, MemoryPolicy, register_engine
from tokenfab.units import GiB

SOURCE = ("vLLM v0.11-v0.18: vllm/engine/arg_utils.py (_set_default_args), vllm/config/compilation.py "
          "(cudagraph_capture_sizes), docs.vllm.ai/en/stable/configuration/optimization.html")


def capture_sizes(max_num_seqs: int) -> tuple[int, ...]:
    top = min(2 * max_num_seqs, 512)
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, top + 1, 16)]
    return tuple(s for s in sizes if s <= top)


@register_engine("vllm")
def vllm_engine(device_memory_bytes: float, tp: int) -> EngineSpec:
    big = device_memory_bytes >= 70 * GiB
    seqs = 1024 if big else 256
    return EngineSpec(
        name="vllm", version="0.11-0.18 (V1)", max_num_seqs=seqs, max_num_batched_tokens=8192 if big else 2048,
        chunked_prefill=True, prefill_first=False, cuda_graph_sizes=capture_sizes(seqs), kv_full="preempt",
        block_tokens=16,
        memory=MemoryPolicy(kind="device-fraction", fraction=0.9, source="vLLM EngineArgs gpu_memory_utilization=0.9"),
        source=SOURCE,
    )
