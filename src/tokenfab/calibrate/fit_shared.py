"""Refit the catalog's efficiency profiles from ../shared/calibration.

    python -m tokenfab.calibrate.fit_shared [--out DIR] [--exclude CHIP]

Writes, in one run, one profile per measured chip (the four NVIDIA chips of the aiconfigurator
tables and the vendors/ chips: Ascend 910B, H20, MI355X, MI308X) and the pooled 'generic'
profile into `hardware/profiles/`. The generic fit pools only the aiconfigurator chips: their
rows come from one collector and one framework, while each vendor table was measured its own
way (launch overhead included, tuner-best kernels, quantisation inside the timed call), so it
is fitted for its own chip and scored against the generic fit as an unseen chip would be
(bench/accuracy_vendors.py). `--exclude` leaves a chip out (bench/accuracy.py uses it to
measure accuracy on a chip the tool has not seen). H200 is never fitted: the team holds it out
to check accuracy on an unseen chip.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from tokenfab.calibrate.implausible import drop_implausible
from tokenfab.calibrate.measurements import HARDWARE_NAMES, VENDOR_HARDWARE_NAMES, load_shared_ops
from tokenfab.calibrate.profiles import fit_chip_profile, fit_generic_profile, write_profile
from tokenfab.cost.profile import PROFILE_DIR
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.catalog import load_chip

HELD_OUT = ("h200-sxm",)  # never fitted, never pooled: the team's unseen-chip check
SOURCE = ("fitted from shared/calibration ops_gemm.csv, ops_attention.csv, ops_comm.csv, ops_moe.csv: NVIDIA aiconfigurator-core "
          "0.12.0 measured tables (TensorRT-LLM 1.0.0 / 1.3.0rc20 kernels, NCCL 2.27-2.29), Apache-2.0")
VENDOR_SOURCES = {
    "ascend-910b": "fitted from shared/calibration/vendors ops_{gemm,attention,comm}_ascend910b.csv: "
                   "hudingyi688/aiconfigurator-npu @90d7765 (vllm-ascend 0.18.0 MatMulV2, QuantBatchMatmulV3 W8A8, "
                   "FusedInferAttentionScore) and xiaowanCN/aiconfigurator-npu @0af81bf58a (HCCL hccl_test)",
    "h20": "fitted from shared/calibration/vendors ops_{gemm,attention}_h20.csv: alibaba/InferSim @f2293da "
           "(DeepGEMM FP8 block GEMM, FA3 prefill, FlashInfer decode; attention times include launch overhead); "
           "classes not measured there come from efficiency_reference h100-sxm",
    "mi355x": "fitted from shared/calibration/vendors/ops_gemm_mi355x.csv: ROCm/aiter @e4048607a5 tuned GEMM tables "
              "(tuner-best kernels, gfx950 256 CU: MI355X or MI350X)",
    "mi308x": "fitted from shared/calibration/vendors/ops_gemm_mi308x.csv: ROCm/aiter @e4048607a5 tuned GEMM tables "
              "(tuner-best kernels, gfx942 80 CU)",
}


def measured_frame(exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """Every shared measurement row that may feed a profile (held-out chips, `exclude` and the tables that beat their
    chip's roofline, implausible.yaml, removed)."""
    frame = drop_implausible(load_shared_ops(vendors=True))
    return frame[~frame["device"].isin(HELD_OUT + tuple(exclude))]


def refit(out_dir: Path = PROFILE_DIR, exclude: tuple[str, ...] = (), chips_only: bool = False) -> list[Path]:
    if set(HELD_OUT) & set(VENDOR_HARDWARE_NAMES.values()) | set(HELD_OUT) & set(HARDWARE_NAMES.values()):
        raise InvalidInputError(f"{HELD_OUT} are held out and may not be fitted")
    frame = measured_frame(exclude)
    pooled = [n for n in sorted(set(HARDWARE_NAMES.values())) if n not in exclude]
    vendors = [n for n in sorted(set(VENDOR_HARDWARE_NAMES.values())) if n not in exclude]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    gemm_launch_s = {}  # each chip's bf16 GEMM fixed cost: the unit of the generic MoE fixed cost
    for name in pooled + vendors:
        chip = load_chip(name)
        profile = fit_chip_profile(frame, chip, VENDOR_SOURCES.get(name, SOURCE))
        if "bf16" in profile["gemm"]:
            gemm_launch_s[name] = profile["gemm"]["bf16"]["launch_s"]
        written.append(write_profile(profile, out_dir / f"{name}.yaml"))
        print(f"fitted {name}")
    if not chips_only:
        chips = [load_chip(n) for n in pooled]
        generic = fit_generic_profile(frame[frame["device"].isin(pooled)], chips,
                                      f"pooled fit over {', '.join(pooled)}; " + SOURCE, gemm_launch_s)
        written.append(write_profile(generic, out_dir / "generic.yaml"))
        print("fitted generic")
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROFILE_DIR)
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args()
    refit(args.out, tuple(args.exclude))


if __name__ == "__main__":
    main()
