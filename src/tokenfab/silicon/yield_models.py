"""Die-yield models: the fraction of dies with no fatal defect.

All four classic models are functions of one number, the mean count of fatal defects
per die x = D0 * A (D0 in defects/cm^2, A the die area in cm^2); they differ in how
defects are assumed to cluster across a wafer:

    poisson            Y = exp(-x)                      defects independent; pessimistic for big dies
    murphy             Y = ((1 - exp(-x)) / x)^2        Murphy 1964, triangular spread of D0
    seeds              Y = 1 / (1 + x)                  exponential spread of D0 (= neg. binomial, alpha 1)
    negative-binomial  Y = (1 + x / alpha)^(-alpha)     clustering alpha; alpha -> inf gives Poisson

(sources: shared/reference/silicon_and_dc_costs.csv rows `yield_model_*`). A D0 is
only meaningful together with the model it was fitted under, which is why the node
data records both and why `defect_density_from_yield` inverts each model exactly.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from scipy.optimize import brentq

from tokenfab.units import MM2_PER_CM2
from tokenfab.errors import InvalidInputError, UnknownNameError

YieldModel = Literal["poisson", "murphy", "seeds", "negative-binomial"]
"""Names of the supported die-yield models."""

YIELD_MODELS: tuple[str, ...] = get_args(YieldModel)



def _check_model(model: str, clustering_alpha: float | None) -> None:
    if model not in YIELD_MODELS:
        raise UnknownNameError("yield model", model, YIELD_MODELS)
    if model == "negative-binomial" and (clustering_alpha is None or clustering_alpha <= 0):
        raise InvalidInputError(
            f"the negative-binomial yield model needs a positive clustering alpha, got {clustering_alpha}"
        )


def yield_from_defects_per_die(defects_per_die: float, model: str, clustering_alpha: float | None = None) -> float:
    """Die yield (0..1] for a mean of `defects_per_die` fatal defects on each die."""
    _check_model(model, clustering_alpha)
    x = defects_per_die
    if x < 0:
        raise InvalidInputError(f"mean defects per die cannot be negative, got {x}")
    if model == "poisson":
        return math.exp(-x)
    if model == "murphy":
        # (1 - e^-x)/x via expm1 stays accurate as x -> 0, where the yield -> 1.
        ratio = 1.0 if x < 1e-12 else -math.expm1(-x) / x
        return ratio * ratio
    if model == "seeds":
        return 1.0 / (1.0 + x)
    assert clustering_alpha is not None  # checked above
    return (1.0 + x / clustering_alpha) ** (-clustering_alpha)


def die_yield_frac(
    defect_density_per_cm2: float,
    die_area_mm2: float,
    model: str,
    clustering_alpha: float | None = None,
) -> float:
    """Die yield for defect density D0 (per cm^2) and die area (mm^2) under `model`."""
    if defect_density_per_cm2 < 0:
        raise InvalidInputError(f"defect density cannot be negative, got {defect_density_per_cm2}/cm^2")
    if die_area_mm2 <= 0:
        raise InvalidInputError(f"die area must be positive, got {die_area_mm2} mm^2")
    defects_per_die = defect_density_per_cm2 * die_area_mm2 / MM2_PER_CM2
    return yield_from_defects_per_die(defects_per_die, model, clustering_alpha)


def defect_density_from_yield(
    yield_frac: float,
    die_area_mm2: float,
    model: str,
    clustering_alpha: float | None = None,
) -> float:
    """The D0 (defects/cm^2) at which `model` predicts `yield_frac` for this die area.

    This is how a D0 is derived where a foundry publishes none (SMIC N+2): from a
    reported product yield and the die area. Poisson, Seeds and negative binomial
    invert in closed form; Murphy's model is monotone in x, so a bracketed root
    finder inverts it to machine precision.
    """
    _check_model(model, clustering_alpha)
    if not 0.0 < yield_frac <= 1.0:
        raise InvalidInputError(f"yield must lie in (0, 1], got {yield_frac}")
    if die_area_mm2 <= 0:
        raise InvalidInputError(f"die area must be positive, got {die_area_mm2} mm^2")
    if yield_frac == 1.0:
        return 0.0
    if model == "poisson":
        defects_per_die = -math.log(yield_frac)
    elif model == "seeds":
        defects_per_die = 1.0 / yield_frac - 1.0
    elif model == "negative-binomial":
        assert clustering_alpha is not None
        defects_per_die = clustering_alpha * (yield_frac ** (-1.0 / clustering_alpha) - 1.0)
    else:
        # Murphy's yield falls like 1/x^2 for large x, so x = 4/sqrt(Y) brackets the root.
        upper = 4.0 / math.sqrt(yield_frac) + 1.0
        defects_per_die = brentq(lambda x: yield_from_defects_per_die(x, "murphy") - yield_frac, 0.0, upper, xtol=1e-14)
    return defects_per_die * MM2_PER_CM2 / die_area_mm2
