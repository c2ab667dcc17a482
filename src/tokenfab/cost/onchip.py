"""The on-chip memory (L2 cache or SRAM) between the compute units and DRAM.

Three effects of its capacity and bandwidth, all physics, no fitted constant:

1. GEMM operand reuse. A tiled GEMM C[m,n] = A[m,k] @ W[k,n] works on a block of C of
   Tm x Tn at a time; the A and W panels of that block (Tm x k and k x Tn) must stay on
   chip for the tiles of the block to share them. A is then read ceil(n / Tn) times and
   W ceil(m / Tm) times from DRAM. The panels are as large as the on-chip memory allows
   (never smaller than one register/shared-memory tile of `MIN_TILE`), so a GPU with tens
   of MB of L2 reads decode GEMMs once and re-reads only the biggest prefill GEMMs.
2. K/V reuse across query heads and query blocks in FlashAttention prefill: the query
   heads of a GQA group and the query blocks of a sequence all read the same K/V. If one
   KV head's K/V fit on chip, DRAM delivers them once; otherwise every wave of concurrently
   running readers (one per compute unit) streams them again. Decode kernels already pack
   the query heads of a group into one reader (flash-decoding, FlashInfer): read once.
3. Data held on chip across steps. When a device's weights fit in the on-chip memory
   they are pinned there (as SRAM-only inference chips such as Hanguang 800 and Groq do,
   and as CUDA's L2 persistence window allows) and stream at the on-chip bandwidth; the
   KV cache of a step is held too when it fits beside them.

Time of the memory side of a kernel (used by `kernel.kernel_time_s`):
    t_mem = max(dram_bytes / DRAM_bw, (dram_bytes + onchip_bytes) / onchip_bw)
every byte passes the on-chip memory, DRAM bytes also the DRAM interface. Moving bytes
from DRAM to on chip never increases t_mem, and more capacity only moves bytes that way,
so more on-chip memory never slows a kernel.

Bandwidth: a chip's `onchip_sram_bandwidth_bytes_per_s` when its YAML gives one (with a
source). Where none is published the model ASSUMES it equals the DRAM bandwidth, so the
on-chip memory then saves re-reads (effects 1 and 2) but holding data on chip (effect 3)
gains no speed; `OnChipMemory.bandwidth_basis` says which applies. A chip whose YAML gives no
on-chip capacity is not taken to have none: its operands are read once and nothing is held on
chip (`reuse_capacity_bytes` = inf, `capacity_bytes` = 0). Chips whose main memory
is itself on chip (memory kind 'none', e.g. Hanguang 800) have no separate level: their
'DRAM' figures already are the SRAM's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenfab.hardware.spec import ChipSpec

MIN_TILE = 128  # smallest output-tile edge a GEMM works on without any L2 reuse (CUTLASS/cuBLAS threadblock class)


@dataclass(frozen=True, slots=True)
class OnChipMemory:
    """The on-chip level of one chip as the cost functions see it (plain floats)."""

    capacity_bytes: float  # what data can be held there (0: nothing is held on chip)
    bandwidth_bytes_per_s: float
    bandwidth_basis: str  # 'sourced' (chip YAML) or 'assumed-equal-to-dram' (no published figure)
    reuse_capacity_bytes: float = math.inf  # what GEMM/attention re-reads see (inf: capacity not published)


def onchip_memory(chip: ChipSpec) -> OnChipMemory:
    """The on-chip level of `chip` (see the module doc for the bandwidth assumption).

    A chip whose YAML gives no on-chip capacity is not assumed to have none: its operands are
    taken to be read once (as before this model), and nothing is held on chip across steps.
    """
    dram_bw = chip.memory_bandwidth_bytes_per_s
    if chip.memory.kind == "none":  # the main memory is the SRAM: no second level to model
        return OnChipMemory(0.0, dram_bw, "main-memory-is-on-chip")
    reuse = chip.onchip_sram_bytes.value if chip.onchip_sram_bytes is not None else math.inf
    sourced = chip.onchip_sram_bandwidth_bytes_per_s
    if sourced is not None and sourced.value > 0:
        return OnChipMemory(chip.sram_bytes, sourced.value, "sourced", reuse)
    return OnChipMemory(chip.sram_bytes, dram_bw, "assumed-equal-to-dram", reuse)


def memory_time_s(dram_bytes: float, onchip_bytes: float, dram_bw: float, onchip_bw: float) -> float:
    """Lower bound of the memory side of a kernel that reads `onchip_bytes` of data held on chip.

    Kernels without such data keep t = dram_bytes / dram_bw exactly (the fitted form).
    """
    t = dram_bytes / dram_bw
    if onchip_bytes > 0.0:
        t = max(t, (dram_bytes + onchip_bytes) / onchip_bw)
    return t


def gemm_panel_tiles(m: int, n: int, k: int, a_bytes: float, w_bytes: float, capacity_bytes: float) -> tuple[float, float]:
    """(Tm, Tn): the largest block of C whose A and W panels fit in `capacity_bytes` together.

    Square blocks while both dimensions allow; capacity left when one side is whole goes to
    the other. Both edges grow monotonically with the capacity.
    """
    budget = capacity_bytes / k  # panel bytes per unit of k
    side = budget / (a_bytes + w_bytes)
    tm = min(float(m), max(float(MIN_TILE), side))
    tn = min(float(n), max(float(MIN_TILE), side))
    spare = budget - tm * a_bytes - tn * w_bytes
    if spare > 0.0:
        if tm >= m and tn < n:
            tn = min(float(n), tn + spare / w_bytes)
        elif tn >= n and tm < m:
            tm = min(float(m), tm + spare / a_bytes)
    return tm, tn


def gemm_operand_passes(m: int, n: int, k: int, a_bytes: float, w_bytes: float, capacity_bytes: float) -> tuple[int, int]:
    """(times A is read, times W is read) from DRAM by a tiled GEMM with this much on-chip memory."""
    tm, tn = gemm_panel_tiles(m, n, k, a_bytes, w_bytes, capacity_bytes)
    return math.ceil(n / tn - 1e-9), math.ceil(m / tm - 1e-9)


def gemm_traffic_bytes(
    m: int, n: int, k: int, a_bytes: float, w_bytes: float, out_bytes: float, capacity_bytes: float,
    weights_on_chip: bool = False,
) -> tuple[float, float]:
    """(DRAM bytes, on-chip-resident bytes) of one GEMM.

    With the weights held on chip, W is read from there and A streams once (every row block
    of A meets all of W without leaving the chip); otherwise the panel reuse above applies.
    """
    a_total, w_total, c_total = m * k * a_bytes, k * n * w_bytes, m * n * out_bytes
    if weights_on_chip:
        return a_total + c_total, w_total
    passes_a, passes_w = gemm_operand_passes(m, n, k, a_bytes, w_bytes, capacity_bytes)
    return a_total * passes_a + w_total * passes_w + c_total, 0.0


def prefill_kv_passes(
    kv_head_bytes: float, num_heads: int, num_kv_heads: int, num_q_blocks: int, capacity_bytes: float,
    compute_units: float,
) -> int:
    """Times the K/V of one KV head are read from DRAM in FlashAttention prefill (see module doc)."""
    if kv_head_bytes <= capacity_bytes:
        return 1
    readers = max(1, num_heads // max(1, num_kv_heads)) * max(1, num_q_blocks)
    return max(1, math.ceil(readers / max(1.0, compute_units)))


@dataclass(slots=True, unsafe_hash=True)  # not frozen: built per operator, see cost.result.OpCost
class GemmShape:
    """What a GEMM's traffic depends on, for re-evaluating it at other on-chip capacities (`sweep`)."""

    m: int
    n: int
    k: int
    a_bytes: float
    w_bytes: float
    out_bytes: float
    weights_on_chip: bool


@dataclass(slots=True, unsafe_hash=True)  # not frozen: built per operator, see cost.result.OpCost
class PrefillKvShape:
    """What prefill attention's traffic depends on: bytes that never change, K/V bytes read per pass."""

    fixed_bytes: float
    kv_bytes_per_pass: float
    kv_head_bytes: float
    num_heads: int
    num_kv_heads: int
    num_q_blocks: int


@dataclass(slots=True, unsafe_hash=True)  # not frozen: built per operator, see cost.result.OpCost
class DecodeKvShape:
    """Decode attention's cache bytes, which come from on chip when the deployment holds the KV there."""

    cache_bytes: float
    kv_on_chip: bool


def gemm_traffic_array(shape: GemmShape, capacity_bytes, weights_on_chip):
    """`gemm_traffic_bytes` over arrays of capacities and residency flags (numpy; same formulas). The shape's
    fields may be arrays too (a column of GEMMs against a row of chips: a design sweep's 2D re-timing)."""
    import numpy as np

    m, n, k, a, w = shape.m, shape.n, shape.k, shape.a_bytes, shape.w_bytes
    fm, fn = np.asarray(m, dtype=float), np.asarray(n, dtype=float)  # shape fields may be columns of many GEMMs
    budget = np.asarray(capacity_bytes, dtype=float) / k
    side = budget / (a + w)
    tm = np.minimum(fm, np.maximum(float(MIN_TILE), side))
    tn = np.minimum(fn, np.maximum(float(MIN_TILE), side))
    spare = budget - tm * a - tn * w
    grow_n = (spare > 0.0) & (tm >= m) & (tn < n)
    grow_m = (spare > 0.0) & ~grow_n & (tn >= n) & (tm < m)
    tn = np.where(grow_n, np.minimum(fn, tn + spare / w), tn)
    tm = np.where(grow_m, np.minimum(fm, tm + spare / a), tm)
    passes_a, passes_w = np.ceil(n / tn - 1e-9), np.ceil(m / tm - 1e-9)
    a_total, w_total, c_total = m * k * a, k * n * w, m * n * shape.out_bytes
    streamed = a_total * passes_a + w_total * passes_w + c_total
    held = np.asarray(weights_on_chip, dtype=bool)
    return np.where(held, a_total + c_total, streamed), np.where(held, w_total, 0.0)


def prefill_kv_passes_array(shape: PrefillKvShape, capacity_bytes, compute_units):
    """`prefill_kv_passes` over arrays of capacities and compute-unit counts."""
    return kv_passes_array(prefill_kv_readers(shape), shape.kv_head_bytes, capacity_bytes, compute_units)


def prefill_kv_readers(shape: PrefillKvShape) -> int:
    """Query blocks that each read one KV head's K/V in prefill (`prefill_kv_passes`)."""
    return max(1, shape.num_heads // max(1, shape.num_kv_heads)) * max(1, shape.num_q_blocks)


def kv_passes_array(readers, kv_head_bytes, capacity_bytes, compute_units):
    """`prefill_kv_passes` from its readers over arrays (any of them: they broadcast)."""
    import numpy as np

    waves = np.maximum(1.0, np.ceil(readers / np.maximum(1.0, compute_units)))
    return np.where(kv_head_bytes <= np.asarray(capacity_bytes, dtype=float), 1.0, waves)


@dataclass(frozen=True, slots=True)
class ResidencyPlan:
    """What a deployment keeps on chip across steps (decided once per deployment and step shape)."""

    weights_on_chip: bool
    kv_budget_bytes: float  # on-chip bytes left for a step's KV cache (0: none)
    kv_bytes_per_token: float  # per device, all layers of the stage

    def kv_on_chip(self, cached_tokens: float) -> bool:
        """Whether a step holding `cached_tokens` KV tokens per device keeps them on chip."""
        return self.kv_bytes_per_token > 0 and cached_tokens * self.kv_bytes_per_token <= self.kv_budget_bytes


NO_RESIDENCY = ResidencyPlan(False, 0.0, 0.0)


def plan_residency(
    onchip: OnChipMemory, dram_bandwidth_bytes_per_s: float, weight_bytes: float, kv_bytes_per_token: float,
) -> ResidencyPlan:
    """Weights first (every step reads all of them), then a step's KV cache in what is left.

    Only the whole of a device's weights is pinned: a partly pinned model would take the
    on-chip memory away from the GEMM panels of the rest (effect 1) for little gain.
    """
    if onchip.capacity_bytes <= 0.0 or onchip.bandwidth_bytes_per_s < dram_bandwidth_bytes_per_s:
        return NO_RESIDENCY  # nothing to hold, or holding it on chip would be slower than DRAM
    if weight_bytes > onchip.capacity_bytes:
        return NO_RESIDENCY  # the whole on-chip memory stays a cache for GEMM and attention re-reads
    return ResidencyPlan(True, onchip.capacity_bytes - weight_bytes, kv_bytes_per_token)
