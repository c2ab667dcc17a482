"""Chip and system specifications: plain, validated, immutable data.

A chip is one YAML file (see `hardware/chips/`). Every number in it is a `Sourced`
value: the number in SI units, where it comes from, and what kind of figure it is
(a vendor's dense peak, a measurement, a derived value, a documented assumption).
Behaviour (costs, efficiencies) lives elsewhere; these classes only describe.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tokenfab.errors import InvalidInputError
from tokenfab.units import DTYPES

Basis = Literal[
    "vendor-peak-dense",  # vendor datasheet peak, dense (no 2:4 sparsity)
    "vendor-spec",  # vendor datasheet value that is not a peak rate (capacity, TDP, ...)
    "derived",  # computed from other sourced values (the note says how)
    "press",  # press or analyst report, not the vendor
    "measured",  # measured on real hardware
    "assumption",  # a documented modelling assumption (the note says why)
    "template",  # a parameter of a user-editable template chip
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g} {prefix}{unit}"
    return f"{value:g} {unit}"


def plausible(value: Sourced | None, low: float, high: float, unit: str) -> Sourced | None:
    """Refuse a figure off by orders of magnitude (3.35 written for 3.35 TB/s): specs are SI, and a
    value outside [low, high] is almost surely a unit slip, not a chip. The bounds span every chip
    from a phone NPU to a wafer-scale engine with room to spare."""
    if value is not None and not low <= value.value <= high:
        raise ValueError(f"{value.value:g} {unit} is outside the plausible range {_si(low, unit)} .. {_si(high, unit)} "
                         f"(values are SI: {unit}, not G{unit} or T{unit})")
    return value


# Plausibility bounds, one place: (low, high, unit).
FLOP_RATE_BOUNDS = (1e9, 1e18, "FLOP/s")
MEMORY_BANDWIDTH_BOUNDS = (1e9, 1e15, "B/s")
MEMORY_CAPACITY_BOUNDS = (1e6, 1e14, "B")
LINK_BANDWIDTH_BOUNDS = (1e6, 1e14, "B/s")
LINK_LATENCY_BOUNDS = (0.0, 1e-2, "s")
POWER_BOUNDS = (0.1, 1e5, "W")
SRAM_BOUNDS = (0.0, 1e12, "B")
COMPUTE_UNIT_BOUNDS = (1.0, 1e7, "units")
CLOCK_BOUNDS = (1e8, 1e10, "Hz")
KERNEL_TABLES = ("gemm", "attention_prefill", "attention_decode")  # profile tables kernels_not_inherited may name


class Sourced(_Frozen):
    """One number with its provenance."""

    value: float = Field(ge=0, description="The value in SI units (bytes, FLOP/s, W, s, ...).")
    source: str = Field(min_length=1, description="URL or citation the value comes from.")
    basis: Basis = Field(description="What kind of figure this is.")
    note: str = Field(default="", description="Caveats, conversions, conflicts between sources.")


class MemorySpec(_Frozen):
    """Off-chip memory (HBM, GDDR, LPDDR, DDR) of one chip."""

    kind: str = Field(description="Memory technology, e.g. 'HBM3', 'GDDR6', 'none'.")
    capacity_bytes: Sourced = Field(description="Capacity in bytes (decimal GB x 1e9).")
    device_reported_bytes: Sourced | None = Field(
        default=None, description="Total memory the device reports to software (nvidia-smi memory.total, "
                                  "torch total_memory): what engines size their KV cache from. An '80 GB' H100 reports "
                                  "81,559 MiB = 85.5e9 bytes.")
    cuda_total_bytes: Sourced | None = Field(
        default=None, description="Total memory as CUDA reports it (cudaMemGetInfo / torch.cuda.mem_get_info, "
                                  "torch's 'total capacity'): below nvidia-smi's memory.total by what the driver keeps. "
                                  "vLLM multiplies this total by gpu_memory_utilization; SGLang measures free memory "
                                  "against it. Absent: the device-reported total stands in.")
    bandwidth_bytes_per_s: Sourced = Field(description="Peak bandwidth in bytes per second.")

    @field_validator("capacity_bytes")
    @classmethod
    def _capacity(cls, v: Sourced) -> Sourced:
        return plausible(v, *MEMORY_CAPACITY_BOUNDS)

    @field_validator("bandwidth_bytes_per_s")
    @classmethod
    def _bandwidth(cls, v: Sourced) -> Sourced:
        return plausible(v, *MEMORY_BANDWIDTH_BOUNDS)

    @model_validator(mode="after")
    def _cuda_total_below_reported(self) -> MemorySpec:
        reported = self.device_reported_bytes or self.capacity_bytes
        if self.cuda_total_bytes is not None and not 0.9 * reported.value <= self.cuda_total_bytes.value <= reported.value:
            raise ValueError(f"cuda_total_bytes {self.cuda_total_bytes.value:.4g} must lie within 10% below the "
                             f"device-reported {reported.value:.4g} bytes (the driver keeps a little, never more)")
        return self


class LinkSpec(_Frozen):
    """A chip's port into a fabric (scale-up or scale-out)."""

    name: str = Field(description="Technology, e.g. 'NVLink 4', 'PCIe Gen4 x16', 'ICI', 'HCCS'.")
    bandwidth_bytes_per_s: Sourced = Field(
        description="Per-chip bandwidth in ONE direction, bytes/s (NVLink 4: 450 GB/s of the 900 bidirectional)."
    )
    topology: Literal["switch", "full-mesh", "ring", "torus-2d", "torus-3d", "pcie", "ethernet"] = Field(
        description="How chips in one domain are connected; decides the collective algorithms."
    )
    domain_size: int = Field(ge=1, description="Chips that share this fabric at full bandwidth (8 for HGX).")
    latency_s: Sourced | None = Field(default=None, description="One-hop latency of a small message, seconds.")
    in_network_reduction: bool = Field(
        default=False, description="Switch-side reduction (NVLink SHARP / NVLS) available for all-reduce."
    )

    @field_validator("bandwidth_bytes_per_s")
    @classmethod
    def _bandwidth(cls, v: Sourced) -> Sourced:
        return plausible(v, *LINK_BANDWIDTH_BOUNDS)

    @field_validator("latency_s")
    @classmethod
    def _latency(cls, v: Sourced | None) -> Sourced | None:
        return plausible(v, *LINK_LATENCY_BOUNDS)


class PowerSpec(_Frozen):
    """Board power envelope used by the energy model."""

    tdp_w: Sourced = Field(description="Maximum board/module power, watts.")
    idle_w: Sourced = Field(description="Power when powered on and idle, watts.")

    @field_validator("tdp_w", "idle_w")
    @classmethod
    def _watts(cls, v: Sourced) -> Sourced:
        return plausible(v, *POWER_BOUNDS)

    @model_validator(mode="after")
    def _idle_below_tdp(self) -> PowerSpec:
        if self.idle_w.value > self.tdp_w.value:
            raise ValueError(f"idle_w {self.idle_w.value:g} W exceeds tdp_w {self.tdp_w.value:g} W")
        return self


class ChipSpec(_Frozen):
    """One accelerator (or a CPU used as one)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$", description="Stable kebab-case catalog name.")
    display_name: str
    vendor: str
    kind: Literal["gpu", "npu", "tpu", "cpu", "template"] = "gpu"
    arch_family: str = Field(description="Micro-architecture family, e.g. 'nvidia-hopper', 'huawei-davinci'.")
    year: int | None = Field(default=None, ge=1990, le=2100)
    process_node: str = ""
    foundry: str = ""
    die_area_mm2: Sourced | None = None
    num_dies: int = Field(default=1, ge=1)
    transistors: Sourced | None = Field(default=None, description="Transistor count (not billions).")
    num_compute_units: Sourced | None = Field(
        default=None, description="SMs / CUs / AI cores / TensorCores: sets how much parallel work saturates the chip."
    )
    clock_hz: Sourced | None = Field(
        default=None,
        description="Boost clock of the compute units, Hz. A chain of small, latency-bound kernels (a fused MoE layer's "
        "routing, permute, grouped GEMMs and finalize at a few tokens) takes a number of cycles, so a chip that never "
        "ran it gets the pooled fixed cost in cycles of this clock (`cost.profile.ResolvedProfile.moe`). Absent: the "
        "chip's dense-GEMM fixed cost stands in for it.",
    )
    sustained_clock_hz: Sourced | None = Field(
        default=None,
        description="Clock the compute units hold under a sustained full tensor-core load, Hz, where the board's power "
        "limit keeps it below clock_hz (a 300 W A100 PCIe card against the 400 W SXM module of the same die and boost "
        "clock). The vendor peaks are rates at clock_hz; every matrix and vector rate the cost model uses is scaled by "
        "sustained_clock_hz / clock_hz (`ChipSpec.compute_clock_frac`), so compute-bound kernels slow and memory-bound "
        "ones do not. Needs clock_hz. Absent: the peaks as stated (the chip sustains its boost clock, or its "
        "fitted efficiencies already hold what it sustains).",
    )
    peak_flop_per_s: dict[str, Sourced] = Field(
        description="Dense peak matrix throughput per data type (FLOP/s or OP/s for integers)."
    )
    vector_flop_per_s: Sourced | None = Field(
        default=None, description="Non-matrix (vector) fp32 peak, for elementwise work and softmax."
    )
    onchip_sram_bytes: Sourced | None = Field(default=None, description="Last-level on-chip cache/SRAM, bytes.")
    num_onchip_sram_partitions: Sourced | None = Field(
        default=None,
        description="Partitions the on-chip cache is split into, each caching its own copy of what the compute units "
        "attached to it read (A100: two; 'Each L2 partition localizes and caches data for memory accesses from SMs in "
        "the GPCs directly connected to the partition', A100 whitepaper). Data every compute unit reads (a warm "
        "microbenchmark's expert weights) then takes this many copies, so it stays on chip only up to "
        "onchip_sram_bytes / partitions. Absent: 1, one unified cache.",
    )
    onchip_sram_bandwidth_bytes_per_s: Sourced | None = Field(
        default=None,
        description="Bandwidth of that on-chip memory to the compute units, bytes/s; when absent the cost model "
        "assumes it equals the DRAM bandwidth (see tokenfab.cost.onchip).",
    )
    memory: MemorySpec
    scale_up: LinkSpec | None = Field(default=None, description="Intra-node / scale-up domain link.")
    scale_out: LinkSpec | None = Field(default=None, description="Inter-node NIC bandwidth attributable to one chip.")
    power: PowerSpec
    price_usd: Sourced | None = None
    efficiency_reference: str | None = Field(
        default=None,
        description="Catalog name of the measured chip whose fitted efficiency curves this chip inherits.",
    )
    efficiency_reference_reason: str = Field(default="", description="Why that chip is the nearest measured one.")
    kernels_not_inherited: dict[str, str] = Field(
        default_factory=dict,
        description="Kernel classes, as 'table.kind' of an efficiency profile ('gemm.fp4', 'attention_decode.fp8'), "
        "that this chip runs with a kernel family other chips' fits do not describe (mapped to why, with a source): "
        "neither the efficiency_reference's nor the generic fit answers them; they resolve as a kind nobody measured, "
        "the nearest 16-bit curve (`cost.profile.ResolvedProfile`). Empty: every class may be inherited.",
    )
    efficiency_profile: dict[str, Any] | None = Field(
        default=None,
        description="A calibrated efficiency profile embedded by `tokenfab calibrate` (takes precedence over the catalog's).",
    )
    notes: str = ""

    def __hash__(self) -> int:  # chips key caches; equality stays field-wise
        return hash((self.name, self.display_name, self.memory.bandwidth_bytes_per_s.value))

    @field_validator("peak_flop_per_s")
    @classmethod
    def _known_dtypes(cls, peaks: dict[str, Sourced]) -> dict[str, Sourced]:
        unknown = sorted(set(peaks) - set(DTYPES))
        if unknown:
            raise ValueError(f"unknown data type(s) {unknown} in peak_flop_per_s (valid: {', '.join(DTYPES)})")
        if not peaks:
            raise ValueError("peak_flop_per_s needs at least one data type")
        for dtype, peak in peaks.items():
            try:
                plausible(peak, *FLOP_RATE_BOUNDS)
            except ValueError as exc:
                raise ValueError(f"{dtype}: {exc}") from None
        return peaks

    @field_validator("vector_flop_per_s")
    @classmethod
    def _vector_rate(cls, v: Sourced | None) -> Sourced | None:
        return plausible(v, 1e8, FLOP_RATE_BOUNDS[1], "FLOP/s")

    @field_validator("onchip_sram_bytes")
    @classmethod
    def _sram(cls, v: Sourced | None) -> Sourced | None:
        return plausible(v, *SRAM_BOUNDS)

    @field_validator("num_onchip_sram_partitions")
    @classmethod
    def _partitions(cls, v: Sourced | None) -> Sourced | None:
        if v is not None and (v.value < 1 or v.value != int(v.value)):
            raise ValueError(f"num_onchip_sram_partitions must be a whole number >= 1, got {v.value}")
        return v

    @field_validator("num_compute_units")
    @classmethod
    def _units(cls, v: Sourced | None) -> Sourced | None:
        return plausible(v, *COMPUTE_UNIT_BOUNDS)

    @field_validator("clock_hz", "sustained_clock_hz")
    @classmethod
    def _clock(cls, v: Sourced | None) -> Sourced | None:
        return plausible(v, *CLOCK_BOUNDS)

    @model_validator(mode="after")
    def _sustained_below_boost(self) -> ChipSpec:
        if self.sustained_clock_hz is None:
            return self
        if self.clock_hz is None:
            raise ValueError("sustained_clock_hz needs clock_hz (the clock the peaks are stated at)")
        if self.sustained_clock_hz.value > self.clock_hz.value:
            raise ValueError(f"sustained_clock_hz {self.sustained_clock_hz.value:.4g} Hz exceeds clock_hz "
                             f"{self.clock_hz.value:.4g} Hz")
        return self

    @model_validator(mode="after")
    def _reference_reason(self) -> ChipSpec:
        if self.efficiency_reference and not self.efficiency_reference_reason:
            raise ValueError("efficiency_reference needs efficiency_reference_reason")
        for key, why in self.kernels_not_inherited.items():
            table, _, kind = key.partition(".")
            if table not in KERNEL_TABLES or not kind:
                raise ValueError(f"kernels_not_inherited key {key!r} is not 'table.kind' with table one of "
                                 f"{', '.join(KERNEL_TABLES)}")
            if not why.strip():
                raise ValueError(f"kernels_not_inherited {key!r} needs a reason")
        return self

    # Convenience accessors (plain floats, SI) used by the cost layer.
    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for `dtype`; KeyError if the chip has no such rate."""
        return self.peak_flop_per_s[dtype].value

    def supports(self, dtype: str) -> bool:
        return dtype in self.peak_flop_per_s

    def check_compute_dtype(self, dtype: str) -> None:
        """Refuse to compute in a format this chip has no rate for (fp32 on a chip with only tf32/bf16
        tensor rates, fp8 on A100, fp4 on H100): timing it at another format's rate would be a silent lie.
        Weight-only quantisation stays possible: keep a 16-bit compute format and set the weight format."""
        if dtype in self.peak_flop_per_s:
            return
        supported = ", ".join(sorted(self.peak_flop_per_s))
        sixteen = [d for d in ("bf16", "fp16") if d in self.peak_flop_per_s]
        hint = (f"; for weight-only quantisation use --dtype {sixteen[0]} --weight-dtype {dtype}"
                if sixteen and dtype in ("fp8", "int8", "int4", "fp4") else "")
        raise InvalidInputError(f"{self.name} has no {dtype} rate (compute formats: {supported}){hint}")

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        return self.memory.bandwidth_bytes_per_s.value

    @property
    def memory_capacity_bytes(self) -> float:
        return self.memory.capacity_bytes.value

    @property
    def device_memory_bytes(self) -> float:
        """Memory as the device reports it to software (falls back to the marketed capacity)."""
        reported = self.memory.device_reported_bytes
        return reported.value if reported is not None else self.memory.capacity_bytes.value

    @property
    def cuda_total_memory_bytes(self) -> float:
        """Memory as CUDA reports its total (what torch-based engines size against); falls back to
        `device_memory_bytes` for a chip without a published CUDA figure."""
        total = self.memory.cuda_total_bytes
        return total.value if total is not None else self.device_memory_bytes

    @property
    def sram_bytes(self) -> float:
        return self.onchip_sram_bytes.value if self.onchip_sram_bytes else 0.0

    @property
    def clock(self) -> float | None:
        """Boost clock in Hz (`clock_hz`), or None where the catalog does not state it."""
        return self.clock_hz.value if self.clock_hz else None

    @property
    def compute_clock_frac(self) -> float:
        """sustained_clock_hz / clock_hz: the share of its stated matrix and vector peaks the chip sustains (1.0 where
        the catalog states no sustained clock)."""
        if self.sustained_clock_hz is None or self.clock_hz is None:
            return 1.0
        return self.sustained_clock_hz.value / self.clock_hz.value

    @property
    def sram_partitions(self) -> int:
        """Copies of widely shared data the on-chip cache holds (`num_onchip_sram_partitions`, default 1)."""
        return int(self.num_onchip_sram_partitions.value) if self.num_onchip_sram_partitions else 1


class NodePowerSpec(_Frozen):
    """What one node draws beyond its accelerators (host, NICs, switches, fans) and its power-supply losses."""

    host_busy_w: Sourced = Field(description="Host CPUs, memory, NICs and switches under serving load, watts per node.")
    host_idle_w: Sourced = Field(description="The same, idle, watts per node.")
    cooling_frac: Sourced = Field(description="Fans as a share of the node's electrical load (0..1).")
    psu_efficiency_frac: Sourced = Field(description="Power-supply efficiency: wall power = load / efficiency (0..1].")

    @model_validator(mode="after")
    def _fractions(self) -> NodePowerSpec:
        if not 0.0 < self.psu_efficiency_frac.value <= 1.0 or not 0.0 <= self.cooling_frac.value < 1.0:
            raise ValueError("psu_efficiency_frac must lie in (0, 1] and cooling_frac in [0, 1)")
        return self

    def wall_factor(self) -> float:
        """Wall watts per watt of electrical load inside the node (fans, then PSU losses)."""
        return (1.0 + self.cooling_frac.value) / self.psu_efficiency_frac.value


class SystemSpec(_Frozen):
    """Several chips: `chips_per_node` joined by the scale-up link, `num_nodes` joined by scale-out."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    display_name: str = ""
    chip: ChipSpec
    chips_per_node: int = Field(ge=1)
    num_nodes: int = Field(default=1, ge=1)
    intra_node: LinkSpec | None = Field(default=None, description="Overrides the chip's scale-up link.")
    inter_node: LinkSpec | None = Field(default=None, description="Overrides the chip's scale-out link.")
    node_power: NodePowerSpec | None = Field(default=None, description="Beyond-accelerator power of each node (None: accelerators only).")
    notes: str = ""

    @property
    def num_devices(self) -> int:
        return self.chips_per_node * self.num_nodes

    @property
    def scale_up_link(self) -> LinkSpec | None:
        return self.intra_node or self.chip.scale_up

    @property
    def scale_out_link(self) -> LinkSpec | None:
        return self.inter_node or self.chip.scale_out
