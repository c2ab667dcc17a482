"""Refit the catalog's efficiency profiles from ../shared/calibration.

    python -m tokenfab.calibrate.fit_shared [--out DIR] [--exclude CHIP]

Writes one profile per measured chip and the pooled 'generic' profile into
`hardware/profiles/`. `--exclude` leaves a chip out of the generic fit (used by
bench/accuracy.py to measure accuracy on a chip the tool has not seen).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenfab.calibrate.measurements import HARDWARE_NAMES, load_shared_ops
from tokenfab.calibrate.profiles import fit_chip_profile, fit_generic_profile, write_profile
from tokenfab.cost.profile import PROFILE_DIR
from tokenfab.hardware.catalog import load_chip

SOURCE = ("fitted from shared/calibration ops_gemm.csv, ops_attention.csv, ops_comm.csv, ops_moe.csv: NVIDIA aiconfigurator-core "
          "0.12.0 measured tables (TensorRT-LLM 1.0.0 / 1.3.0rc20 kernels, NCCL 2.27-2.29), Apache-2.0")


def refit(out_dir: Path = PROFILE_DIR, exclude: tuple[str, ...] = (), chips_only: bool = False) -> list[Path]:
    frame = load_shared_ops()
    names = [n for n in sorted(set(HARDWARE_NAMES.values())) if n not in exclude]
    chips = [load_chip(n) for n in names]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for chip in chips:
        written.append(write_profile(fit_chip_profile(frame, chip, SOURCE), out_dir / f"{chip.name}.yaml"))
        print(f"fitted {chip.name}")
    if not chips_only:
        generic = fit_generic_profile(frame, chips, f"pooled fit over {', '.join(names)}; " + SOURCE)
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
