"""Design-space sweeps: chip-spec knobs around a base chip, scored by serving and silicon cost."""

from tokenfab.sweep.knobs import KnobRange, apply_knobs, knob_names, parse_vary
from tokenfab.sweep.run import SweepResult, design_points, run_sweep

__all__ = ["KnobRange", "SweepResult", "apply_knobs", "design_points", "knob_names", "parse_vary", "run_sweep"]
