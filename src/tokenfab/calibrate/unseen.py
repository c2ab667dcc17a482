"""Leave-one-chip-out: how the tool predicts a chip it never saw measured, the one definition.

The leave-one-chip-out figures (bench/accuracy.py's '-unseen' groups, bench/accuracy_moe.py's
'moe-layer:unseen-chip', `calibrate.residuals`' unseen predictions) resolve the held chip here, so
they cannot disagree about what "unseen" means:

- its efficiencies come from a generic profile fitted on the OTHER chips' rows only
  (`fit_generic_profile`), used as the profile and as the fallback behind it, so no kernel class
  falls through to the shipped generic profile (which was fitted on the held chip too);
- nothing else of the held chip's measurements is used: not its own fitted profile (its dense
  GEMM fits included, which the MoE format scaling would otherwise read), not an efficiency
  reference's profile;
- only its spec sheet: peaks, bandwidths, SRAM and its partitions, compute units, and its clock
  (`ChipSpec.clock_hz`), which is the unit the pooled MoE fixed cost is counted in
  (`ResolvedProfile.moe`), and compute units as `resolve_profile` counts them for a chip without a
  profile (its spec'd count, else scaled by bf16 peak).

Two earlier definitions differed on exactly these points: bench/accuracy.py dropped the clock (the
pooled MoE fixed cost then took the pooled bf16 GEMM fixed cost as its cycle, 22.1% on ops_moe.csv),
bench/accuracy_moe.py kept the held chip's own dense fits (B200's own FP4/BF16 GEMM efficiency ratio
scaled the pooled MoE curve, 16.9%); here both read one figure (16.6% as first defined, 16.4% with
`cost.moe.resolved_moe_form`'s padded w4a8 work count; see docs/accuracy.md).
"""

from __future__ import annotations

import pandas as pd

from tokenfab.calibrate.profiles import fit_generic_profile
from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.profile import GENERIC, EfficiencyProfile, ResolvedProfile, chip_compute_units, profile_from_dict
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.catalog import load_chip
from tokenfab.hardware.spec import ChipSpec


def unseen_resolution(chip: ChipSpec, generic_without: EfficiencyProfile, note: str = "") -> ResolvedProfile:
    """`chip` resolved through `generic_without` (a pooled fit that never saw it) and its own spec only."""
    return ResolvedProfile(generic_without, generic_without, GENERIC, chip_compute_units(chip, generic_without),
                           note or f"generic fitted without {chip.name}", clock_hz=chip.clock)


def fit_without(frame: pd.DataFrame, held: str, pool: list[str]) -> EfficiencyProfile:
    """The generic profile fitted on the rows of `pool`'s chips other than `held` (the held chip's rows dropped
    before fitting, whatever `frame` holds)."""
    others = [load_chip(d) for d in pool if d != held]
    if not others:
        raise InvalidInputError(f"leave-one-chip-out of {held} needs at least one other chip to fit on, got {pool}")
    rows = frame[frame["device"].isin([c.name for c in others])]
    return profile_from_dict(fit_generic_profile(rows, others, f"generic without {held}"), f"generic without {held}")


def unseen_chip_cost(frame: pd.DataFrame, held: str, pool: list[str]) -> ChipCost:
    """The ChipCost of chip `held` as the tool would predict it had it never been measured (module doc)."""
    chip = load_chip(held)
    return ChipCost(chip, unseen_resolution(chip, fit_without(frame, held, pool)))
