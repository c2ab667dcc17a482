"""Yield models and their inverses against textbook worked examples."""

import pytest

from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.silicon import defect_density_from_yield, die_yield_frac, yield_from_defects_per_die

pytestmark = pytest.mark.unit

# UC Berkeley IEOR 130 (Prof. Leachman), HW 4 solutions, problem 1: die yield for die area A
# (cm^2) and defect density D (/cm^2) under the Poisson, Murphy and Seeds models
# (https://www.coursehero.com/file/49208/hw4solutions/).
LEACHMAN_TABLE = [
    # A cm^2, D /cm^2, Poisson, Murphy, Seeds
    (0.1, 0.5, 0.9512, 0.9514, 0.9524),
    (0.2, 0.5, 0.9048, 0.9056, 0.9091),
    (0.5, 0.5, 0.7788, 0.7829, 0.8000),
    (0.5, 1.0, 0.6065, 0.6193, 0.6667),
    (1.0, 0.75, 0.4724, 0.4949, 0.5714),
    (1.0, 1.0, 0.3679, 0.3996, 0.5000),
    (1.0, 1.5, 0.2231, 0.2682, 0.4000),
    (2.0, 1.5, 0.0498, 0.1003, 0.2500),
]


@pytest.mark.parametrize(("area_cm2", "d0", "poisson", "murphy", "seeds"), LEACHMAN_TABLE)
def test_leachman_yield_table(area_cm2, d0, poisson, murphy, seeds):
    area_mm2 = area_cm2 * 100.0
    assert die_yield_frac(d0, area_mm2, "poisson") == pytest.approx(poisson, abs=5e-5)
    assert die_yield_frac(d0, area_mm2, "murphy") == pytest.approx(murphy, abs=5e-5)
    assert die_yield_frac(d0, area_mm2, "seeds") == pytest.approx(seeds, abs=5e-5)


# Same source, problem 2: the defect density behind an observed die yield ("the Murphy model
# requires iterative trial and error calculations").
LEACHMAN_INVERSE = [
    # A cm^2, die yield, Poisson D, Murphy D
    (0.25, 0.92, 0.3335, 0.3360),
    (0.5, 0.85, 0.3250, 0.3296),
    (0.5, 0.92, 0.1668, 0.1680),
    (1.0, 0.65, 0.4308, 0.4474),
    (1.0, 0.85, 0.1625, 0.1648),
]


@pytest.mark.parametrize(("area_cm2", "die_yield", "poisson_d", "murphy_d"), LEACHMAN_INVERSE)
def test_leachman_inverse(area_cm2, die_yield, poisson_d, murphy_d):
    area_mm2 = area_cm2 * 100.0
    assert defect_density_from_yield(die_yield, area_mm2, "poisson") == pytest.approx(poisson_d, abs=5e-5)
    # the solutions found Murphy's D "by trial and error", stopping within ~1e-4 of the root
    assert defect_density_from_yield(die_yield, area_mm2, "murphy") == pytest.approx(murphy_d, abs=2e-4)


def test_negative_binomial_worked_example():
    # legitlads.com defect-density console: 600 mm^2 at D0 0.1/cm^2 sees 0.60 defects per die;
    # "59% clustered yield (55% Poisson)" with clustering alpha 2.
    # (https://legitlads.com/hub/tools/ai/yield-process/defect-density-calculator)
    assert die_yield_frac(0.1, 600.0, "negative-binomial", 2.0) == pytest.approx(0.5917, abs=5e-4)
    assert die_yield_frac(0.1, 600.0, "poisson") == pytest.approx(0.5488, abs=5e-4)


def test_model_relations():
    x = 0.8
    assert yield_from_defects_per_die(x, "negative-binomial", 1.0) == pytest.approx(
        yield_from_defects_per_die(x, "seeds")
    )
    assert yield_from_defects_per_die(x, "negative-binomial", 1e7) == pytest.approx(
        yield_from_defects_per_die(x, "poisson"), rel=1e-6
    )
    # clustering helps: Poisson <= Murphy <= Seeds for the same mean defect count
    assert yield_from_defects_per_die(x, "poisson") < yield_from_defects_per_die(x, "murphy")
    assert yield_from_defects_per_die(x, "murphy") < yield_from_defects_per_die(x, "seeds")


def test_no_defects_no_loss():
    for model, alpha in [("poisson", None), ("murphy", None), ("seeds", None), ("negative-binomial", 2.0)]:
        assert yield_from_defects_per_die(0.0, model, alpha) == 1.0
        assert defect_density_from_yield(1.0, 500.0, model, alpha) == 0.0


@pytest.mark.parametrize(
    "model,alpha", [("poisson", None), ("murphy", None), ("seeds", None), ("negative-binomial", 0.5)]
)
def test_inverse_round_trip(model, alpha):
    d0 = defect_density_from_yield(0.37, 665.61, model, alpha)
    assert die_yield_frac(d0, 665.61, model, alpha) == pytest.approx(0.37, rel=1e-9)


def test_bad_inputs():
    with pytest.raises(UnknownNameError, match="did you mean murphy"):
        die_yield_frac(0.1, 100.0, "murphey")
    with pytest.raises(InvalidInputError, match="clustering alpha"):
        die_yield_frac(0.1, 100.0, "negative-binomial")
    with pytest.raises(InvalidInputError):
        die_yield_frac(-0.1, 100.0, "poisson")
    with pytest.raises(InvalidInputError):
        defect_density_from_yield(1.5, 100.0, "poisson")
