"""Predicted vs measured, per operator group: the chip-test deliverable.

`predict_measurements` runs the cost model on every row of a measurement table (with
the same conditions the benchmark had: kernels re-run on warm operands) and
`summarize` reports MAPE, worst cases and the rows that miss by more than a threshold,
per op group and per device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tokenfab.cost.attention import estimate_decode_attention, estimate_prefill_attention
from tokenfab.cost.chip_cost import ChipCost, chip_cost
from tokenfab.cost.collectives import estimate_collective
from tokenfab.cost.elementwise import estimate_elementwise
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.moe import estimate_moe
from tokenfab.cost.result import OpCost
from tokenfab.calibrate.host_bound import host_bound_mask
from tokenfab.calibrate.implausible import implausible_mask
from tokenfab.calibrate.profiles import moe_shape_of, moe_weight_bytes_of
from tokenfab.hardware.catalog import load_chip, system_of_chip
from tokenfab.hardware.spec import SystemSpec

GROUPS = {"gemm": "GEMM", "attention_prefill": "attention", "attention_decode": "attention", "elementwise": "memory bandwidth",
          "all_reduce": "collectives", "all_gather": "collectives", "reduce_scatter": "collectives",
          "all_to_all": "collectives", "all_reduce_oneshot": "collectives", "send_recv": "collectives", "moe": "MoE layer"}
HOST_BOUND_GROUP = "collectives (host-bound, not fitted)"
IMPLAUSIBLE_SUFFIX = " (beats the chip's roofline, not fitted)"


def _s(value, default: str = "") -> str:
    return default if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def predict_row(cc: ChipCost, system_for: Callable[[int], SystemSpec], row: pd.Series) -> float:
    """Predicted time of one measured row (NaN for ops the model does not cover)."""
    cost = predict_row_cost(cc, system_for, row)
    return float("nan") if cost is None else cost.time_s


def predict_row_cost(cc: ChipCost, system_for: Callable[[int], SystemSpec], row: pd.Series) -> OpCost | None:
    """The cost estimate of one measured row, with its efficiency source (None if not covered)."""
    op = row["op"]
    if op == "gemm":
        return estimate_gemm(cc, int(row["m"]), int(row["n"]), int(row["k"]), _s(row["dtype"], "bf16"),
                             _s(row["weight_dtype"]) or None, variant=_s(row["variant"]), warm_cache=True)
    if op in ("attention_prefill", "attention_decode"):
        args = (int(row["num_heads"]), int(row["num_kv_heads"]), int(row["head_dim"]))
        kv = _s(row["kv_dtype"], "bf16")
        if op == "attention_prefill":
            return estimate_prefill_attention(cc, int(row["batch"]), int(row["q_len"]), int(row["kv_len"]), *args,
                                              None, _s(row["dtype"], "bf16"), kv, warm_cache=True)
        if _s(row.get("variant")) == "mla":  # absorbed MLA: latent + rope scores, latent values
            return estimate_decode_attention(cc, int(row["batch"]), float(row["kv_len"]), args[0], 1, args[2],
                                             int(row["v_head_dim"]), kv, latent_dim=args[2], warm_cache=True,
                                             act_dtype=_s(row["dtype"], "bf16"))
        return estimate_decode_attention(cc, int(row["batch"]), float(row["kv_len"]), *args, None, kv,
                                         warm_cache=True, act_dtype=_s(row["dtype"], "bf16"))
    if op == "moe":
        return estimate_moe(cc, moe_shape_of(row), _s(row["dtype"], "bf16"), _s(row["weight_dtype"]) or None,
                            variant=_s(row["variant"]), warm_cache=True, weight_bytes_per_element=moe_weight_bytes_of(row))
    if op == "elementwise":
        return estimate_elementwise(cc, "elementwise", float(row["bytes"]), warm_cache=True)
    if op in GROUPS and op not in ("gemm", "attention_prefill", "attention_decode", "elementwise", "moe"):
        n = int(row["num_devices"])
        name = "all_reduce" if op == "all_reduce_oneshot" else op
        impl = "oneshot" if op == "all_reduce_oneshot" else ""
        return estimate_collective(cc, system_for(n), name, n, float(row["message_bytes"]), implementation=impl)
    return None


def predict_measurements(frame: pd.DataFrame, cost_for: Callable[[str], ChipCost] | None = None) -> pd.DataFrame:
    """Add `predicted_s`, `error_frac` (predicted / measured - 1), the op `group` and the
    `efficiency_source` of each prediction (fitted, inherited, generic, analytic) to every row."""
    cost_for = cost_for or (lambda device: chip_cost(load_chip(device)))
    preds = np.full(len(frame), np.nan)
    sources = np.full(len(frame), "", dtype=object)
    for device, rows in frame.groupby("device", sort=False):
        cc = cost_for(str(device))

        def system_for(n: int, _chip=cc.chip) -> SystemSpec:
            return system_of_chip(_chip, n)

        for pos, (_, row) in zip(np.flatnonzero(frame["device"].to_numpy() == device), rows.iterrows()):
            cost = predict_row_cost(cc, system_for, row)
            if cost is not None:
                preds[pos], sources[pos] = cost.time_s, cost.source
    out = frame.copy()
    out["predicted_s"] = preds
    out["efficiency_source"] = sources
    out["error_frac"] = out["predicted_s"] / out["time_s"] - 1.0
    out["group"] = out["op"].map(GROUPS).fillna("other")
    # rows of a host's fabric, not the chip's (host_bound.yaml): left out of the fit, scored on their own
    out.loc[out["group"].eq("collectives") & host_bound_mask(out), "group"] = HOST_BOUND_GROUP
    # tables faster than their chip's DRAM allows (implausible.yaml): left out of the fit, scored on their own
    implausible = implausible_mask(out)
    out.loc[implausible, "group"] = out.loc[implausible, "group"] + IMPLAUSIBLE_SUFFIX
    return out


@dataclass(frozen=True)
class GroupStats:
    group: str
    num_rows: int
    mape: float
    median_ape: float
    p90_ape: float
    max_ape: float
    bias: float  # median signed error: > 0 means the model predicts too slow

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def group_stats(frame: pd.DataFrame, by: list[str]) -> list[GroupStats]:
    rows = frame.dropna(subset=["error_frac"])
    out = []
    for key, g in rows.groupby(by, sort=True):
        ape = g["error_frac"].abs()
        label = key if isinstance(key, str) else "/".join(map(str, key))
        out.append(GroupStats(label, len(g), float(ape.mean()), float(ape.median()), float(ape.quantile(0.9)),
                              float(ape.max()), float(g["error_frac"].median())))
    return out


def worst_rows(frame: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    rows = frame.dropna(subset=["error_frac"])
    return rows.reindex(rows["error_frac"].abs().sort_values(ascending=False).index).head(n)
