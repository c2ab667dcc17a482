"""Fitted efficiency profiles, and which one a chip uses.

A profile holds the fitted `KernelParams` of each kernel class (GEMM per data-type
kind, prefill and decode attention, elementwise) and the fitted parameters of each
collective, for one measured chip. Profiles are data (`hardware/profiles/*.yaml`),
written by `tokenfab.calibrate` from measurements, never edited by hand.

A chip uses, in this order: its own profile (provenance 'fitted'); the profile of the
measured chip its spec names as `efficiency_reference` ('inherited', e.g. H20 from
H100: same silicon family); or the 'generic' profile, fitted on all measured chips
together ('generic'). The order holds per kernel class: a chip measured only for some
classes (H20: FP8 block GEMMs and attention, no bf16 GEMM) takes each missing class from
its reference before the generic fit, and every cost result names the layer its curve
came from, so users know how far to trust it. Efficiencies are fractions of the chip's
OWN peaks, so an inherited profile is automatically scaled by the chip's FLOP/s and
bandwidths.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tokenfab.errors import DataFileError
from tokenfab.hardware.catalog import read_yaml
from tokenfab.hardware.spec import ChipSpec
from tokenfab.cost.kernel import KernelParams

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hardware" / "profiles"
GENERIC = "generic"
KILO_CYCLES = 1e3  # pooled MoE fixed costs are counted in thousands of cycles (`ResolvedProfile.moe_cycle_s`)

Provenance = Literal["fitted", "inherited", "generic"]


@dataclass(frozen=True, slots=True)
class CollectiveParams:
    """Fitted two-protocol alpha-beta model of one collective on one fabric and group size.

    Libraries switch between a low-latency protocol for small messages and a bandwidth
    protocol for large ones (NCCL's LL/LL128 vs Simple) and pick the faster, so

        t = per_step_latency_s * steps + min(small_latency_s + bus_bytes / (link_bw * small_bus_eff),
                                             latency_s + bus_bytes / (link_bw * bus_eff))

    with `steps` from the ring algorithm and `bus_bytes` NCCL's bus-bandwidth normalisation
    (all-reduce: 2(n-1)/n x size).
    """

    small_latency_s: float
    small_bus_eff: float
    latency_s: float
    bus_eff: float
    per_step_latency_s: float


@dataclass(frozen=True)
class EfficiencyProfile:
    """Fitted parameters of one chip (or the pooled 'generic' fit)."""

    name: str
    provenance_note: str
    compute_units: float
    peak_bf16_flop_per_s: float
    gemm: dict[str, KernelParams]
    attention_prefill: dict[str, KernelParams]
    attention_decode: dict[str, KernelParams]
    elementwise: KernelParams | None  # None: not measured and no GEMM to derive it from
    collectives: dict[str, dict[int, CollectiveParams]] = field(default_factory=dict)  # name -> group size -> fit
    fit_quality: dict[str, dict[str, float]] = field(default_factory=dict)
    moe: dict[str, KernelParams] = field(default_factory=dict)  # fused MoE layer kernel per format kind
    # Pooled (generic) MoE fits only: each kind's fixed cost in thousands of cycles of a chip's clock (`ChipSpec.clock_hz`),
    # so a chip without MoE rows gets the kernel chain's cycles at its own clock (`ResolvedProfile.moe`) ...
    moe_launch_kilocycles: dict[str, float] = field(default_factory=dict)
    # ... and, for a chip whose clock the catalog does not state, the pooled chips' bf16 dense-GEMM fixed cost in the
    # same unit (median), so that its own GEMM fixed cost stands in for the cycle time.
    gemm_launch_kilocycles: float | None = None
    # MoE kinds whose fit counts each expert's row blocks as work units (`cost.moe.moe_work`, `row_tiles`).
    moe_row_tiles: frozenset[str] = frozenset()
    # MoE kinds whose fit computes each expert's rows padded to TensorRT-LLM-gen's token tile (`tile_ladder`).
    moe_tile_ladder: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ResolvedProfile:
    """The profile a chip uses, the fallbacks behind it, and how it was chosen.

    `reference` is the efficiency_reference's profile when the chip has a profile of its own
    (per-class fallback); None otherwise.
    """

    profile: EfficiencyProfile
    generic: EfficiencyProfile
    provenance: Provenance
    compute_units: float
    note: str
    reference: EfficiencyProfile | None = None
    # The chip's bf16 dense-GEMM fixed cost before any launch floor (`with_launch_floor`): what a pooled MoE
    # fit's fixed cost scales with on a chip without a stated clock (None: read it from `gemm('bf16')`).
    gemm_launch_s: float | None = None
    clock_hz: float | None = None  # the chip's boost clock (`ChipSpec.clock_hz`): the unit of a pooled MoE fixed cost
    # (table, kind) pairs other chips' fits do not describe on this chip (`ChipSpec.kernels_not_inherited`): only the
    # chip's own fit may answer them; otherwise they resolve as a kind nobody measured (the nearest 16-bit curve)
    not_inherited: frozenset[tuple[str, str]] = frozenset()
    # (table, key, fallback) -> `_pick`'s answer: the profiles never change, and every operator estimate asks
    _picked: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def layers(self) -> list[tuple[EfficiencyProfile, str]]:
        """(profile, provenance) in resolution order."""
        out = [(self.profile, self.provenance)]
        if self.reference is not None:
            out.append((self.reference, "inherited"))
        if self.generic is not self.profile:
            out.append((self.generic, GENERIC))
        return out

    def _pick(self, table: str, key: str, fallback_key: str) -> tuple[KernelParams, str]:
        hit = self._picked.get((table, key, fallback_key))
        if hit is None:
            hit = self._picked[(table, key, fallback_key)] = self._search(table, key, fallback_key)
        return hit

    def _search(self, table: str, key: str, fallback_key: str) -> tuple[KernelParams, str]:
        foreign = (table, key) in self.not_inherited
        for prof, source in self.layers():
            if key in getattr(prof, table) and not (foreign and source != "fitted"):
                return getattr(prof, table)[key], source
        for prof, source in self.layers():  # a kind nobody measured: the 16-bit curve of the nearest layer
            if fallback_key in getattr(prof, table):
                return getattr(prof, table)[fallback_key], source
        raise DataFileError(f"no profile layer of {self.profile.name} has {table}.{fallback_key}")

    def gemm(self, kind: str) -> tuple[KernelParams, str]:
        return self._pick("gemm", kind, "bf16")

    def attention(self, phase: str, kv_kind: str) -> tuple[KernelParams, str]:
        table = "attention_prefill" if phase == "prefill" else "attention_decode"
        return self._pick(table, kv_kind, "bf16")

    def elementwise(self) -> tuple[KernelParams, str]:
        """Streaming-kernel curve of the first layer that has one (remembered in `_picked`, as `_pick` does)."""
        hit = self._picked.get("elementwise")
        if hit is None:
            hit = self._picked["elementwise"] = self._elementwise()
        return hit

    def _elementwise(self) -> tuple[KernelParams, str]:
        for prof, source in self.layers():
            if prof.elementwise is not None:
                return prof.elementwise, source
        raise DataFileError(f"no profile layer of {self.profile.name} has an elementwise curve")

    def moe(self, kind: str) -> tuple[KernelParams, str]:
        """The fused MoE kernel's fit for `kind`: the first layer with any MoE fit, its fit of `kind` or else
        of the nearest format it measured (`nearest_moe_kind`).

        A chip's own fit of another format beats other chips' fit of this format: the fixed cost is the
        engine's chain of small kernels (routing, permute, two grouped GEMMs, activation, finalize) on this
        chip, and the efficiencies are this chip's (bench/accuracy_moe.py, 'moe-layer:unmeasured-format').
        What changes with the format is scaled by the chip's own dense GEMMs: the nearest format's
        efficiencies times this chip's GEMM efficiency of the requested format over that of the nearest
        (`moe_gemm_kind`), so B200's MXFP4 fit does not stream FP8 weights at its 4-bit efficiency.
        A pooled (generic) fit is a chip that never ran the MoE kernel: its fixed cost is the pooled kernel
        chain's cycles at this chip's clock (`moe_launch_kilocycles`, `moe_cycle_s`).
        """
        prof, source, near = self._moe_layer(kind)
        params = prof.moe[near]
        if source == GENERIC and near in prof.moe_launch_kilocycles:
            params = dataclasses.replace(params, launch_s=prof.moe_launch_kilocycles[near] * self.moe_cycle_s(prof))
        if near != kind:
            params = self._moe_format_scaled(params, near, kind)
        return params, source

    def moe_cycle_s(self, pooled: EfficiencyProfile) -> float:
        """Seconds of one thousand cycles of this chip, the unit `pooled`'s MoE fixed costs are counted in: from its
        clock, or for a chip whose clock the catalog lacks, its bf16 dense-GEMM fixed cost over the pooled chips' (in
        that unit, `gemm_launch_kilocycles`)."""
        if self.clock_hz:
            return KILO_CYCLES / self.clock_hz
        gemm_launch_s = self.gemm("bf16")[0].launch_s if self.gemm_launch_s is None else self.gemm_launch_s
        if not pooled.gemm_launch_kilocycles:
            raise DataFileError(f"profile {pooled.name} has pooled MoE fixed costs but no gemm_launch_kilocycles")
        return gemm_launch_s / pooled.gemm_launch_kilocycles

    def moe_row_tiles(self, kind: str) -> bool:
        """Whether the fit `moe(kind)` returns counts row blocks as work units (`cost.moe.moe_work`)."""
        return self.moe_form(kind) == "row-tiles"

    def moe_form(self, kind: str) -> str:
        """How the fit `moe(kind)` returns counts the layer's work (`cost.moe.moe_work`): 'tile-ladder' (rows padded
        to TensorRT-LLM-gen's token tile), 'row-tiles' (row blocks as work units) or 'columns'."""
        prof, _, near = self._moe_layer(kind)
        if near in prof.moe_tile_ladder:
            return "tile-ladder"
        return "row-tiles" if near in prof.moe_row_tiles else "columns"

    def _moe_layer(self, kind: str) -> tuple[EfficiencyProfile, str, str]:
        """(profile layer, provenance, fitted kind) that MoE kind `kind` resolves to: the first layer with any
        MoE fit, and its nearest measured kind. A pooled fit ran other chips' kernels: no backend of theirs
        is nearer to this chip's than another, so a kind the pool lacks takes its 16-bit curve, as every
        other table does (`_pick`)."""
        for prof, source in self.layers():
            if prof.moe:
                if source == GENERIC and kind not in prof.moe and "bf16" in prof.moe:
                    return prof, source, "bf16"
                return prof, source, nearest_moe_kind(kind, prof.moe)
        raise DataFileError("no fitted 'moe' kernel table in the efficiency profiles (run python -m tokenfab.calibrate.fit_shared)")

    def _moe_format_scaled(self, params: KernelParams, fitted: str, wanted: str) -> KernelParams:
        """`params` (fitted for MoE kind `fitted`) with its efficiencies moved to `wanted` by this chip's GEMMs."""
        have, want = self.gemm(moe_gemm_kind(fitted))[0], self.gemm(moe_gemm_kind(wanted))[0]
        return dataclasses.replace(
            params, compute_eff=min(1.0, params.compute_eff * want.compute_eff / have.compute_eff),
            memory_eff=min(1.0, params.memory_eff * want.memory_eff / have.memory_eff))

    def with_launch_floor(self, floor_s: float) -> ResolvedProfile:
        """This resolution with every compute kernel's fixed cost capped at `floor_s`: kernels replayed from a
        captured CUDA graph (engines' decode steps) pay their device-side floor, not the per-call host time that
        a microbenchmark launching them one by one adds (see `tokenfab.execution.graph_replay`). Collectives keep
        their fits: their latency is protocol time on the devices, which a graph does not remove. Fused MoE
        kernels keep theirs too: the floor is fitted on dense models' runs, which never run them."""
        profile = _launch_capped(self.profile, floor_s)
        generic = profile if self.generic is self.profile else _launch_capped(self.generic, floor_s)
        reference = _launch_capped(self.reference, floor_s) if self.reference is not None else None
        return ResolvedProfile(profile, generic, self.provenance, self.compute_units,
                               f"{self.note}; kernel floors of CUDA-graph replay ({floor_s * 1e6:.1f} us)", reference,
                               self.gemm("bf16")[0].launch_s if self.gemm_launch_s is None else self.gemm_launch_s,
                               self.clock_hz, self.not_inherited)

    def has_collective(self, name: str) -> bool:
        return any(name in prof.collectives for prof, _ in self.layers())

    def collective(self, name: str, num_devices: int) -> tuple[CollectiveParams, str]:
        """Fitted parameters for `name` among `num_devices`: the fit for that group size, else the
        largest measured size below it (the algorithm NCCL picks changes with size, e.g. NVLS at 8),
        from the first layer that measured this collective. Remembered in `_picked`, as `_pick` does."""
        key = ("collective", name, num_devices)
        hit = self._picked.get(key)
        if hit is None:
            hit = self._picked[key] = self._collective(name, num_devices)
        return hit

    def _collective(self, name: str, num_devices: int) -> tuple[CollectiveParams, str]:
        for prof, source in self.layers():
            if name in prof.collectives:
                return nearest_group(prof.collectives[name], num_devices), source
        raise DataFileError(f"no profile layer of {self.profile.name} has a fit for collective {name}")


# (weight bits, activation bits) of the fused-MoE kernel kinds (cost.moe.moe_kind); a backend variant
# ('bf16-cutlass') is the same format from another kernel library.
_MOE_KIND_BITS = {"fp32": (32, 32), "bf16": (16, 16), "fp8": (8, 8), "int8": (8, 8), "w8a16": (8, 16),
                  "w4a16": (4, 16), "w4a8": (4, 8), "fp4": (4, 4), "int4": (4, 4)}


def moe_gemm_kind(kind: str) -> str:
    """The dense-GEMM profile key whose efficiencies stand for MoE kind `kind` on the same chip: the format
    without its backend variant, and for mixed 4-bit-weight kinds the 4-bit GEMM (a layer at serving sizes
    is bound by streaming its expert weights, so the weight format's streaming efficiency is the one that
    differs between formats)."""
    base = kind.partition("-")[0]
    return {"w4a8": "fp4", "w4a16": "w4a16", "w8a16": "w8a16"}.get(base, base)


def nearest_moe_kind(kind: str, fitted: dict[str, KernelParams] | list[str]) -> str:
    """`kind` if fitted, else the nearest fitted kind: the same kernel backend first (its chain of kernels is
    the fixed cost, the larger term at decode sizes), then weight bits (decode-sized layers are weight-read
    bound), then activation bits. On L40S (two backends x two formats) this order scores 14.7% on CUTLASS
    fp8 against 41.1% for format-first (bench/accuracy_moe.py, 'moe-layer:unmeasured-format')."""
    if kind in fitted:
        return kind
    base, _, variant = kind.partition("-")
    want = _MOE_KIND_BITS.get(base, (16, 16))

    def distance(candidate: str) -> tuple[float, float, int, str]:
        cbase, _, cvariant = candidate.partition("-")
        w, a = _MOE_KIND_BITS.get(cbase, (16, 16))
        return (int(cvariant != variant), abs(math.log2(w / want[0])), abs(math.log2(a / want[1])), candidate)

    return min(fitted, key=distance)


def _launch_capped(prof: EfficiencyProfile, floor_s: float) -> EfficiencyProfile:
    def cap(table: dict[str, KernelParams]) -> dict[str, KernelParams]:
        return {k: dataclasses.replace(v, launch_s=min(v.launch_s, floor_s)) for k, v in table.items()}

    elementwise = prof.elementwise
    if elementwise is not None:
        elementwise = dataclasses.replace(elementwise, launch_s=min(elementwise.launch_s, floor_s))
    return dataclasses.replace(prof, gemm=cap(prof.gemm), attention_prefill=cap(prof.attention_prefill),
                               attention_decode=cap(prof.attention_decode), elementwise=elementwise)


def nearest_group(by_size: dict[int, CollectiveParams], num_devices: int) -> CollectiveParams:
    below = [n for n in by_size if n <= num_devices]
    return by_size[max(below)] if below else by_size[min(by_size)]


def _kernel(data: dict, where: str) -> KernelParams:
    try:
        return KernelParams(
            launch_s=float(data["launch_s"]), compute_eff=float(data["compute_eff"]),
            memory_eff=float(data["memory_eff"]), overlap_exp=float(data["overlap_exp"]),
            half_occupancy_per_unit=float(data["half_occupancy_per_unit"]),
            cache_bw_factor=float(data.get("cache_bw_factor", 1.0)),
            cache_capacity_frac=float(data.get("cache_capacity_frac", 0.0)),
            cache_ramp_frac=float(data.get("cache_ramp_frac", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileError(f"profile {where}: bad kernel parameters ({exc})") from None


def profile_from_dict(data: dict, where: str = "") -> EfficiencyProfile:
    try:
        return EfficiencyProfile(
            name=str(data["name"]),
            provenance_note=str(data.get("provenance", "")),
            compute_units=float(data["compute_units"]),
            peak_bf16_flop_per_s=float(data["peak_bf16_flop_per_s"]),
            gemm={k: _kernel(v, f"{where} gemm.{k}") for k, v in data.get("gemm", {}).items()},
            attention_prefill={k: _kernel(v, where) for k, v in data.get("attention_prefill", {}).items()},
            attention_decode={k: _kernel(v, where) for k, v in data.get("attention_decode", {}).items()},
            elementwise=_kernel(data["elementwise"], f"{where} elementwise") if data.get("elementwise") else None,
            collectives={
                name: {int(n): CollectiveParams(**{f: float(v[f]) for f in CollectiveParams.__dataclass_fields__})
                       for n, v in by_size.items()}
                for name, by_size in data.get("collectives", {}).items()
            },
            fit_quality=data.get("fit_quality", {}),
            moe={k: _kernel(v, f"{where} moe.{k}") for k, v in data.get("moe", {}).items()},
            moe_launch_kilocycles={k: float(v) for k, v in data.get("moe_launch_kilocycles", {}).items()},
            gemm_launch_kilocycles=float(data["gemm_launch_kilocycles"]) if data.get("gemm_launch_kilocycles") else None,
            moe_row_tiles=frozenset(str(k) for k in data.get("moe_row_tiles", [])),
            moe_tile_ladder=frozenset(str(k) for k in data.get("moe_tile_ladder", [])),
        )
    except (KeyError, TypeError) as exc:
        raise DataFileError(f"invalid efficiency profile {where}: missing or bad {exc}") from None


@functools.lru_cache(maxsize=64)
def load_profile(name: str) -> EfficiencyProfile | None:
    """The fitted profile named `name` (a chip name or 'generic'), or None if none exists."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{name}.yaml"
    if not path.exists():
        return None
    return profile_from_dict(read_yaml(path), str(path))


def chip_compute_units(chip: ChipSpec, ref: EfficiencyProfile) -> float:
    """Compute units of `chip`; without a spec'd count, scale the reference's by bf16 peak."""
    if chip.num_compute_units is not None:
        return chip.num_compute_units.value
    peak = chip.peak("bf16") if chip.supports("bf16") else max(v.value for v in chip.peak_flop_per_s.values())
    return ref.compute_units * peak / ref.peak_bf16_flop_per_s


def resolve_profile(chip: ChipSpec, profile_path: str | None = None) -> ResolvedProfile:
    """Choose the efficiency profile of `chip` (see module doc)."""
    generic = load_profile(GENERIC)
    if generic is None:
        raise DataFileError(f"the generic efficiency profile is missing from {PROFILE_DIR}")
    if profile_path:
        own = load_profile(profile_path)
        if own is None:
            raise DataFileError(f"efficiency profile {profile_path} does not exist")
        return ResolvedProfile(own, generic, "fitted", chip_compute_units(chip, own), f"calibrated profile {profile_path}",
                               clock_hz=chip.clock)
    own = load_profile(chip.name)
    ref = load_profile(chip.efficiency_reference) if chip.efficiency_reference else None
    foreign = frozenset(tuple(k.split(".", 1)) for k in chip.kernels_not_inherited)
    if own is not None:
        note = f"fitted on {chip.name} measurements"
        if ref is not None:
            note += f"; kernel classes not measured on it inherited from {chip.efficiency_reference}"
        return ResolvedProfile(own, generic, "fitted", chip_compute_units(chip, own), note, reference=ref, clock_hz=chip.clock,
                               not_inherited=foreign)
    if chip.efficiency_reference:
        if ref is not None:
            note = f"inherited from {chip.efficiency_reference}: {chip.efficiency_reference_reason}"
            if foreign:
                note += f" (not {', '.join(sorted(chip.kernels_not_inherited))}: the 16-bit curves stand in)"
            return ResolvedProfile(ref, generic, "inherited", chip_compute_units(chip, ref), note, clock_hz=chip.clock,
                                   not_inherited=foreign)
    note = "generic default fitted on all measured chips (no measurements of this chip or its family)"
    return ResolvedProfile(generic, generic, "generic", chip_compute_units(chip, generic), note, clock_hz=chip.clock)
