"""Measurement files: one canonical table of measured operator times.

The microbenchmark suite writes it, the published data in shared/calibration is
converted into it, and the fitter and the validation report read it. One row is one
measured kernel (median time over repeats) with its shape in named columns; columns
that do not apply to an op are empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tokenfab.errors import DataFileError
from tokenfab.table_io import write_table

COLUMNS = [
    "device", "op", "dtype", "weight_dtype", "variant", "m", "n", "k", "batch", "q_len", "kv_len",
    "num_heads", "num_kv_heads", "head_dim", "kv_dtype", "num_devices", "message_bytes", "bytes",
    "time_s", "repeats", "spread_frac", "source",
    "v_head_dim", "num_tokens", "hidden", "intermediate", "topk", "num_experts", "moe_tp", "ep", "gated", "distribution",
    "weight_format",
]
REQUIRED = ["device", "op", "time_s"]
OPS = ("gemm", "attention_prefill", "attention_decode", "elementwise", "all_reduce", "all_gather",
       "reduce_scatter", "all_to_all", "all_reduce_oneshot", "send_recv", "h2d", "d2h", "moe")
_NEEDS = {
    "gemm": ["m", "n", "k", "dtype"],
    "attention_prefill": ["batch", "q_len", "kv_len", "num_heads", "num_kv_heads", "head_dim"],
    "attention_decode": ["batch", "kv_len", "num_heads", "num_kv_heads", "head_dim"],
    "elementwise": ["bytes"],
    "moe": ["num_tokens", "hidden", "intermediate", "topk", "num_experts", "moe_tp", "ep", "dtype"],
}

# shared/calibration hardware strings -> catalog names. HARDWARE_NAMES: the aiconfigurator NVIDIA
# tables (one collector, one framework), which alone feed the pooled 'generic' profile.
HARDWARE_NAMES = {"A100-SXM-80GB": "a100-sxm", "H100-SXM-80GB": "h100-sxm", "L40S": "l40s", "B200-SXM-180GB": "b200"}
# shared/calibration/vendors/: other collectors and kernel libraries (vendors/README.md); each chip is
# fitted on its own rows only. The aiter gfx950 tables may be MI350X as well as MI355X (README).
VENDOR_HARDWARE_NAMES = {"Ascend 910B": "ascend-910b", "H20 (96GB HBM3)": "h20",
                         "MI355X/MI350X (gfx950, 256 CU)": "mi355x", "MI308X (gfx942, 80 CU)": "mi308x"}
VENDOR_FILES = ("ops_gemm_ascend910b.csv", "ops_attention_ascend910b.csv", "ops_comm_ascend910b.csv",
                "ops_gemm_h20.csv", "ops_attention_h20.csv", "ops_gemm_mi355x.csv", "ops_gemm_mi308x.csv")
_ALL_HARDWARE = {**HARDWARE_NAMES, **VENDOR_HARDWARE_NAMES}
_GEMM_PRECISION = {  # shared precision label -> (activation dtype, weight dtype, variant)
    "bfloat16": ("bf16", "bf16", ""), "fp8": ("fp8", "fp8", ""), "fp8_block": ("fp8", "fp8", "block"),
    "nvfp4": ("fp4", "fp4", ""), "int8_wo": ("bf16", "int8", ""), "int4_wo": ("bf16", "int4", ""),
    "sq": ("int8", "int8", ""),
    # vendors/: W8A8 int8 (Ascend: includes the dynamic per-token quantisation; aiter: per-token scales)
    "int8 (w8a8_dynamic)": ("int8", "int8", ""), "int8": ("int8", "int8", ""),
    "mxfp4": ("fp4", "fp4", "mx"),  # aiter a4w4 blockscale, 1x32 e8m0 scales (OCP MX)
}
_COMM_OPS = {"nccl_all_reduce": "all_reduce", "nccl_all_gather": "all_gather", "nccl_reduce_scatter": "reduce_scatter",
             "nccl_alltoall": "all_to_all", "trtllm_custom_allreduce": "all_reduce_oneshot",
             "hccl_all_reduce": "all_reduce", "hccl_all_gather": "all_gather", "hccl_reduce_scatter": "reduce_scatter",
             "hccl_alltoall": "all_to_all"}
# aiconfigurator's MoE precisions: (activation dtype, weight dtype, weight storage format of workload/weight_formats.yaml).
# Its collector (collector/trtllm/collect_moe.py) quantises 'fp8' per tensor (QuantAlgo.FP8) and 'w4a8_mxfp4_mxfp8'
# to MXFP4 weights (QuantAlgo.W4A8_MXFP4_MXFP8, group size 32).
_MOE_PRECISION = {"bfloat16": ("bf16", "bf16", ""), "fp8": ("fp8", "fp8", "fp8-tensor"),
                  "w4a8_mxfp4_mxfp8": ("fp8", "fp4", "mxfp4")}
_MOE_NOTE = (r"num_tokens=(?P<num_tokens>\d+), hidden=(?P<hidden>\d+), inter=(?P<intermediate>\d+), topk=(?P<topk>\d+), "
             r"experts=(?P<num_experts>\d+), moe_tp=(?P<moe_tp>\d+), moe_ep=(?P<ep>\d+), token distribution=(?P<distribution>[^;]+)")
_ELEMENT_BYTES = {"half": 2, "bfloat16": 2, "int8": 1, "float": 4, "fp8": 1}


def validate(frame: pd.DataFrame, where: str = "measurements") -> pd.DataFrame:
    """Check a measurement table; return it with every canonical column present."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataFileError(f"{where} lacks column(s) {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    frame = frame.copy()
    for col in COLUMNS:
        if col not in frame.columns:
            frame[col] = np.nan
    times = pd.to_numeric(frame["time_s"], errors="coerce")
    bad = frame.index[~(times > 0)]
    if len(bad):
        raise DataFileError(f"{where}: row {int(bad[0]) + 1} has a non-positive or non-numeric time_s ({frame.loc[bad[0], 'time_s']!r})")
    frame["time_s"] = times
    unknown = sorted(set(frame["op"]) - set(OPS))
    if unknown:
        raise DataFileError(f"{where}: unknown op(s) {unknown} (valid: {', '.join(OPS)})")
    for op, cols in _NEEDS.items():
        rows = frame[frame["op"] == op]
        for col in cols:
            if len(rows) and rows[col].isna().any():
                raise DataFileError(f"{where}: {op} rows need column '{col}'")
    return frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]


def read_measurements(path: str | Path) -> pd.DataFrame:
    """Read a measurement file (CSV or Parquet) and validate it."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"measurement file {path} does not exist")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, comment="#")
    except Exception as exc:  # pandas raises many types for corrupt files
        raise DataFileError(f"cannot read measurement file {path}: {str(exc).splitlines()[0]}") from None
    if "case_id" in frame.columns and "metric" in frame.columns:
        frame = from_shared_frame(frame)
    return validate(frame, str(path))


def write_measurements(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write atomically (temp file then rename) so a failure never leaves half a file."""
    return write_table(validate(frame), path)


def _note_int(notes: pd.Series, key: str) -> pd.Series:
    return notes.str.extract(rf"\b{key}=(\d+)", expand=False).astype(float)


def from_shared_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Convert rows of shared/calibration op files (common schema) into measurement rows."""
    parts = []
    raw = raw[raw["metric"] == "latency_ms"]
    dev = raw["hardware"].map(_ALL_HARDWARE).fillna(raw["hardware"].str.lower())
    gemm = raw[raw["model"] == "GEMM"]
    if len(gemm):
        prec = gemm["precision"].map(_GEMM_PRECISION)
        parts.append(pd.DataFrame({
            "device": dev[gemm.index], "op": "gemm",
            "dtype": prec.str[0], "weight_dtype": prec.str[1], "variant": prec.str[2],
            "m": _note_int(gemm["notes"], "m"), "n": _note_int(gemm["notes"], "n"), "k": _note_int(gemm["notes"], "k"),
            "time_s": gemm["value"] * 1e-3, "source": gemm["case_id"],
        }))
    attn = raw[raw["model"].isin(["context_attention", "generation_attention"])]
    if len(attn):
        notes = attn["notes"]
        isl, step = _note_int(notes, "isl"), _note_int(notes, "step")
        decode = attn["model"] == "generation_attention"
        kv8 = attn["precision"].str.contains("kv fp8")
        parts.append(pd.DataFrame({
            "device": dev[attn.index], "op": np.where(decode, "attention_decode", "attention_prefill"),
            "dtype": "bf16", "kv_dtype": np.where(kv8, "fp8", "bf16"),
            "batch": _note_int(notes, "batch"), "q_len": np.where(decode, 1.0, isl),
            "kv_len": np.where(decode, isl + step, isl),
            "num_heads": _note_int(notes, "num_heads"), "num_kv_heads": _note_int(notes, "num_kv_heads"),
            "head_dim": _note_int(notes, "head_dim"), "time_s": attn["value"] * 1e-3, "source": attn["case_id"],
        }))
    mla = raw[raw["model"] == "generation_mla"]
    if len(mla):
        notes = mla["notes"]
        lora, rope = _note_int(notes, "kv_lora_rank"), _note_int(notes, "qk_rope_head_dim")
        parts.append(pd.DataFrame({
            "device": dev[mla.index], "op": "attention_decode", "variant": "mla", "dtype": "bf16",
            "kv_dtype": np.where(mla["precision"].str.contains("kv fp8"), "fp8", "bf16"),
            "batch": _note_int(notes, "batch"), "q_len": 1.0, "kv_len": _note_int(notes, "isl") + _note_int(notes, "step"),
            "num_heads": _note_int(notes, "num_heads"), "num_kv_heads": 1.0, "head_dim": lora + rope,
            "v_head_dim": lora, "time_s": mla["value"] * 1e-3, "source": mla["case_id"],
        }))
    comm = raw[raw["model"].isin(list(_COMM_OPS))]
    if len(comm):
        elems = comm["notes"].str.extract(r"message_size=(\d+)", expand=False).astype(float)
        width = comm["precision"].map(_ELEMENT_BYTES)
        parts.append(pd.DataFrame({
            "device": dev[comm.index], "op": comm["model"].map(_COMM_OPS), "dtype": comm["precision"],
            "num_devices": comm["n_accel"].astype(float), "message_bytes": elems * width,
            "time_s": comm["value"] * 1e-3, "source": comm["case_id"],
        }))
    moe = raw[raw["model"] == "moe_layer"]
    if len(moe):
        parts.append(_moe_rows(moe, dev[moe.index]))
    if not parts:
        raise DataFileError("no operator-level rows (GEMM, attention, collectives) found in the file")
    return pd.concat(parts, ignore_index=True)


def _moe_rows(moe: pd.DataFrame, device: pd.Series) -> pd.DataFrame:
    """Fused MoE layer rows: shape from the notes; 'nongated' kernels have a plain up projection,
    'cutlass' names TensorRT-LLM's CUTLASS backend (kept as the variant)."""
    shape = moe["notes"].str.extract(_MOE_NOTE)
    prec = moe["precision"].map(_MOE_PRECISION)
    unknown = sorted(set(moe["precision"][prec.isna()]))
    if unknown:
        raise DataFileError(f"ops_moe rows with unknown precision {unknown} (known: {', '.join(_MOE_PRECISION)})")
    backend = moe["framework"].str.extract(r"\((?P<b>[^)]*)\)")["b"].fillna("")
    out = pd.DataFrame({
        "device": device, "op": "moe", "dtype": prec.str[0], "weight_dtype": prec.str[1], "weight_format": prec.str[2],
        "variant": np.where(backend.str.contains("cutlass"), "cutlass", ""),
        "gated": ~backend.str.contains("nongated"), "distribution": shape["distribution"],
        "time_s": moe["value"] * 1e-3, "source": moe["case_id"],
    })
    for col in ("num_tokens", "hidden", "intermediate", "topk", "num_experts", "moe_tp", "ep"):
        out[col] = shape[col].astype(float)
    return out


def shared_calibration_dir() -> Path:
    """Where the team's published measurements live: $TOKENFAB_SHARED_DIR/calibration, or
    ../shared/calibration next to the repository."""
    import os

    env = os.environ.get("TOKENFAB_SHARED_DIR")
    if env:
        candidate = Path(env) / "calibration"
        if candidate.exists():
            return candidate
        raise DataFileError(f"TOKENFAB_SHARED_DIR={env} has no calibration/ folder")
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "calibration"
        if candidate.exists():
            return candidate
    raise DataFileError("cannot find shared/calibration next to the repository (set TOKENFAB_SHARED_DIR)")


def load_shared_ops(directory: str | Path | None = None, vendors: bool = False) -> pd.DataFrame:
    """All operator measurements of shared/calibration (NVIDIA aiconfigurator tables) as one
    measurement table; with `vendors`, also those of shared/calibration/vendors/."""
    directory = Path(directory) if directory else shared_calibration_dir()
    frames = [pd.read_csv(directory / name) for name in ("ops_gemm.csv", "ops_attention.csv", "ops_comm.csv", "ops_moe.csv")]
    if vendors:
        frames += [pd.read_csv(directory / "vendors" / name) for name in VENDOR_FILES]
    return validate(from_shared_frame(pd.concat(frames, ignore_index=True)), str(directory))


def load_vendor_ops(directory: str | Path | None = None) -> pd.DataFrame:
    """Operator measurements of shared/calibration/vendors/ only (Ascend 910B, H20, MI355X, MI308X)."""
    directory = Path(directory) if directory else shared_calibration_dir()
    frames = [pd.read_csv(directory / "vendors" / name) for name in VENDOR_FILES]
    return validate(from_shared_frame(pd.concat(frames, ignore_index=True)), str(directory / "vendors"))

