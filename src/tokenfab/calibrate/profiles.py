"""Turn a measurement table into a fitted efficiency profile (YAML data beside the chip).

`fit_chip_profile` fits one chip from its own measurements; `fit_generic_profile` fits
every kernel class on the measurements of all chips at once (each row against its own
chip's peaks), which is the documented default for chips with no measured relative.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tokenfab.calibrate.fit import (
    UPPER, CollectiveSamples, FitQuality, KernelSamples, fit_collective, fit_kernel,
)
from tokenfab.calibrate.host_bound import drop_host_bound
from tokenfab.calibrate.implausible import drop_implausible
from tokenfab.calibrate.moe_fit import chip_gemm_launch_s, fit_moe_kind, fit_pooled_moe
from tokenfab.cost.attention import decode_attention_work, prefill_attention_work
from tokenfab.cost.chip_cost import ChipCost, KernelWork, warm_cache_bytes
from tokenfab.cost.collectives import mesh_domain
from tokenfab.cost.gemm import gemm_work
from tokenfab.cost.kernel import KernelParams
from tokenfab.cost.moe import MOE_FORMS, MoEShape, moe_work
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.spec import ChipSpec
from tokenfab.workload.weight_format import stored_bytes_per_weight
from tokenfab.table_io import YAML_SUFFIXES, write_text

COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "all_reduce_oneshot")
MIN_POINTS = 8  # full seven-parameter fit
# A fused-MoE microbenchmark re-runs the same experts, whose weights (tens of MB) then stream from
# L2, which is several times DRAM bandwidth on these chips; the GEMM default bound (4x) cut off
# the fit on L40S rows that run below their DRAM roofline.
MOE_CACHE_BW_FACTOR_MAX = 8.0


def table_upper(table: str) -> np.ndarray | None:
    """Upper parameter bounds of one kernel table's fit (None: the fitter's defaults)."""
    if table != "moe":
        return None
    upper = UPPER.copy()
    upper[5] = MOE_CACHE_BW_FACTOR_MAX
    return upper
MIN_POINTS_REDUCED = 4  # launch, compute and memory efficiency only


def _s(value, default: str = "") -> str:
    return default if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _row_work(cc: ChipCost, row: pd.Series, moe_form: str = "columns") -> tuple[str, KernelWork]:
    """(table, work) of one measured kernel, computed by the estimators' own work functions
    (`moe_form`: how fused-MoE work is counted, `cost.moe.MOE_FORMS`)."""
    op = row["op"]
    if op == "gemm":
        return "gemm", gemm_work(cc, int(row["m"]), int(row["n"]), int(row["k"]), _s(row["dtype"], "bf16"),
                                 _s(row["weight_dtype"]) or None, _s(row["variant"]))
    if op == "moe":
        return "moe", moe_work(cc, moe_shape_of(row), _s(row["dtype"], "bf16"), _s(row["weight_dtype"]) or None,
                               _s(row["variant"]), row_tiles=moe_form == "row-tiles", tile_ladder=moe_form == "tile-ladder",
                               weight_bytes_per_element=moe_weight_bytes_of(row))
    kv = _s(row["kv_dtype"], "bf16")
    heads, kv_heads, d = int(row["num_heads"]), int(row["num_kv_heads"]), int(row["head_dim"])
    if op == "attention_prefill":
        return "attention_prefill", prefill_attention_work(
            cc, int(row["batch"]), int(row["q_len"]), int(row["kv_len"]), heads, kv_heads, d, None,
            _s(row["dtype"], "bf16"), kv)
    if op == "attention_decode" and _s(row.get("variant")) == "mla":
        return "attention_decode", decode_attention_work(cc, int(row["batch"]), float(row["kv_len"]), heads, 1, d,
                                                         int(row["v_head_dim"]), kv, latent_dim=d,
                                                         act_dtype=_s(row["dtype"], "bf16"))
    if op == "attention_decode":
        return "attention_decode", decode_attention_work(cc, int(row["batch"]), float(row["kv_len"]), heads, kv_heads, d, None,
                                                         kv, act_dtype=_s(row["dtype"], "bf16"))
    raise InvalidInputError(f"op {op} is not a compute kernel")


def moe_shape_of(row: pd.Series) -> MoEShape:
    """The MoEShape of one measured fused-MoE row."""
    gated = row.get("gated", True)
    return MoEShape(int(row["num_tokens"]), int(row["hidden"]), int(row["intermediate"]), int(row["topk"]),
                    int(row["num_experts"]), int(row["moe_tp"]), int(row["ep"]),
                    gated=bool(True if gated is None or gated != gated else gated),
                    distribution=_s(row.get("distribution"), "balanced"))


def moe_weight_bytes_of(row: pd.Series) -> float:
    """Stored bytes per expert weight of one measured fused-MoE row: its weight format's, block scales included
    (the row's `weight_format`, e.g. MXFP4's 4.25 bits), else its weight dtype's default format."""
    dtype = _s(row["weight_dtype"]) or _s(row["dtype"], "bf16")
    return stored_bytes_per_weight(dtype, _s(row.get("weight_format")) or None)


def _elementwise_work(cc: ChipCost, row: pd.Series) -> KernelWork:
    """A streaming kernel (copy/scale/triad, norms): its bytes against bandwidth, no tensor-core work."""
    return KernelWork(0.0, float(row["bytes"]), cc.vector_flop_per_s, 1.0, "default")


def kernel_samples(frame: pd.DataFrame, chip: ChipSpec, warm: bool = True,
                   moe_form: str = "columns") -> dict[tuple[str, str], KernelSamples]:
    """Group a chip's compute-kernel rows by (table, kind) with their work.

    `warm`: the rows come from microbenchmarks that re-run a kernel on the same operands, so a
    working set that fits on chip may be served from cache; the fit then learns how much.
    `moe_form`: how fused-MoE work is counted (`cost.moe.MOE_FORMS`; the fitter tries each, `calibrate.moe_fit`).
    """
    cc = ChipCost(chip, None)
    groups: dict[tuple[str, str], list[tuple[KernelWork, float, bool]]] = {}
    for _, row in frame[frame["op"].isin(["gemm", "attention_prefill", "attention_decode", "elementwise", "moe"])].iterrows():
        if row["op"] == "elementwise":
            table, work = "elementwise", _elementwise_work(cc, row)
        else:
            table, work = _row_work(cc, row, moe_form)
        groups.setdefault((table, work.kind), []).append((work, float(row["time_s"]), warm))
    out = {}
    for key, items in groups.items():
        n = len(items)
        out[key] = KernelSamples(
            flops=np.array([w.flops for w, _, _ in items]), dram_bytes=np.array([w.dram_bytes for w, _, _ in items]),
            peak=np.array([w.peak for w, _, _ in items]), bandwidth=np.full(n, cc.bandwidth_bytes_per_s),
            work_units=np.array([w.work_units for w, _, _ in items]), compute_units=np.full(n, cc.compute_units),
            cache_bytes=np.array([warm_cache_bytes(chip.sram_bytes, w.dram_bytes, w.resident_bytes) if warm else 0.0
                                  for w, _, warm in items]),
            time_s=np.array([t for _, t, _ in items]),
        )
    return out


def collective_samples(frame: pd.DataFrame, chip: ChipSpec) -> dict[str, CollectiveSamples]:
    if chip.scale_up is None:
        return {}
    bw = chip.scale_up.bandwidth_bytes_per_s.value
    mesh = mesh_domain(chip.scale_up)
    frame = drop_host_bound(frame)  # group sizes measured on a slower host fabric (host_bound.yaml)
    out = {}
    for name in COLLECTIVE_OPS:
        rows = frame[frame["op"] == name]
        if len(rows):
            out[name] = CollectiveSamples(
                name="all_reduce" if name == "all_reduce_oneshot" else name,
                num_devices=rows["num_devices"].to_numpy(float), message_bytes=rows["message_bytes"].to_numpy(float),
                link_bw=np.full(len(rows), bw), time_s=rows["time_s"].to_numpy(float),
                mesh_domain=np.full(len(rows), float(mesh)),
            )
    return out


def _kernel_dict(params: KernelParams, q: FitQuality) -> dict:
    d = {
        "launch_s": float(f"{params.launch_s:.4g}"), "compute_eff": round(params.compute_eff, 4),
        "memory_eff": round(params.memory_eff, 4), "overlap_exp": round(params.overlap_exp, 4),
        "half_occupancy_per_unit": float(f"{params.half_occupancy_per_unit:.4g}"),
    }
    if params.cache_capacity_frac > 0 and params.cache_bw_factor > 1.0:
        d["cache_bw_factor"] = round(params.cache_bw_factor, 4)
        d["cache_capacity_frac"] = round(params.cache_capacity_frac, 4)
    d["fit"] = q.as_dict()
    return d


def _elementwise_from(gemm: dict) -> dict:
    """No elementwise measurements: stream at the bf16 GEMM's fitted DRAM efficiency and launch cost."""
    return {"launch_s": gemm["launch_s"], "compute_eff": 1.0, "memory_eff": gemm["memory_eff"], "overlap_exp": 4.0,
            "half_occupancy_per_unit": 0.0, "derived_from": "gemm.bf16 (launch_s, memory_eff)"}


def _assemble(name: str, provenance: str, units: float, peak: float, tables: dict, collectives: dict) -> dict:
    """The profile as data. Without elementwise rows the streaming curve is derived from the bf16 GEMM;
    a chip measured without either gets none (resolution then falls back to its reference or generic)."""
    gemm = tables.get("gemm", {})
    elementwise = tables.get("elementwise", {}).get("default") or (_elementwise_from(gemm["bf16"]) if "bf16" in gemm else None)
    return {
        "name": name,
        "provenance": provenance,
        "fitted_on": _dt.date.today().isoformat(),
        "compute_units": units,
        "peak_bf16_flop_per_s": peak,
        "gemm": gemm,
        "attention_prefill": tables.get("attention_prefill", {}),
        "attention_decode": tables.get("attention_decode", {}),
        "elementwise": elementwise,
        "moe": tables.get("moe", {}),
        "collectives": collectives,
    }


def fit_chip_profile(frame: pd.DataFrame, chip: ChipSpec, provenance: str) -> dict:
    """Fit every kernel class and collective that has at least MIN_POINTS rows for `chip`."""
    rows = frame[frame["device"] == chip.name]
    if rows.empty:
        raise InvalidInputError(f"no measurements of {chip.name} to fit")
    tables: dict[str, dict] = {}
    moe_rows = rows[rows["op"] == "moe"]
    other_forms = {f: kernel_samples(moe_rows, chip, moe_form=f) for f in MOE_FORMS[1:]} if len(moe_rows) else {}
    chosen: dict[str, list[str]] = {}
    for (table, kind), samples in sorted(kernel_samples(rows, chip).items()):
        if table == "moe" and len(samples) >= MIN_POINTS:
            forms = {"columns": samples, **{f: by[(table, kind)] for f, by in other_forms.items()}}
            params, q, form = fit_moe_kind(forms, table_upper(table))
            chosen.setdefault(form, []).append(kind)
        elif len(samples) >= MIN_POINTS:
            params, q = fit_kernel(samples, upper=table_upper(table))
        elif len(samples) >= MIN_POINTS_REDUCED:  # few points: launch cost and the two efficiencies only
            params, q = fit_kernel(samples, fit_cache=False, fixed={3: 2.0, 4: 0.0})
        else:
            continue
        tables.setdefault(table, {})[kind] = _kernel_dict(params, q)
    if "gemm" not in tables:
        raise InvalidInputError(f"{chip.name}: a profile needs at least {MIN_POINTS} GEMM measurements")
    collectives = _fit_collectives(collective_samples(rows, chip))
    units = chip.num_compute_units.value if chip.num_compute_units else 0.0
    out = _assemble(chip.name, provenance, units, chip.peak("bf16") if chip.supports("bf16") else 0.0, tables, collectives)
    _record_moe_forms(out, chosen)
    return out


def _record_moe_forms(out: dict, chosen: dict[str, list[str]]) -> None:
    """The MoE kinds fitted in each non-default work form, as the profile lists them (`EfficiencyProfile`)."""
    for form, key in (("row-tiles", "moe_row_tiles"), ("tile-ladder", "moe_tile_ladder")):
        if chosen.get(form):
            out[key] = sorted(chosen[form])


def _fit_collectives(samples_by_name: dict[str, CollectiveSamples]) -> dict:
    """One fit per collective and group size (the library's algorithm choice changes with size)."""
    out: dict[str, dict] = {}
    for name, s in samples_by_name.items():
        for n in sorted(set(s.num_devices.astype(int))):
            mask = s.num_devices == n
            if mask.sum() < MIN_POINTS:
                continue
            sub = s.subset(mask)
            params, q = fit_collective(sub)
            out.setdefault(name, {})[int(n)] = _collective_dict(params, q)
    return out


def _collective_dict(params, q: FitQuality) -> dict:
    d = {f: float(f"{getattr(params, f):.4g}") for f in params.__dataclass_fields__}
    d["fit"] = q.as_dict()
    return d


def fit_generic_profile(frame: pd.DataFrame, chips: list[ChipSpec], provenance: str,
                        gemm_launch_s: dict[str, float] | None = None) -> dict:
    """Pool all chips: each kernel class fitted once on every chip's rows, against each chip's own peaks.

    The fused-MoE tables are fitted with each chip's fixed cost in units of its bf16 dense-GEMM fixed cost
    (`calibrate.moe_fit`), taken from `gemm_launch_s` (chip name -> seconds, e.g. the chip profiles just
    fitted) or else fitted here on the chip's GEMM rows; a chip with neither leaves its MoE rows out. Shared tables
    that beat their chip's roofline (implausible.yaml) are left out of the pool, whatever frame is passed."""
    frame = drop_implausible(frame)
    pooled: dict[tuple[str, str], list[KernelSamples]] = {}
    moe_parts: dict[str, list[tuple[KernelSamples, float]]] = {}
    moe_forms: dict[str, dict[str, list[KernelSamples]]] = {}
    coll: dict[str, list[CollectiveSamples]] = {}
    for chip in chips:
        rows = frame[frame["device"] == chip.name]
        chip_samples = kernel_samples(rows, chip)
        launch = (gemm_launch_s or {}).get(chip.name)
        if launch is None and any(table == "moe" for table, _ in chip_samples):
            launch = chip_gemm_launch_s(rows, chip)
        forms = {f: kernel_samples(rows[rows["op"] == "moe"], chip, moe_form=f) for f in MOE_FORMS[1:]} if launch is not None else {}
        for key, samples in chip_samples.items():
            if key[0] != "moe":
                pooled.setdefault(key, []).append(samples)
            elif launch is not None:
                moe_parts.setdefault(key[1], []).append((samples, launch))
                for f, by in forms.items():
                    moe_forms.setdefault(key[1], {}).setdefault(f, []).append(by[key])
        for name, samples in collective_samples(rows, chip).items():
            coll.setdefault(name, []).append(samples)
    tables: dict[str, dict] = {}
    for (table, kind), parts in sorted(pooled.items()):
        # Cache residency is a property of one chip's benchmark, not transferable: no cache term.
        params, q = fit_kernel(KernelSamples.concat(parts), fit_cache=False)
        tables.setdefault(table, {})[kind] = _kernel_dict(params, q)
    ratios, chosen = _fit_generic_moe(moe_parts, moe_forms, tables)
    merged = {name: CollectiveSamples(parts[0].name, *(np.concatenate([getattr(p, f) for p in parts])
                                                       for f in ("num_devices", "message_bytes", "link_bw", "time_s")),
                                      np.concatenate([p.mesh() for p in parts]))
              for name, parts in coll.items()}
    collectives = _fit_collectives(merged)
    units = [c.num_compute_units.value for c in chips if c.num_compute_units]
    peaks = [c.peak("bf16") for c in chips if c.num_compute_units and c.supports("bf16")]
    # Units per FLOP/s of the pooled chips, so a chip without a unit count scales by its peak.
    ratio = float(np.median(np.array(units) / np.array(peaks)))
    out = _assemble("generic", provenance, ratio * 1e15, 1e15, tables, collectives)
    if ratios:
        out["moe_launch_per_gemm_launch"] = ratios
    _record_moe_forms(out, chosen)
    return out


def _fit_generic_moe(moe_parts: dict[str, list[tuple[KernelSamples, float]]],
                     moe_forms: dict[str, dict[str, list[KernelSamples]]], tables: dict) -> tuple[dict[str, float], dict]:
    """Pooled MoE tables into `tables['moe']` and their fixed-cost ratios (kind -> r). The stored launch_s
    is r x the generic bf16 GEMM fixed cost, so the table alone is the prediction for a chip with no GEMM
    data of its own; `ResolvedProfile.moe` rescales it by the chip's own GEMM fixed cost. The fused-MoE rows
    are dominated by whether the experts' weights fit in each chip's own L2 (its spec'd SRAM), so this table
    keeps the cache term; it only acts on warm benchmarks."""
    ratios: dict[str, float] = {}
    chosen: dict[str, list[str]] = {}
    reference_s = tables.get("gemm", {}).get("bf16", {}).get("launch_s")
    for kind, parts in sorted(moe_parts.items()):
        params, q, ratio, form = fit_pooled_moe(parts, table_upper("moe"), moe_forms.get(kind))
        launch_s = ratio * reference_s if reference_s else ratio * float(np.median([launch for _, launch in parts]))
        tables.setdefault("moe", {})[kind] = _kernel_dict(dataclasses.replace(params, launch_s=launch_s), q)
        ratios[kind] = round(ratio, 4)
        chosen.setdefault(form, []).append(kind)
    return ratios, chosen


def write_profile(profile: dict, path: str | Path) -> Path:
    header = (f"# Efficiency profile '{profile['name']}' written by tokenfab.calibrate; do not edit by hand.\n"
              f"# {profile['provenance']}\n")
    return write_text(header + yaml.safe_dump(profile, sort_keys=False, width=120), path, YAML_SUFFIXES, "profile")
