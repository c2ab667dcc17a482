"""Re-timing the step model's own kernels for many chip designs at once (the sweep's fast path).

The step model runs on one design while a `_Recorder` keeps the inputs of every kernel it times
(FLOPs, traffic shape, fitted parameters, which peak it runs against) and a
`_RecordingStepModel` the (operator, count) pairs of every part a step sums. Every kernel is a
row of chip-independent figures (`_row`); a block of rows is re-timed against a block of designs
in one pass of 2D numpy arithmetic (`_Block`), each element by the same formula as the scalar
code (`cost.kernel`, `cost.onchip`, `cost.collectives`, `execution.power`), and the steps are
re-summed part by part in the order `StepModel.step` sums them. Operators this does not cover
(one not timed through `ChipCost.run_kernel`, a collective other than one scale-up domain's TP
all-reduce or all-gather) raise `_NotRecordable`.
"""

from __future__ import annotations

import numpy as np

from tokenfab.cost.chip_cost import ChipCost, sustained_peaks
from tokenfab.cost.collectives import TREE_BUS_FACTOR, bus_factor, collective_name, steps, tree_steps
from tokenfab.cost.onchip import (
    DecodeKvShape, GemmShape, PrefillKvShape, gemm_traffic_array, kv_passes_array, onchip_memory, prefill_kv_readers,
)
from tokenfab.cost.profile import resolve_profile
from tokenfab.cost.result import OpCost
from tokenfab.execution.layers import StepBatch
from tokenfab.execution.step import StepModel
from tokenfab.hardware.spec import ChipSpec


class _NotRecordable(Exception):
    """A step contains an operator the recording cannot re-time (the caller falls back)."""


class _Peak(float):
    """A peak rate that remembers which of the chip's rates it is ('vector' for the vector unit)."""

    __slots__ = ("key",)


def _peak_key(peaks: dict[str, float], dtype: str) -> str:
    """Which rate `ChipCost.peak(dtype)` returns (same fallback order)."""
    if dtype in peaks:
        return dtype
    for alt in ("bf16", "fp16"):
        if alt in peaks:
            return alt
    return min(peaks, key=peaks.__getitem__)


class _Recorder(ChipCost):
    """A ChipCost that remembers the inputs of every kernel it times, by the OpCost it returns."""

    keeps_cost_identity = True  # keyed by id: the step model's memos must hand back these very objects

    def __init__(self, base: ChipCost):
        super().__init__(base.chip, base.resolved)
        self.kernels: dict[int, tuple] = {}
        vec = _Peak(self.vector_flop_per_s)
        vec.key = "vector"
        self.vector_flop_per_s = vec

    def peak(self, dtype: str) -> float:
        p = _Peak(super().peak(dtype))
        p.key = _peak_key(self._peaks, dtype)
        return p

    def run_kernel(self, op, flops, dram_bytes, peak, params, work_units, source, warm_cache=False,
                   onchip_bytes=0.0, shape=None, resident_bytes=0.0) -> OpCost:
        cost = super().run_kernel(op, flops, dram_bytes, peak, params, work_units, source, warm_cache, onchip_bytes, shape,
                                  resident_bytes)
        self.kernels[id(cost)] = (cost, flops, dram_bytes, getattr(peak, "key", None), params, work_units, shape)
        return cost


LAYER_STUB = "layer part listed by sweep.layer_rows"


class _RecordingStepModel(StepModel):
    """A StepModel that keeps the (operator, count) pairs of every part it sums. With `layer_rows` set (see
    `sweep.layer_rows`) a layer part is not costed: `step` sums a stub part (zero times, then LAYER_STUB, the
    token count and whether the step is graph-replayed), whose rows the plan takes from `layer_rows`."""

    def __init__(self, *args, **kwargs):
        self.part_pairs: dict[int, list] = {}
        self.layer_rows = None
        self._layer_stubs: dict[tuple, tuple] = {}
        self._prefill_cores: dict[tuple, tuple] = {}
        super().__init__(*args, **kwargs)
        # attention whose cores are one kernel per prefill group, then the decodes' (`LayerCoster.core_attention_ops`)
        self._split_cores = all(g.attention.kind not in ("mla", "linear") and not g.attention.index_topk_tokens
                                for g in self.model.layers)

    def _core_part(self, batch):
        """`StepModel._core_part` with each prefill group's kernels costed once per group shape (a sweep's steps
        repeat a few prompt shapes beside ever new decode counts); the same operators in the same order."""
        if not self._split_cores:
            return super()._core_part(batch)
        coster = self.coster if batch.prefill else self.graph_coster
        pairs = []
        for group, count in self._group_counts:
            for shape in batch.prefill:
                key = (coster is self.coster, id(group), shape)
                costs = self._prefill_cores.get(key)
                if costs is None:
                    costs = self._prefill_cores[key] = tuple(coster.core_attention_ops(group.attention,
                                                                                      StepBatch((shape,), 0, 0.0)))
                pairs += [(cost, count) for cost in costs]
            if batch.num_decode:
                decode = StepBatch((), batch.num_decode, batch.decode_kv_len)
                pairs += [(cost, count) for cost in coster.core_attention_ops(group.attention, decode)]
        return self._aggregate(pairs)

    def _layers_part(self, num_tokens: int, num_decode: int):
        if self.layer_rows is None:
            return super()._layers_part(num_tokens, num_decode)
        key = (num_tokens, num_tokens == num_decode)
        hit = self._layer_stubs.get(key)
        if hit is None:
            hit = self._layer_stubs[key] = (0.0, 0.0, 0.0, LAYER_STUB, *key)  # a new tuple per key: ids stay distinct
            self.part_pairs[id(hit)] = (hit, None)
        return hit

    def _aggregate(self, pairs):
        pairs = list(pairs)
        part = super()._aggregate(pairs)
        self.part_pairs[id(part)] = (part, pairs)  # holding the part keeps its id unique
        return part


class _Points:
    """Per-point chip figures as arrays (the floats ChipCost and PowerModel hold, per design)."""

    _COLUMNS = ("bw", "sram", "reuse", "sram_bw", "units", "link", "tdp", "idle", "cap", "power_peak")

    def __init__(self, chips: list[ChipSpec]):
        self.n = len(chips)
        self.peak_keys = sorted(set(chips[0].peak_flop_per_s) | {"vector"})
        self.peaks = np.empty((len(self.peak_keys), self.n))  # row per rate, as `_row` indexes them
        cols: dict[str, list[float]] = {k: [] for k in self._COLUMNS[:-1]}
        for i, chip in enumerate(chips):
            p = sustained_peaks(chip)
            p["vector"] = (chip.vector_flop_per_s.value * chip.compute_clock_frac if chip.vector_flop_per_s else 0.0) \
                or min(p.values())
            self.peaks[:, i] = [p[k] for k in self.peak_keys]
            onchip = onchip_memory(chip)
            cols["bw"].append(chip.memory_bandwidth_bytes_per_s)
            cols["sram"].append(onchip.capacity_bytes)
            cols["reuse"].append(onchip.reuse_capacity_bytes)
            cols["sram_bw"].append(onchip.bandwidth_bytes_per_s)
            cols["units"].append(resolve_profile(chip).compute_units)
            cols["link"].append(chip.scale_up.bandwidth_bytes_per_s.value if chip.scale_up else 0.0)
            cols["idle"].append(chip.power.idle_w.value)
            cols["tdp"].append(max(chip.power.tdp_w.value, chip.power.idle_w.value))
            cols["cap"].append(chip.device_memory_bytes)
        for k, v in cols.items():
            setattr(self, k, np.array(v, dtype=float))
        self.power_peak = self.peaks[self.peak_keys.index(_peak_key({k: 1.0 for k in chips[0].peak_flop_per_s}, "bf16"))]
        self.peaks_t = np.ascontiguousarray(self.peaks.T)  # a point per row, as `_Block` lays them out
        self.chips = chips

    def subset(self, idx) -> _Points:
        """The figures of the points `idx` only."""
        sub = object.__new__(_Points)
        sub.n, sub.chips, sub.peak_keys = len(idx), [self.chips[i] for i in idx], self.peak_keys
        sub.peaks, sub.peaks_t = self.peaks[:, idx], self.peaks_t[idx]
        for k in self._COLUMNS:
            setattr(sub, k, getattr(self, k)[idx])
        return sub


# kinds of kernel rows, and the columns of a row
PLAIN, GEMM, PREFILL_KV, DECODE_KV, ALL_REDUCE, ALL_GATHER = range(6)
_FIELDS = ("kind", "flops", "dram", "peak", "compute_eff", "memory_eff", "overlap_exp", "half_occ", "launch_s", "work",
           "m", "n", "k", "a", "w", "out", "w_on_chip", "fixed", "per_pass", "head_bytes", "readers", "cache", "cached",
           "bytes", "message")
_COL = {name: j for j, name in enumerate(_FIELDS)}
_COLLECTIVE_OPS = {"tp_allreduce": "all_reduce", "lm_head_gather": "all_gather"}


class Kernels:
    """Every kernel one TP degree's recording step model has timed, as rows of chip-independent figures."""

    def __init__(self, sm: _RecordingStepModel, rec: _Recorder, peak_keys: list[str]):
        self.sm, self.rec, self.peak_keys = sm, rec, peak_keys
        self.rows: dict[int, tuple] = {}  # id(OpCost) -> row

    def row(self, cost: OpCost, cached_tokens: float) -> tuple:
        """The row of one operator (`cached_tokens`: the KV tokens of the step it first appears in, which decide
        whether decode attention's cache stays on chip, as `_step` of the 1D path decided it)."""
        hit = self.rows.get(id(cost))
        if hit is None:
            hit = self.rows[id(cost)] = self._row(cost, cached_tokens)
        return hit

    def _row(self, cost: OpCost, cached_tokens: float) -> tuple:
        r = [0.0] * len(_FIELDS)
        record = self.rec.kernels.get(id(cost))
        if record is None:
            name = collective_name(_COLLECTIVE_OPS.get(cost.op, "")) if cost.bound == "network" else ""
            tp = self.sm.par.tp
            if not name or tp > self.sm.system.chips_per_node or name not in ("all_reduce", "all_gather"):
                raise _NotRecordable(cost.op)
            r[0] = ALL_REDUCE if name == "all_reduce" else ALL_GATHER
            r[_COL["bytes"]], r[_COL["message"]] = cost.bytes, cost.bytes / bus_factor(name, tp)
            return tuple(r)
        _, flops, dram, peak_key, p, work, shape = record
        r[1:10] = (flops, dram, self.peak_keys.index(peak_key), p.compute_eff, p.memory_eff, p.overlap_exp,
                   p.half_occupancy_per_unit, p.launch_s, work)
        if isinstance(shape, GemmShape):
            r[0] = GEMM
            r[10:17] = (shape.m, shape.n, shape.k, shape.a_bytes, shape.w_bytes, shape.out_bytes,
                        float(shape.weights_on_chip))
        elif isinstance(shape, PrefillKvShape):
            r[0] = PREFILL_KV
            r[17:21] = (shape.fixed_bytes, shape.kv_bytes_per_pass, shape.kv_head_bytes, prefill_kv_readers(shape))
        elif isinstance(shape, DecodeKvShape):  # recorded with the KV held on chip: `dram` excludes the cache
            r[0] = DECODE_KV
            r[21:23] = (shape.cache_bytes, cached_tokens)
        return tuple(r)


class KernelRows:
    """The chip-independent side of a block of kernel rows, prepared once (a plan re-times them many times):
    each column as a (1, K) row, the rows of each kind and their columns."""

    def __init__(self, table: np.ndarray):
        self.num_rows = len(table)
        self.col = {f: np.ascontiguousarray(table[:, j])[None, :] for f, j in _COL.items()}
        kind = table[:, _COL["kind"]]
        self.peak = table[:, _COL["peak"]].astype(int)
        self.gemm = self._kind(kind == GEMM)
        self.prefill_kv = self._kind(kind == PREFILL_KV)
        self.decode_kv = self._kind(kind == DECODE_KV)
        net = np.flatnonzero(kind >= ALL_REDUCE)
        self.net = (net, kind[net], self.col["message"][:, net], self.col["bytes"][:, net]) if len(net) else None
        self.dram = self.col["dram"]

    def _kind(self, mask: np.ndarray):
        idx = np.flatnonzero(mask)
        return (idx, _Cols(self.col, idx)) if len(idx) else None


class _Block:
    """A block of kernel rows (K) re-timed against a block of points (S): (S, K) time and power arrays (a point
    per row, so that every reduction over kernels runs along one point's contiguous row and gives that point
    the same bits whatever other points share the block)."""

    def __init__(self, rows: KernelRows, pts: _Points, residency: tuple, kernels: Kernels):
        col = rows.col
        weights_fit, kv_budget, kvpt = residency
        wf, kb = weights_fit[:, None], kv_budget[:, None]
        reuse, bw, sram_bw = pts.reuse[:, None], pts.bw[:, None], pts.sram_bw[:, None]
        shape = (pts.n, rows.num_rows)
        dram, onchip = np.broadcast_to(rows.dram, shape).copy(), np.zeros(shape)
        if rows.gemm is not None:
            g, gemm = rows.gemm
            dram[:, g], onchip[:, g] = gemm_traffic_array(gemm, reuse, wf & (gemm.weights_on_chip > 0))
        if rows.prefill_kv is not None:
            p, c = rows.prefill_kv
            dram[:, p] = c.fixed + kv_passes_array(c.readers, c.head_bytes, reuse, pts.units[:, None]) * c.per_pass
        if rows.decode_kv is not None:
            d, c = rows.decode_kv
            held = wf & (kvpt > 0) & (c.cached * kvpt <= kb)
            dram[:, d], onchip[:, d] = np.where(held, c.dram, c.dram + c.cache), np.where(held, c.cache, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = _kernel_time(col, dram, onchip, pts.peaks_t[:, rows.peak], bw, sram_bw, pts.units[:, None])
            activity = np.maximum(col["flops"] / (pts.power_peak[:, None] * t), dram / (bw * t))
            activity = np.where(onchip > 0, np.maximum(activity, (dram + onchip) / (sram_bw * t)), activity)
            if rows.net is not None:
                net, kind, message, nb = rows.net
                tn = t[:, net] = _collective_times(kind, message, pts.link[:, None], kernels)
                activity[:, net] = np.where(nb > 0, nb / (bw * tn), 0.0)
        idle = pts.idle[:, None]
        self.time = t
        self.power = np.where(t > 0, idle + (pts.tdp[:, None] - idle) * np.minimum(1.0, activity), idle)


class _Cols:
    """The columns of some rows of a block, by the names `GemmShape` and the kernel formulas read."""

    def __init__(self, col: dict, idx: np.ndarray):
        for name, values in col.items():
            setattr(self, name, values[:, idx])
        self.a_bytes, self.w_bytes, self.out_bytes, self.weights_on_chip = self.a, self.w, self.out, self.w_on_chip


def _kernel_time(col: dict, dram, onchip, peak, bw, sram_bw, units) -> np.ndarray:
    """`cost.kernel.kernel_time_s` (cold, forward pass) for rows of points against columns of kernels."""
    t_c = col["flops"] / peak
    t_m = dram / bw
    t_m = np.where(onchip > 0, np.maximum(t_m, (dram + onchip) / sram_bw), t_m)
    half_occ = col["half_occ"]
    u = np.where(half_occ > 0, col["work"] / (col["work"] + half_occ * units), 1.0)
    a = np.where(t_c > 0, t_c / (col["compute_eff"] * u), 0.0)
    b = t_m / col["memory_eff"]
    hi = np.maximum(a, b)
    safe = np.where(hi > 0, hi, 1.0)
    x = col["overlap_exp"]
    blended = safe * ((a / safe) ** x + (b / safe) ** x) ** (1.0 / x)
    return col["launch_s"] + np.where(hi > 0, blended, 0.0)


def _collective_times(kind: np.ndarray, message: np.ndarray, link: np.ndarray, kernels: Kernels) -> np.ndarray:
    """`LayerCoster.collective` (ring/tree, one-shot when fitted) within one scale-up domain, points x rows."""
    out = np.empty((link.shape[0], len(kind)))
    n, resolved = kernels.sm.par.tp, kernels.rec.resolved
    for code, name in ((ALL_REDUCE, "all_reduce"), (ALL_GATHER, "all_gather")):
        rows = kind == code
        if not rows.any():
            continue
        t = _flat_time(name, n, message[:, rows], link, resolved.collective(name, n)[0])
        if name == "all_reduce" and "all_reduce_oneshot" in resolved.profile.collectives:
            t = np.minimum(t, _flat_time(name, n, message[:, rows], link, resolved.collective("all_reduce_oneshot", n)[0]))
        out[:, rows] = t
    return out


def _flat_time(name: str, n: int, message, link: np.ndarray, p) -> np.ndarray:
    """`cost.collectives.flat_time_s` over arrays of messages and link bandwidths."""
    def protocols(bus):
        return np.minimum(p.small_latency_s + bus / (link * p.small_bus_eff), p.latency_s + bus / (link * p.bus_eff))

    ring = p.per_step_latency_s * steps(name, n) + protocols(bus_factor(name, n) * message)
    if name == "all_reduce" and n > 2:
        tree = p.per_step_latency_s * tree_steps(n) + protocols(TREE_BUS_FACTOR * message)
        ring = np.where(tree < ring, tree, ring)
    return ring
