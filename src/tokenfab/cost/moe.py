"""Cost of one fused mixture-of-experts FFN layer on one device's shard.

Inference engines run the routed experts of a layer as ONE fused kernel (TensorRT-LLM's
fused MoE, vLLM/SGLang `fused_experts`, DeepGEMM grouped GEMMs): permute the tokens by
expert, one grouped GEMM over the per-expert token counts (up/gate), the activation,
a second grouped GEMM (down), unpermute and weight by the router scores. Costing each
expert as its own GEMM charges a launch and an occupancy penalty per expert, which the
kernels do not pay; here the whole layer is one kernel of the shared form
(`cost.kernel`) whose work is:

- FLOPs: 2 x rows x hidden x (up width + intermediate) over the rows (token-expert
  assignments) this device's experts receive;
- DRAM bytes: the weights of every local expert that receives at least one token (an
  expert nobody picked is never read), at their stored size with block scales (MXFP4 4.25 bits,
  NVFP4 4.5: `workload.weight_format`), plus the token traffic of permute, the two
  GEMMs' inputs and outputs, and unpermute;
- work units: output tiles of the grouped up-GEMM, summed over active experts (at least one
  row-tile per active expert);
- TensorRT-LLM-gen kernels (B200's MXFP4 x MXFP8 rows) size their token tile from all tokens over the local
  experts, as if every pick were local (`gen_tile_tokens`), so under EP each active expert computes a mostly
  padded tile: FLOPs count the padded rows. Which form a kernel follows is fitted per profile kind
  (`MOE_FORMS`); B200's held-out MAPE on ops_moe.csv went 21.5% -> 9.6% with it, the CUTLASS kinds fit it worse;
- resident bytes: what a warm microbenchmark must keep on chip to re-run from cache (weights and each
  token buffer once, times the copies a partitioned cache keeps: `ChipSpec.num_onchip_sram_partitions`),
  which is less than the traffic, since the kernel writes and re-reads its own permuted input and
  intermediates. Only the warm-cache fit and `warm_cache=True` use it.

Its efficiencies and fixed cost are a separate kernel class (profile table `moe`),
fitted on `shared/calibration/ops_moe.csv` through the same fitting machinery as GEMMs.

The fixed cost (21 us on B200's TensorRT-LLM-gen kernels, 26-27 us on L40S CUTLASS, 33-51 us on the
A100/H100/L40S torch-flow paths) is device time a CUDA-graph serving step pays too: the collector times
CUDA-graph replays of the MoE module's forward (aiconfigurator collect_moe.py via
helper.benchmark_with_power), so host launch overhead is not in it, and fitting the form
(L^q + work^q)^(1/q), where a host-side cost hidden under device work would give q >> 1, returns q = 1
(additive) on seven of the eight chip/format pairs and 1.14 on L40S CUTLASS bf16
(`python bench/accuracy_moe.py --fixed-cost-form`): it is the serial chain of routing, permute, two
grouped GEMMs, activation and finalize kernels, not a benchmark artefact. At a few tokens each of those
kernels is latency bound, so a chip that never ran the layer gets the pooled chain's cycles at its own
clock (`ChipSpec.clock_hz`, `calibrate.moe_fit`).

The rows per expert come from a routing distribution: `balanced` (the benchmark's
round-robin assignment), `uniform` (independent uniform routing, expected counts) or
`power-law:A` (heavy-tailed expert popularity as in aiconfigurator's collector: expert
weights drawn from a power law of exponent A, scaled to integer counts, and the busiest EP
rank is the one costed, since the layer waits for it). Power-law
loads are sampled with a seeded generator and averaged over a few draws, so a call is
deterministic.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from tokenfab.cost.chip_cost import ChipCost, KernelWork
from tokenfab.cost.gemm import TILE, gemm_kind
from tokenfab.cost.moe_popularity import popularity_load
from tokenfab.cost.result import OpCost
from tokenfab.errors import InvalidInputError
from tokenfab.units import bytes_per_element
from tokenfab.workload.weight_format import stored_bytes_per_weight

DISTRIBUTIONS = ("balanced", "uniform", "power-law:A", "zipf:S")
# How a fused kernel's work is counted (`moe_work`): work units per active expert's tile column, per row block,
# or rows padded to TensorRT-LLM-gen's token tile; which one a profile kind follows is fitted.
MOE_FORMS = ("columns", "row-tiles", "tile-ladder")
_POWER_LAW_DRAWS = 8  # draws averaged per power-law load (keeps the expected busiest rank stable)
_SIXTEEN_BIT = ("bf16", "fp16", "fp32", "tf32")


@dataclass(frozen=True, slots=True)
class MoEShape:
    """One fused MoE layer as one device sees it (the shape ops_moe.csv records)."""

    num_tokens: int  # tokens routed across the EP group (before dispatch filters them per rank)
    hidden: int
    intermediate: int  # per-expert intermediate width before MoE-TP splits it
    topk: int
    num_experts: int  # routed experts of the whole layer
    moe_tp: int = 1  # tensor-parallel split inside each expert
    ep: int = 1  # expert-parallel ranks the experts are spread over
    gated: bool = True  # SwiGLU-style gate+up (2 x width) vs a plain up projection
    distribution: str = "balanced"
    num_redundant_experts: int = 0  # extra expert slots over the EP group, filled and placed by EPLB (moe_popularity)

    def __post_init__(self) -> None:
        for name in ("num_tokens", "hidden", "intermediate", "topk", "num_experts", "moe_tp", "ep"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"MoE {name} must be >= 1, got {getattr(self, name)}")
        if self.num_redundant_experts:
            _check_redundant(self)
        if self.topk > self.num_experts:
            raise InvalidInputError(f"--topk {self.topk} exceeds the {self.num_experts} experts")
        if self.intermediate % self.moe_tp:
            raise InvalidInputError(f"--moe-tp {self.moe_tp} does not divide the intermediate width {self.intermediate}")
        parse_distribution(self.distribution)

    @property
    def local_experts(self) -> int:
        """Expert slots per EP rank: (experts + redundant slots) / ep; without redundant slots a count EP does not
        divide gets ceil (the remaining slots hold copies)."""
        return math.ceil((self.num_experts + self.num_redundant_experts) / self.ep)


def _check_redundant(shape: MoEShape) -> None:
    """Redundant slots (EPLB) need independent routing to place by load, and fill every rank alike."""
    r, e, ep = shape.num_redundant_experts, shape.num_experts, shape.ep
    if r < 0:
        raise InvalidInputError(f"MoE redundant experts must be >= 0, got {r}")
    if parse_distribution(shape.distribution)[0] not in ("uniform", "zipf"):
        raise InvalidInputError(f"redundant experts are placed by expected load: use 'uniform' or 'zipf:S' routing, "
                                f"not {shape.distribution!r}")
    if (e + r) % ep:
        fit = (-e) % ep
        raise InvalidInputError(f"{e} experts + {r} redundant slots are not a multiple of ep {ep}; valid redundant "
                                f"counts: {', '.join(str(fit + i * ep) for i in range(3))}, ...")


@dataclass(frozen=True, slots=True)
class ExpertLoad:
    """What the busiest device's experts receive: rows, experts with >= 1 row, and row-tiles."""

    rows: float  # token-expert assignments computed on this device
    active_experts: float
    tile_rows: float  # sum over active experts of min(rows_e, TILE): how many output-tile rows are busy
    row_tiles: float = 0.0  # sum over active experts of ceil(rows_e / TILE): row blocks of the grouped GEMM
    # sum over active experts of rows_e rounded up to the TensorRT-LLM-gen token tile (`gen_tile_tokens`): the
    # rows its grouped GEMMs compute, padding included
    ladder_rows: float = 0.0


def parse_distribution(text: str) -> tuple[str, float]:
    """('balanced'|'uniform'|'power-law'|'zipf', exponent) from 'balanced', 'uniform', 'power-law:1.2' (or
    power_law_1.2), 'zipf:0.8' (skewed expert popularity, `cost.moe_popularity`)."""
    t = text.strip().lower().replace("_", "-")
    if t in ("balanced", "uniform"):
        return t, 0.0
    if t.startswith("zipf:"):
        try:
            skew = float(t[5:])
        except ValueError:
            skew = -1.0
        if not 0.0 <= skew <= 4.0:
            raise InvalidInputError(f"zipf exponent must lie in [0, 4], got {t[5:]!r} (e.g. zipf:0.8)")
        return "zipf", skew
    for prefix in ("power-law:", "power-law-"):
        if t.startswith(prefix):
            try:
                alpha = float(t[len(prefix):])
            except ValueError:
                break
            if alpha <= 0 or alpha == 1.0:
                raise InvalidInputError(f"power-law exponent must be > 0 and != 1, got {alpha}")
            return "power-law", alpha
    raise InvalidInputError(f"unknown token distribution {text!r} (valid: {', '.join(DISTRIBUTIONS)}, e.g. power-law:1.2)")


def expert_load(shape: MoEShape) -> ExpertLoad:
    """Per-device load of the busiest EP rank under the shape's routing distribution."""
    kind, alpha = parse_distribution(shape.distribution)
    if shape.num_redundant_experts:  # EPLB's placement (cost.moe_popularity); 'uniform' is popularity skew 0
        skew, t = alpha if kind == "zipf" else 0.0, gen_tile_tokens(shape.num_tokens, shape.topk, shape.local_experts)
        args = (shape.num_tokens, shape.topk, shape.num_experts, shape.ep, skew)
        return ExpertLoad(*popularity_load(*args, TILE, shape.num_redundant_experts),
                          t * popularity_load(*args, t, shape.num_redundant_experts)[3])
    return _load(shape.num_tokens, shape.topk, shape.num_experts, shape.ep, kind, alpha)


@functools.lru_cache(maxsize=4096)
def _load(tokens: int, topk: int, experts: int, ep: int, kind: str, alpha: float) -> ExpertLoad:
    local = math.ceil(experts / ep)
    picks = tokens * topk
    if kind == "balanced":
        # Round-robin routing: picks spread evenly; fewer picks than experts hit distinct experts. Rows are
        # whole token-expert assignments and the busiest rank gets the rounded-up share: with fewer picks than
        # ranks it still computes one row of one expert (the benchmark's rank 0 always holds token 0's first
        # pick), where an expected fraction of a row would leave its weight read to the fixed cost.
        per = picks / experts
        rows = float(math.ceil(picks * local / experts - 1e-9))
        active = float(local) if per >= 1.0 else min(rows, float(local))
        t = gen_tile_tokens(tokens, topk, local)
        return ExpertLoad(rows, active, active * min(max(per, 1.0), TILE), active * math.ceil(max(per, 1.0) / TILE - 1e-9),
                          active * t * math.ceil(max(per, 1.0) / t - 1e-9))
    if kind == "uniform":
        p = topk / experts  # chance a given expert is among a token's picks
        per = tokens * p
        active = local * (1.0 - (1.0 - p) ** tokens)
        mean = per * local
        std = math.sqrt(max(local * tokens * p * (1 - p), 0.0))
        rows = min(picks, mean + std * math.sqrt(2.0 * math.log(ep))) if ep > 1 else mean
        t = gen_tile_tokens(tokens, topk, local)
        return ExpertLoad(rows, active, local * min(per, TILE) if per >= 1 else active,
                          local * math.ceil(per / TILE - 1e-9) if per >= 1 else active,
                          t * (local * math.ceil(per / t - 1e-9) if per >= 1 else active))
    if kind == "zipf":
        t = gen_tile_tokens(tokens, topk, local)
        rows, active, tile_rows, row_tiles = popularity_load(tokens, topk, experts, ep, alpha, TILE)
        return ExpertLoad(rows, active, tile_rows, row_tiles, t * popularity_load(tokens, topk, experts, ep, alpha, t)[3])
    draws = [_power_law_draw(tokens, topk, experts, ep, alpha, seed) for seed in range(_POWER_LAW_DRAWS)]
    return ExpertLoad(*(float(np.mean([d[i] for d in draws])) for i in range(5)))


def _power_law_draw(tokens: int, topk: int, experts: int, ep: int, alpha: float, seed: int) -> tuple[float, ...]:
    """One sample of the busiest rank's (rows, active experts, tile rows, row tiles) under power-law popularity."""
    rng = np.random.default_rng(seed)
    picks = tokens * topk
    lo, hi = (1.0, max(tokens * 0.8, 1.0 + 1e-9)) if picks > experts else (0.01, 2.0)
    u = rng.random(experts)
    a = 1.0 - alpha
    weights = ((hi ** a - lo ** a) * u + lo ** a) ** (1.0 / a)
    counts = _integer_counts(weights, picks)
    local = math.ceil(experts / ep)
    padded = np.zeros(local * ep)
    padded[:experts] = counts
    ranks = padded.reshape(ep, local)
    busiest = ranks[int(np.argmax(ranks.sum(axis=1)))]
    active = busiest[busiest > 0]
    t = gen_tile_tokens(tokens, topk, local)
    return (float(busiest.sum()), float(len(active)), float(np.minimum(active, TILE).sum()),
            float(np.ceil(active / TILE).sum()), float(t * np.ceil(active / t).sum()))


# Token tiles (tileN) TensorRT-LLM-gen's block-scaled MoE kernels are built for with MXFP8 activations: the
# launcher's mSupportedTileN (TensorRT-LLM cpp/tensorrt_llm/thop/mxFp4BlockScaleMoe.cpp, 'isMxFp8 ? {8, ..., 256}').
GEN_TILE_LADDER = (8, 16, 32, 64, 128, 256)


def gen_tile_tokens(tokens: int, topk: int, local_experts: int) -> int:
    """Token tile TensorRT-LLM-gen's grouped GEMMs run a layer with: the power of two at or above the average rows
    per LOCAL expert if every token's picks landed on this rank, tokens x top-k / local experts, clamped to
    `GEN_TILE_LADDER` (the launcher's computeSelectedTileN, github.com/NVIDIA/TensorRT-LLM
    cpp/tensorrt_llm/thop/mxFp4BlockScaleMoe.cpp; the same function in flashinfer csrc/trtllm_fused_moe_kernel_launcher.cu).

    Why it matters: with EP only 1/EP of those picks are local, so the tile is about EP times the rows an
    expert really gets, and every active expert computes a whole tile of mostly padding (B200 MXFP4 x MXFP8 at
    EP 8: 1,024 tokens take 0.32 ms, 4,096 tokens 0.30 ms in ops_moe.csv: both compute one 256-row tile per
    expert). The launcher offers the autotuner this tile and its ladder neighbours (one below, two above); the
    tile itself fits B200's training shapes better than the one below (fit 9.1% vs 10.4% MAPE)."""
    avg = tokens * topk / local_experts
    n = max(1, math.ceil(avg - 1e-9))
    return min(max(1 << (n - 1).bit_length(), GEN_TILE_LADDER[0]), GEN_TILE_LADDER[-1])


def _integer_counts(weights: np.ndarray, picks: int) -> np.ndarray:
    """Integer counts proportional to `weights` summing exactly to `picks`: rounded, and the rounding
    difference added to (or taken from) the most popular experts one each, as the collector does."""
    counts = np.round(weights / weights.sum() * picks)
    delta = int(picks - counts.sum())
    order = np.argsort(-counts, kind="stable")
    if delta > 0:
        np.add.at(counts, order[np.arange(delta) % len(order)], 1.0)
    elif delta < 0:
        positive = order[counts[order] > 0][::-1]
        for i in range(-delta):
            idx = positive[i % len(positive)]
            if counts[idx] > 0:
                counts[idx] -= 1.0
    return counts


def moe_kind(cc: ChipCost, act_dtype: str, weight_dtype: str) -> tuple[str, str]:
    """(profile key, compute dtype) of the fused MoE kernel for these formats.

    8-bit activations with 4-bit expert weights (GPT-OSS MXFP4 weights, MXFP8 activations) run the
    tensor cores at the 8-bit rate where the chip has it ('w4a8'); every other pairing follows GEMMs.
    """
    if act_dtype == "fp8" and weight_dtype in ("fp4", "int4") and cc.supports("fp8"):
        return "w4a8", "fp8"
    kind, compute = gemm_kind(cc, act_dtype, weight_dtype)
    return kind, compute


def moe_work(cc: ChipCost, shape: MoEShape, act_dtype: str = "bf16", weight_dtype: str | None = None,
             variant: str = "", row_tiles: bool = False, *, tile_ladder: bool = False,
             weight_bytes_per_element: float | None = None) -> KernelWork:
    """FLOPs, DRAM bytes and work units of the fused layer (module doc); shared by estimator and fitter.
    `variant` names another kernel backend with its own fit (e.g. 'cutlass': TensorRT-LLM's CUTLASS MoE);
    `row_tiles` counts each expert's row blocks as work units, `tile_ladder` computes every active expert's rows
    rounded up to TensorRT-LLM-gen's token tile (`gen_tile_tokens`; see below).
    `weight_bytes_per_element`: stored bytes of one expert weight, block scales included (a checkpoint's format,
    `workload.weight_format`); default the weight dtype's default format (fp4: NVFP4's 4.5 bits)."""
    weight_dtype = weight_dtype or act_dtype
    if weight_bytes_per_element is None:
        weight_bytes_per_element = stored_bytes_per_weight(weight_dtype)
    kind, compute = moe_kind(cc, act_dtype, weight_dtype)
    kind = f"{kind}-{variant}" if variant else kind
    load = expert_load(shape)
    h, width = shape.hidden, shape.intermediate // shape.moe_tp
    up = 2 * width if shape.gated else width
    a = bytes_per_element(act_dtype) if act_dtype in _SIXTEEN_BIT or cc.supports(act_dtype) else 2.0
    flops = 2.0 * load.rows * h * (up + width)
    weights = load.active_experts * (h * up + width * h) * weight_bytes_per_element
    # permute (read + write) and GEMM-1 input in the input format; 16-bit intermediate written and read;
    # 16-bit GEMM-2 output written, read by unpermute, which writes one 16-bit row per token; plus the
    # router scores of every token.
    tokens = load.rows * h * 3 * a + load.rows * width * 2 * 2 + load.rows * h * 2 * 2 + shape.num_tokens * h * 2
    scores = shape.num_tokens * shape.num_experts * 2  # the 16-bit router scores the kernel's top-k reads
    if a < 2.0:
        # 8-bit activations: every token's 16-bit hidden state is read and written in the input format (with
        # its scales) before the permute, over all tokens the rank receives, not only the rows it keeps.
        tokens += shape.num_tokens * h * (2.0 + a)
    # Distinct bytes a warm re-run keeps on chip: the weights, the permuted input, the intermediate, the
    # GEMM-2 output, the layer output and the scores. `tokens` counts each buffer's writes and re-reads,
    # so comparing it with the cache would evict working sets that fit (L40S layers at 1.0-1.3x its L2
    # ran at cache speed, 92-147% over-predicted when the traffic was compared).
    # A cache split into partitions that each keep a copy of what their compute units read (A100/H100's two L2
    # halves, `ChipSpec.num_onchip_sram_partitions`) holds these bytes once per partition: A100 and H100 layers
    # lose cache speed at half their L2, L40S's (one unified L2) at all of it (ops_moe.csv, bench/accuracy_moe.py
    # --cache-steps), so counting the copies puts every chip's step at the same fraction of its L2.
    distinct = weights + load.rows * (h * a + width * 2 + h * 2) + shape.num_tokens * h * 2 + scores
    resident = distinct * cc.sram_partitions
    tokens += scores
    # Work units: output-tile columns of the grouped up-GEMM per active expert (one CTA each, however
    # few rows the expert got: thin experts are memory bound, not starved of parallelism); with
    # `row_tiles`, every row block of TILE rows of an expert is its own CTA (kernels that tile M, so a
    # thick expert fills more of the chip). With `tile_ladder` (TensorRT-LLM-gen, `gen_tile_tokens`) each
    # active expert computes its rows rounded up to the token tile, padding included, one CTA per tile and
    # weight column block. Which of the three a kernel follows is fitted per profile kind
    # (`calibrate.moe_fit.fit_moe_kind`), not assumed.
    if tile_ladder:
        t = gen_tile_tokens(shape.num_tokens, shape.topk, shape.local_experts)
        flops = 2.0 * max(load.ladder_rows, load.rows) * h * (up + width)
        work = math.ceil(up / TILE) * max(load.ladder_rows / t, load.active_experts)
    elif row_tiles:
        work = math.ceil(up / TILE) * max(load.row_tiles, load.active_experts)
    else:
        work = load.active_experts * math.ceil(up / TILE) * max(1.0, load.tile_rows / max(load.active_experts, 1e-9) / TILE)
    return KernelWork(flops, weights + tokens, cc.peak(compute), max(work, 1e-9), kind, resident_bytes=resident)


def gen_kernel(cc: ChipCost, kind: str) -> bool:
    """Whether MoE kind `kind` runs TensorRT-LLM-gen's block-scaled MoE kernel on this chip: MXFP4 weights with
    MXFP8 activations ('w4a8') on an NVIDIA chip with block-scaled 4-bit tensor cores (a spec'd fp4 rate: Blackwell).
    Its launcher pads every active expert's rows to one token tile by construction (`gen_tile_tokens`, from
    TensorRT-LLM's mxFp4BlockScaleMoe.cpp), and aiconfigurator's collector times this kernel for that format on
    Blackwell (its loader files w4a8_mxfp4_mxfp8 on Blackwell as 'trtllm-gen MXFP4xMXFP8',
    github.com/ai-dynamo/aiconfigurator). Those kernels are sm_100's (tcgen05): a chip whose spec says sm_100's FP4
    kernels do not describe it (`ChipSpec.kernels_not_inherited` 'gemm.fp4', e.g. GB202, sm_120) does not run them."""
    return (kind == "w4a8" and cc.chip.vendor.lower() == "nvidia" and cc.supports("fp4")
            and "gemm.fp4" not in cc.chip.kernels_not_inherited)


def resolved_moe_form(cc: ChipCost, kind: str) -> str:
    """How the fused layer's work is counted for MoE kind `kind` on this chip (`MOE_FORMS`): the form its resolved fit
    was fitted in; but where that fit is of another kind (a pooled fit that never ran this kernel, e.g. a chip left
    out of the fit: `calibrate.unseen`) and the kernel's tiling is fixed by its source (`gen_kernel`), the tiling of
    the kernel that runs. B200 left out (no pooled chip runs TensorRT-LLM-gen): 40.1% -> 35.4% MAPE on ops_moe.csv,
    the median error of its 1,024-token layers -43% -> -26% (bench/accuracy_moe.py, 'moe-layer:unseen-chip'); the
    rest is the fixed cost (+85% at 1 token: its chain is shorter than any pooled chip's, `calibrate.moe_fit`)."""
    if cc.resolved.moe_fitted_kind(kind) != kind and gen_kernel(cc, kind):
        return "tile-ladder"
    return cc.resolved.moe_form(kind)


def estimate_moe(
    cc: ChipCost, shape: MoEShape, act_dtype: str = "bf16", weight_dtype: str | None = None,
    *, variant: str = "", warm_cache: bool = False, op: str = "moe.experts",
    weight_bytes_per_element: float | None = None,
) -> OpCost:
    """Time of the fused routed-expert kernel on the busiest device (router and shared experts excluded).

    `warm_cache` models a microbenchmark that re-runs the layer on the same weights, as
    ops_moe.csv does; a model's forward pass is never warm. `weight_bytes_per_element`: as `moe_work`.
    """
    kind, _ = moe_kind(cc, act_dtype, weight_dtype or act_dtype)
    kind = f"{kind}-{variant}" if variant else kind
    form = resolved_moe_form(cc, kind)
    w = moe_work(cc, shape, act_dtype, weight_dtype, variant, row_tiles=form == "row-tiles",
                 tile_ladder=form == "tile-ladder", weight_bytes_per_element=weight_bytes_per_element)
    params, source = cc.resolved.moe(w.kind)
    return cc.run_kernel(op, w.flops, w.dram_bytes, w.peak, params, w.work_units, source, warm_cache,
                         resident_bytes=w.resident_bytes)
