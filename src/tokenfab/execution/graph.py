"""A non-LLM graph (ResNet, BERT, any ONNX model) on one chip: latency and throughput of a batch.

One batch runs the graph's operators back to back on one device (inference engines run a CNN or
an encoder on a single device per replica); `dp` replicas run independent batches. Each operator
is costed by the cost layer (implicit-GEMM conv, GEMM, batched GEMM, memory-bound kernels).

On-chip residency: when the weights plus the largest transient activation set fit in the chip's
on-chip SRAM, they stay there across batches, and every kernel's traffic is costed with the
chip's fitted on-chip cache model instead of DRAM (Hanguang 800 has no DRAM at all: its
'memory' is the 192 MB SRAM, so a model that does not fit there does not run).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tokenfab.cost.chip_cost import chip_cost
from tokenfab.cost.conv import estimate_batched_gemm, estimate_conv, estimate_gemm_resident
from tokenfab.cost.elementwise import estimate_elementwise
from tokenfab.cost.result import OpCost
from tokenfab.errors import InvalidInputError
from tokenfab.execution.power import PowerModel
from tokenfab.hardware.spec import ChipSpec
from tokenfab.units import bytes_per_element
from tokenfab.workload.onnx_graph import GraphOp, GraphSpec

GRAPH_DTYPES = ("int8", "fp8", "fp16", "bf16", "fp32")


@dataclass
class GraphPredictResult:
    """Latency and throughput of a batch through a graph (the `predict` JSON for ONNX models)."""

    model: str
    hardware: str
    dtype: str
    batch: int
    dp: int
    latency_s: float
    energy_j: float
    weights_bytes: float
    activations_bytes: float
    capacity_bytes: float
    onchip_sram_bytes: float
    resident_on_chip: bool
    num_params: int
    efficiency_source: str
    costed_as_elementwise: tuple[str, ...] = ()
    breakdown: list[dict] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.weights_bytes + self.activations_bytes <= self.capacity_bytes

    def to_dict(self) -> dict:
        samples = self.batch * self.dp
        return {
            "model": self.model, "hardware": self.hardware, "devices": self.dp, "dp": self.dp, "dtype": self.dtype,
            "batch": self.batch, "latency_s": self.latency_s,
            "throughput_samples_per_s": samples / self.latency_s if self.latency_s > 0 else 0.0,
            "energy_j_per_sample": self.energy_j / self.batch if self.batch else 0.0,
            "energy_j": self.energy_j * self.dp, "fits": self.fits, "num_params": self.num_params,
            "memory_bytes": {"weights": self.weights_bytes, "activations": self.activations_bytes,
                             "total_per_device": self.weights_bytes + self.activations_bytes,
                             "capacity_per_device": self.capacity_bytes, "onchip_sram": self.onchip_sram_bytes},
            "resident_on_chip": self.resident_on_chip,
            "efficiency_source": self.efficiency_source,
            "costed_as_elementwise": list(self.costed_as_elementwise),
            "breakdown": self.breakdown,
        }


def _op_cost(cc, op: GraphOp, dtype: str, resident: bool) -> OpCost:
    a = bytes_per_element(dtype)
    if op.kind == "conv":
        return estimate_conv(cc, op.m, op.n, op.k, op.groups, op.io_elements, op.weight_elements, dtype,
                             resident=resident, op=op.op_type)
    if op.kind == "gemm":
        return estimate_gemm_resident(cc, op.m, op.n, op.k, dtype, resident=resident, op=op.op_type)
    if op.kind == "batched_gemm":  # attention scores and context run in 16 bits even in INT8 engines
        act = dtype if dtype in ("fp16", "bf16", "fp32") else "fp16"
        return estimate_batched_gemm(cc, op.groups, op.m, op.n, op.k, act, resident=resident, op="attention")
    return estimate_elementwise(cc, op.op_type, op.io_elements * a, warm_cache=resident)


def estimate_graph(graph: GraphSpec, chip: ChipSpec, dtype: str = "int8", dp: int = 1,
                   profile_path: str | None = None) -> GraphPredictResult:
    """Latency of one batch of `graph.batch` samples on one device of `chip`, and `dp` replicas' throughput."""
    if dtype not in GRAPH_DTYPES:
        raise InvalidInputError(f"ONNX graphs run in {', '.join(GRAPH_DTYPES)}; got --dtype {dtype}")
    if not chip.supports(dtype) and not any(chip.supports(d) for d in ("fp16", "bf16")):
        raise InvalidInputError(f"{chip.name} has no {dtype} rate (supports: {', '.join(sorted(chip.peak_flop_per_s))})")
    cc = chip_cost(chip, profile_path)
    a = bytes_per_element(dtype)
    weights = graph.weight_elements * a
    activations = graph.peak_activation_elements * a
    resident = chip.sram_bytes > 0 and weights + activations <= chip.sram_bytes
    power = PowerModel(chip, cc)
    rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    bounds: dict[str, dict[str, float]] = defaultdict(dict)
    time_s = energy = 0.0
    for op in graph.ops:
        cost = _op_cost(cc, op, dtype, resident)
        time_s += cost.time_s
        energy += power.op_power_w(cost) * cost.time_s
        row = rows[cost.op]
        row[0] += cost.time_s
        row[1] += cost.flops
        row[2] += cost.bytes
        row[3] += 1
        bounds[cost.op][cost.bound] = bounds[cost.op].get(cost.bound, 0.0) + cost.time_s
    breakdown = [{"op": name, "time_s": r[0], "flops": r[1], "bytes": r[2], "count": int(r[3]),
                  "bound": max(bounds[name], key=bounds[name].__getitem__)}
                 for name, r in sorted(rows.items(), key=lambda kv: -kv[1][0])]
    return GraphPredictResult(
        model=graph.name, hardware=chip.name, dtype=dtype, batch=graph.batch, dp=dp, latency_s=time_s, energy_j=energy,
        weights_bytes=weights, activations_bytes=activations, capacity_bytes=chip.memory_capacity_bytes,
        onchip_sram_bytes=chip.sram_bytes, resident_on_chip=resident, num_params=graph.weight_elements,
        efficiency_source=cc.resolved.provenance, costed_as_elementwise=graph.costed_as_elementwise, breakdown=breakdown,
    )
