"""vLLM V1 engine (v0.11 - v0.18), as `vllm serve` runs by default.

Sources: vllm/engine/arg_utils.py `EngineArgs._set_default_args` (API server on a GPU with >= 70 GiB:
max_num_batched_tokens 8192, max_num_seqs 1024; smaller GPUs 2048 / 256) and docs.vllm.ai
"Optimization and Tuning" (chunked prefill always on in V1; the scheduler serves running requests,
decodes first, then fills the budget with waiting prompts); vllm/config/compilation.py (CUDA graph
capture sizes 1, 2, 4, 8..248 step 8, then step 16 up to min(2 x max_num_seqs, 512));
gpu_memory_utilization 0.9 (EngineArgs default); preemption by recompute (V1 default).

Memory (vllm/v1/worker/gpu_worker.py, V1): `init_device` initialises the distributed environment (NCCL, custom
all-reduce buffers) before it takes the memory snapshot, and requests gpu_memory_utilization x the snapshot's
total, torch.cuda.mem_get_info's (CUDA's total, below nvidia-smi's); `determine_available_memory` then charges
the weights, the profiling run's torch peak and the non-torch memory that grew during it (non_torch_increase)
to that budget, and the rest is the KV cache. CUDA graphs are captured afterwards, from the remaining headroom:
their memory is charged to the budget only from v0.21 (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default on), after
the releases modelled here. non_torch_increase at TP 1: 0.11 GiB, measured with two models on an A100 under vLLM
V1 (>= 0.11) in github.com/ovg-project/kvcached/pull/448 (2026-08-19 review table); it is taken as per GPU.
"""

from __future__ import annotations

from tokenfab.serving.engines import EngineSpec, MemoryPolicy, register_engine
from tokenfab.units import GiB

SOURCE = ("vLLM v0.11-v0.18: vllm/engine/arg_utils.py (_set_default_args), vllm/config/compilation.py "
          "(cudagraph_capture_sizes), docs.vllm.ai/en/stable/configuration/optimization.html")


VLLM_NON_TORCH_BYTES = 0.11 * GiB  # non_torch_increase of the profiling run at TP 1 (kvcached PR #448, vLLM V1)


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
        memory=MemoryPolicy(kind="device-fraction", fraction=0.9, sizing_base="cuda-total",
                            non_torch_bytes=VLLM_NON_TORCH_BYTES,
                            source="vLLM EngineArgs gpu_memory_utilization=0.9 of CUDA's total (v1/worker/gpu_worker.py); "
                                   "non-torch memory 0.11 GiB (github.com/ovg-project/kvcached/pull/448)"),
        source=SOURCE,
    )
