"""Decode steps replayed as captured CUDA graphs, and the kernel floor they pay.

Every serving engine we model captures its decode-only iterations as CUDA graphs (vLLM, SGLang,
TensorRT-LLM's PyTorch backend) and replays them with one launch, so a small kernel inside costs its
device-side floor. The operator tables the profiles are fitted on time kernels launched one by one from
Python (aiconfigurator's collectors), and their small-kernel floor includes that per-call host time: the
per-tensor FP8 GEMM's floor is ~12 us on B200, H100 and L40S alike, though the chips differ 3x in speed.
A floor seen in the op tables cannot be split into host and device parts, so the floor of a replayed
kernel is fitted per chip on measured serving runs, jointly with the engines' host time per step
(`bench/fit_engine_overheads.py`: fit on half the aggregated fixed-concurrency runs, scored on the other
half), and stored with its provenance in `graph_replay.yaml`. A chip whose fit found the op-table floors
right keeps them; a chip without a fit of its own takes its `efficiency_reference`'s (as it takes that
chip's profile), or else keeps the op-table floors.

The floor applies to GEMM, attention and elementwise kernels (fused MoE kernels and collectives keep
their fits: see `ResolvedProfile.with_launch_floor`). Mixed steps (prefill chunks beside decodes) run
eagerly in TensorRT-LLM and SGLang and keep the op-table floors. Decode-only steps use the replay floor
at any batch size: past the engines' largest captured size (128-512) decode kernels are long enough that
the floor is a small part of them.
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from tokenfab.hardware.spec import ChipSpec

DATA_PATH = Path(__file__).with_name("graph_replay.yaml")


@functools.lru_cache(maxsize=1)
def fitted_floors() -> dict[str, float]:
    """Chip name -> fitted kernel floor of CUDA-graph replay (seconds); empty without the data file."""
    if not DATA_PATH.exists():
        return {}
    data = yaml.safe_load(DATA_PATH.read_text()) or {}
    return {name: float(v["kernel_floor_s"]) for name, v in (data.get("chips") or {}).items()
            if v.get("kernel_floor_s") is not None}


def kernel_floor_s(chip: ChipSpec) -> float | None:
    """The chip's fitted replay floor (its efficiency reference's if it has none), or None: op-table floors."""
    floors = fitted_floors()
    if chip.name in floors:
        return floors[chip.name]
    return floors.get(chip.efficiency_reference) if chip.efficiency_reference else None
