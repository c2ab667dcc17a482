"""Dies per wafer against published worked examples."""

import math

import pytest

from tokenfab.errors import InvalidInputError
from tokenfab.silicon import gross_dies_per_wafer, whole_dies_per_wafer

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("die_area_mm2", "expected"),
    [
        # Hennessy & Patterson, Computer Architecture: A Quantitative Approach (5th ed.), ch. 1
        # "Cost of an Integrated Circuit" worked example: dies 1.5 cm and 1.0 cm on a side on a
        # 30 cm wafer give 270 and 640 dies per wafer.
        (225.0, 270),
        (100.0, 640),
        # Same chapter, Figure 1.15: Intel Sandy Bridge, 216 mm^2 on 300 mm, "the formula for dies
        # per wafer estimates 282" (http://what-when-how.com/Tutorial/topic-283iss/
        # Computer-Architecture-A-Quantitative-Approach-58.html).
        (216.0, 282),
    ],
)
def test_hennessy_patterson_examples(die_area_mm2, expected):
    assert round(gross_dies_per_wafer(die_area_mm2, wafer_diameter_mm=300.0)) == expected


def test_formula_by_hand():
    # pi * 150^2 / 100 - pi * 300 / sqrt(200) = 706.858 - 66.643
    assert gross_dies_per_wafer(100.0) == pytest.approx(706.8583 - 66.6432, abs=1e-3)
    assert whole_dies_per_wafer(100.0) == 640


def test_edge_exclusion_is_a_smaller_wafer():
    assert gross_dies_per_wafer(100.0, edge_exclusion_mm=5.0) == pytest.approx(
        gross_dies_per_wafer(100.0, wafer_diameter_mm=290.0)
    )


def test_scribe_line_grows_the_stepped_die():
    # a 10 x 10 mm die with a 0.1 mm street steps like a 10.1 x 10.1 mm die
    assert gross_dies_per_wafer(100.0, scribe_width_mm=0.1) == pytest.approx(gross_dies_per_wafer(10.1**2))
    assert gross_dies_per_wafer(100.0, scribe_width_mm=0.1) < gross_dies_per_wafer(100.0)


def test_aspect_ratio_matters_only_with_scribe_lines():
    assert gross_dies_per_wafer(600.0, die_aspect_ratio=2.0) == pytest.approx(gross_dies_per_wafer(600.0))
    wide = gross_dies_per_wafer(600.0, die_aspect_ratio=3.0, scribe_width_mm=0.2)
    square = gross_dies_per_wafer(600.0, scribe_width_mm=0.2)
    assert wide < square  # more perimeter, more street area


def test_die_larger_than_wafer_gives_zero():
    assert gross_dies_per_wafer(math.pi * 150.0**2) == 0.0
    assert whole_dies_per_wafer(50_000.0) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"die_area_mm2": 0.0},
        {"die_area_mm2": 100.0, "wafer_diameter_mm": -1.0},
        {"die_area_mm2": 100.0, "edge_exclusion_mm": 150.0},
        {"die_area_mm2": 100.0, "scribe_width_mm": -0.1},
        {"die_area_mm2": 100.0, "die_aspect_ratio": 0.0},
    ],
)
def test_bad_geometry_is_an_input_error(kwargs):
    with pytest.raises(InvalidInputError):
        gross_dies_per_wafer(**kwargs)
