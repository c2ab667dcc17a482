"""Vendor measurements (shared/calibration/vendors) against the catalog and the fitted profiles."""

import numpy as np
import pytest

from tokenfab.calibrate.measurements import HARDWARE_NAMES, VENDOR_HARDWARE_NAMES, load_shared_ops, load_vendor_ops
from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.gemm import gemm_work
from tokenfab.cost.profile import load_profile
from tokenfab.errors import DataFileError
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.calibration


@pytest.fixture(scope="module")
def vendor_ops():
    try:
        return load_vendor_ops()
    except (DataFileError, FileNotFoundError) as exc:
        pytest.skip(f"shared/calibration/vendors not available ({exc})")


def test_every_vendor_chip_has_rows(vendor_ops):
    assert set(VENDOR_HARDWARE_NAMES.values()) <= set(vendor_ops["device"])
    comm = vendor_ops[(vendor_ops["device"] == "ascend-910b") & vendor_ops["op"].isin(["all_reduce", "all_gather"])]
    assert set(comm["num_devices"]) == {2.0, 4.0, 8.0}


@pytest.fixture(scope="module")
def all_ops():
    try:
        return load_shared_ops(vendors=True)
    except (DataFileError, FileNotFoundError) as exc:
        pytest.skip(f"shared/calibration not available ({exc})")


@pytest.mark.parametrize("name", sorted(set(VENDOR_HARDWARE_NAMES.values()) | set(HARDWARE_NAMES.values())))
def test_no_gemm_row_beats_the_catalog_peak(all_ops, name):
    """Measured TFLOP/s above the catalog's dense peak would mean a wrong peak (910B at 256 did)."""
    chip = load_chip(name)
    cc = ChipCost(chip, None)
    rows = all_ops[(all_ops["device"] == name) & (all_ops["op"] == "gemm")]
    frac = [gemm_work(cc, int(r.m), int(r.n), int(r.k), r.dtype, r.weight_dtype, r.variant or "").flops
            / r.time_s / gemm_work(cc, int(r.m), int(r.n), int(r.k), r.dtype, r.weight_dtype, r.variant or "").peak
            for r in rows.fillna({"variant": ""}).itertuples()]
    assert len(frac) > 50
    assert max(frac) <= 1.0, f"{name}: a GEMM reaches {max(frac):.2f} of the catalog peak"


@pytest.mark.parametrize("name", sorted(set(VENDOR_HARDWARE_NAMES.values())))
def test_vendor_profiles_exist_and_efficiencies_are_fractions(name):
    profile = load_profile(name)
    assert profile is not None
    for table in (profile.gemm, profile.attention_prefill, profile.attention_decode):
        for params in table.values():
            assert 0 < params.compute_eff <= 1 and 0 < params.memory_eff <= 1
    assert np.all([q["mape"] < 0.5 for q in _fit_mapes(name)])


def _fit_mapes(name):
    import yaml

    from tokenfab.cost.profile import PROFILE_DIR

    data = yaml.safe_load((PROFILE_DIR / f"{name}.yaml").read_text())
    return [v["fit"] for t in ("gemm", "attention_prefill", "attention_decode") for v in data.get(t, {}).values()]


def test_h200_is_never_fitted():
    assert load_profile("h200-sxm") is None


def test_full_mesh_model_explains_hccl_scaling_with_group_size(vendor_ops):
    """One parameter set over 2, 4 and 8 NPUs: the direct full-mesh algorithm (n-1 links at once)
    must fit HCCL all-reduce far better than a ring over one link (measured 11.5% vs 45% MAPE)."""
    from tokenfab.calibrate.fit import CollectiveSamples, fit_collective
    from tokenfab.calibrate.profiles import collective_samples

    chip = load_chip("ascend-910b")
    s = collective_samples(vendor_ops[vendor_ops["device"] == "ascend-910b"], chip)["all_reduce"]
    assert set(s.num_devices) == {2.0, 4.0, 8.0} and np.all(s.mesh() == 8)
    _, mesh_q = fit_collective(s)
    ring = CollectiveSamples(s.name, s.num_devices, s.message_bytes, s.link_bw, s.time_s, np.zeros(len(s.time_s)))
    _, ring_q = fit_collective(ring)
    assert mesh_q.mape < 0.2 and mesh_q.mape < 0.5 * ring_q.mape
