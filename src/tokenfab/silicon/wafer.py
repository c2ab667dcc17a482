"""Dies per wafer: how many candidate dies a round wafer yields before any defect.

The count drives the wafer share of a chip's cost, so it has to treat large dies
honestly: a reticle-sized AI die loses a big fraction of the wafer to the circular
edge. We use the textbook estimate (Hennessy & Patterson, *Computer Architecture: A
Quantitative Approach*, ch. 1 "Cost of an Integrated Circuit"):

    DPW = pi * (d/2)^2 / S  -  pi * d / sqrt(2 * S)

with d the wafer diameter and S the die area. The first term is wafer area over die
area; the second subtracts the partial dies along the circumference. The raw formula
ignores scribe lines (saw streets between dies) and the edge-exclusion ring that a
fab does not print on; we model both by shrinking the usable diameter by twice the
exclusion and growing each die by one scribe width in each direction.

Lengths here are millimetres and areas mm^2: that is how foundries, die-shot
analyses and the chip catalog (`die_area_mm2`) quote them, and every name carries
its unit.
"""

from __future__ import annotations

import math

from tokenfab.errors import InvalidInputError


def gross_dies_per_wafer(
    die_area_mm2: float,
    *,
    wafer_diameter_mm: float = 300.0,
    edge_exclusion_mm: float = 0.0,
    scribe_width_mm: float = 0.0,
    die_aspect_ratio: float = 1.0,
) -> float:
    """Estimated whole dies per wafer (a real number; callers floor it for counting).

    `die_aspect_ratio` is width/height; with a scribe line the stepped area
    (w + s) * (h + s) depends on it, without one only the area matters.
    Returns 0 when the die is too large for the usable wafer.
    """
    if die_area_mm2 <= 0:
        raise InvalidInputError(f"die area must be positive, got {die_area_mm2} mm^2")
    if wafer_diameter_mm <= 0:
        raise InvalidInputError(f"wafer diameter must be positive, got {wafer_diameter_mm} mm")
    if edge_exclusion_mm < 0 or scribe_width_mm < 0:
        raise InvalidInputError("edge exclusion and scribe width cannot be negative")
    if die_aspect_ratio <= 0:
        raise InvalidInputError(f"die aspect ratio must be positive, got {die_aspect_ratio}")
    usable_diameter_mm = wafer_diameter_mm - 2.0 * edge_exclusion_mm
    if usable_diameter_mm <= 0:
        raise InvalidInputError(
            f"edge exclusion {edge_exclusion_mm} mm leaves nothing of a {wafer_diameter_mm} mm wafer"
        )
    width_mm = math.sqrt(die_area_mm2 * die_aspect_ratio)
    height_mm = die_area_mm2 / width_mm
    stepped_area_mm2 = (width_mm + scribe_width_mm) * (height_mm + scribe_width_mm)
    area_term = math.pi * (usable_diameter_mm / 2.0) ** 2 / stepped_area_mm2
    edge_term = math.pi * usable_diameter_mm / math.sqrt(2.0 * stepped_area_mm2)
    return max(0.0, area_term - edge_term)


def whole_dies_per_wafer(die_area_mm2: float, **kwargs: float) -> int:
    """`gross_dies_per_wafer` rounded down: a fraction of a die is not a die."""
    return math.floor(gross_dies_per_wafer(die_area_mm2, **kwargs))
