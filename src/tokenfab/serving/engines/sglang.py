"""SGLang engine (v0.5.x), as `python -m sglang.launch_server` runs by default.

Two releases' defaults, because SGLang changed how it sizes memory within 0.5.x:
- 0.5.0-0.5.3 (`version="0.5.1"`): PR #7054 (2025-06) keeps a reserve out of the static pool by device size:
  (9.5 + tp x pp / 2) GiB below 90 GiB of device memory, (12 + tp x pp / 2) GiB below 160 GiB, 32 GiB above;
  4 GiB more with attention-DP, 2 GiB more with an EAGLE/MTP draft; chunked_prefill_size 2048 below 35 GiB,
  8192 below 160 GiB, 16384 above.
- 0.5.4 on (the default): PR #10975 (merged 2025-09, github.com/sgl-project/sglang/pull/10975) derives the reserve
  from the settings it sizes: 512 MiB + 1.5 MiB per chunked-prefill token (at least 2048) + 2 MiB per CUDA-graph
  batch + tp x pp x 128 MiB, with attention-DP 3 MiB per graph batch per DP rank (1.5 more above 300 batches),
  at least 10 GiB on devices above 60 GiB, then 2 GiB for an EAGLE/MTP draft; chunked_prefill_size and
  cuda_graph_max_bs by device size (8192 / 256 at TP < 4, 512 at TP >= 4 up to 160 GiB; 16384 / 512 above).
Either way mem_fraction_static = round((device - reserve) / device, 3), device memory as nvidia-smi reports it
(python/sglang/srt/server_args.py `_handle_gpu_memory_settings`; the aiconfigurator SGLang backend re-derives
the same, ai-dynamo/aiconfigurator PR #1511).

What the fraction applies to (both eras; python/sglang/srt/model_executor/model_runner.py): `init_torch_distributed`
returns the free memory after the CUDA context and the distributed init (torch.cuda.mem_get_info's free, in GiB),
and `profile_max_num_token` gives the KV pool what is free after loading less (1 - mem_fraction_static) x that
figure, i.e. mem_fraction_static x (free memory at init) - weights. Free memory at init on an H100 80GB at TP 1:
78.43 GiB ("Init torch distributed ends. mem usage=0.09 GB", "Load weight begin. avail mem=78.43 GB": SGLang's
LoRA docs notebook as built by its CI on 2026-02-09, Llama-3.1-8B-Instruct), 0.79 GiB below CUDA's 79.22 GiB total
(hardware/chips/h100-sxm.yaml): the process's CUDA context and torch state, taken as per GPU. Across GPUs the
distributed init holds more: 1.96 GiB on rank 0 of an 8-GPU NVLink instance (github.com/sgl-project/sglang/pull/11716,
2025-10-16 log: "Init torch distributed ends. mem usage=1.96 GB"; 1.77-2.01 GB over its ranks), so 1.87 GiB more
than the 0.09 GiB at TP 1; it is taken for every multi-GPU layout (TP 2-4 may hold less; no log states them).
Checked on another chip: B200 at TP 4 gives 178.35 - 0.79 - 1.87 = 175.69 GiB free at init, where SGLang logged
175.34 GiB (github.com/sgl-project/sglang/pull/9162, DeepSeek-R1-FP4, "Load weight begin. avail mem=175.34 GB").

Scheduling (both): python/sglang/srt/managers/scheduler.py (a new prefill batch is run as soon as waiting
requests can be admitted, pausing decodes; enable_mixed_chunk is off by default; requests are retracted, i.e.
recomputed, when the KV pool runs out), python/sglang/srt/model_executor/cuda_graph_runner.py (capture sizes
1, 2, 4, 8, 12, 16, 24, 32, then steps of 8 / 16). With DP attention each DP rank's scheduler prefills at most
chunked_prefill_size // dp_size tokens per iteration (server_args.py `_handle_data_parallelism`: "DP attention is
enabled. The chunked prefill size is adjusted to ... to avoid MoE kernel issues"), `chunk_per_dp_rank`.
The CUDA graphs cover decode batches only (piecewise graphs for extend batches are opt-in), so a prompt-only
iteration launches every kernel of every layer from Python: its host time (`EngineSpec.prefill_overhead_s`) is
fitted per decoder layer and model class, for DeepSeek (MLA + MoE) by bench/fit_moe_prefill.py on the B200 SGLang runs
(serving/engines/prefill_overheads.yaml, applied by `engines.for_model`); dense models keep none.
"""

from __future__ import annotations

from tokenfab.errors import InvalidInputError
from tokenfab.serving.engines import (
    EngineSpec,
    MemoryPolicy,
    StaticReserve,
    register_engine,
)

MIB, GIB = 2.0**20, 2.0**30
CONTEXT_BYTES = (79.22 - 78.43) * GIB  # CUDA's total less SGLang's free memory at init, H100 TP 1 (see above)
DISTRIBUTED_BYTES = (1.96 - 0.09) * GIB  # distributed init across GPUs beyond TP 1's (PR #11716 log, TP 8)
SOURCE = ("SGLang v0.5.x: python/sglang/srt/server_args.py (chunked_prefill_size, cuda_graph_max_bs, "
          "mem_fraction_static: PR #7054 for 0.5.0-0.5.3, PR #10975 from 0.5.4), srt/managers/scheduler.py "
          "(prefill-first, retract), srt/model_executor/cuda_graph_runner.py")
RELEASES = ("0.5.1", "0.5.4")  # one per memory-sizing era; any 0.5.x selects its era


def capture_sizes(max_bs: int) -> tuple[int, ...]:
    sizes = [1, 2, 4, 8, 12, 16, 24, 32, *range(40, 257, 8), *range(272, 512, 16), *range(512, 1025, 32)]
    return tuple(s for s in sizes if s <= max_bs)


def _era(version: str | None) -> str:
    """The memory-sizing era of a release string such as '0.5.1.post1' or '0.5.9' (None: the current one)."""
    if version is None:
        return "0.5.4"
    try:
        major, minor, patch = (int(p) for p in version.split(".")[:3])
    except ValueError:
        raise InvalidInputError(f"SGLang version {version!r} is not of the form 0.5.N; known eras: "
                                f"{', '.join(RELEASES)} (0.5.0-0.5.3, 0.5.4 on)") from None
    if (major, minor) != (0, 5):
        raise InvalidInputError(f"SGLang {version} is outside the modelled 0.5.x releases; choose 0.5.0-0.5.9 "
                                f"(eras {', '.join(RELEASES)})")
    return "0.5.1" if patch <= 3 else "0.5.4"


def _reserve_pr7054(mem: float) -> StaticReserve:
    gib = mem / GIB
    fixed = 9.5 if gib < 90 else 12.0 if gib < 160 else 32.0
    per_rank = 0.5 if gib < 160 else 0.0
    return StaticReserve(device_memory_bytes=mem, fixed_bytes=fixed * GIB, per_model_rank_bytes=per_rank * GIB,
                         dp_attention_bytes=4 * GIB, speculative_bytes=2 * GIB)


def _reserve_pr10975(mem: float, chunk: int, graph_bs: int) -> StaticReserve:
    per_dp = graph_bs * 3 + (graph_bs * 1.5 if graph_bs > 300 else 0.0)
    return StaticReserve(device_memory_bytes=mem, fixed_bytes=(512 + max(chunk, 2048) * 1.5 + graph_bs * 2) * MIB,
                         per_model_rank_bytes=128 * MIB, per_dp_rank_bytes=per_dp * MIB,
                         floor_bytes=10 * GIB if mem > 60 * GIB else 0.0, speculative_bytes=2 * GIB)


def _sizes(era: str, mem: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs) by device memory, as each era's server_args sets them."""
    gib = mem / GIB
    if era == "0.5.1":
        chunk = 2048 if gib < 35 else 8192 if gib < 160 else 16384
        return chunk, 160 if (tp < 4 and gib < 90) else 256
    if gib < 35:
        return 2048, 24 if tp < 4 else 80
    if gib < 60:
        return 4096, 32 if tp < 4 else 160
    if gib < 160:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


@register_engine("sglang")
def sglang_engine(device_memory_bytes: float, tp: int, version: str | None = None) -> EngineSpec:
    era = _era(version)
    chunk, max_bs = _sizes(era, device_memory_bytes, tp)
    reserve = (_reserve_pr7054(device_memory_bytes) if era == "0.5.1"
               else _reserve_pr10975(device_memory_bytes, chunk, max_bs))
    return EngineSpec(
        name="sglang", version=version or "0.5.4-0.5.9", max_num_seqs=4096, max_num_batched_tokens=chunk,
        chunked_prefill=True, prefill_chunk_tokens=chunk, chunk_per_dp_rank=True, prefill_first=True, cuda_graph_sizes=capture_sizes(max_bs),
        kv_full="preempt", block_tokens=1,
        memory=MemoryPolicy(kind="static-fraction", fraction=reserve.fraction(), reserve=reserve, sizing_base="cuda-total",
                            context_bytes=CONTEXT_BYTES, distributed_bytes=DISTRIBUTED_BYTES,
                            source=f"SGLang server_args mem_fraction_static heuristic ({'PR #7054' if era == '0.5.1' else 'PR #10975'})"),
        source=SOURCE,
    )
