"""Coverage of the 90% error bands on a pinned subset of ../shared/calibration (full run: bench/accuracy_bands.py).

Chips are held out: each chip's residuals are scored against bands rebuilt from the other chips'
(the situation of a user's chip that the band data never saw). On the full data the pooled
coverage is 0.90-0.94 per source (docs/bands.md); on these few hundred rows per chip the
sampling error is a few points, so the check is 0.85-0.97.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokenfab.errors import DataFileError

pytestmark = pytest.mark.calibration


@pytest.fixture(scope="module")
def shared_dir() -> Path:
    from tokenfab.calibrate.measurements import shared_calibration_dir

    try:
        return shared_calibration_dir()
    except DataFileError as exc:
        pytest.skip(f"shared/calibration is absent: {exc}")


@pytest.fixture(scope="module")
def pinned_ops(shared_dir):
    from tokenfab.calibrate.fit_bands import subsample
    from tokenfab.calibrate.measurements import load_shared_ops

    return subsample(load_shared_ops(shared_dir), 300, np.random.default_rng(1))


def _pooled(cov: pd.DataFrame, source: str) -> float:
    return float(cov[(cov["family"] == "all") & (cov["source"] == source)]["coverage"].iloc[0])


def test_inherited_bands_cover_held_out_chips(pinned_ops):
    """Each measured chip predicted with each other chip's shipped profile (what inheritance does)."""
    from tokenfab.calibrate.band_coverage import loco_coverage
    from tokenfab.calibrate.fit_bands import _resolved, _residual_frame
    from tokenfab.calibrate.validate import predict_measurements
    from tokenfab.cost.profile import PROFILE_DIR
    from tokenfab.hardware.catalog import load_chip, read_yaml

    chips = sorted(pinned_ops["device"].unique())
    parts = []
    for target in chips:
        for ref in chips:
            if ref != target:
                cc = _resolved(load_chip(target), read_yaml(PROFILE_DIR / f"{ref}.yaml"), "inherited", ref)
                rows = pinned_ops[pinned_ops["device"] == target]
                parts.append(_residual_frame(predict_measurements(rows, lambda _d, _c=cc: _c), "inherited", f"{target}<-{ref}"))
    cov = loco_coverage(pd.concat(parts, ignore_index=True), 0.9)
    assert 0.85 <= _pooled(cov, "inherited") <= 0.97


def test_generic_bands_cover_held_out_chips(pinned_ops):
    """Leave-one-chip-out generic profiles (refitted on the subset) scored against bands without the chip."""
    from tokenfab.calibrate.band_coverage import loco_coverage
    from tokenfab.calibrate.fit_bands import generic_residuals
    from tokenfab.hardware.catalog import load_chip

    res = generic_residuals(pinned_ops, [load_chip(c) for c in sorted(pinned_ops["device"].unique())])
    cov = loco_coverage(res, 0.9)
    assert 0.85 <= _pooled(cov, "generic") <= 0.97
    wide = cov[cov["family"] == "all"].set_index("source")["median_width_frac"]
    assert wide["generic"] > 0  # a real interval


def test_shipped_serving_bands_cover_pinned_runs(shared_dir):
    """The shipped bands (op tables and end-to-end scales) on 24 pinned serving rows: a change to the
    serving or cost models that breaks their coverage fails here until the band data is regenerated."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from accuracy_serving import concurrency_jobs

    from tokenfab import api

    jobs, _ = concurrency_jobs(shared_dir)
    rng = np.random.default_rng(2)
    picked = [jobs[i] for i in rng.choice(len(jobs), 24, replace=False)]
    inside = {"ttft": [], "tpot": []}
    for job in picked:
        s = api.simulate(**job["kwargs"]).summary
        for metric in inside:
            if f"{metric}_ms" in job["measured"] and s["completed"]:
                m = job["measured"][f"{metric}_ms"][0] / 1e3
                band = s[f"{metric}_s"]
                inside[metric].append(band["mean_lo"] <= m <= band["mean_hi"])
    for metric, hits in inside.items():
        assert len(hits) >= 20, metric
        assert np.mean(hits) >= 0.75, (metric, np.mean(hits))
