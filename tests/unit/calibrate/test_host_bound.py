"""Host-bound collective measurements (calibrate/host_bound.yaml) stay out of the chip's profile."""

import pandas as pd
import pytest

from tokenfab import api
from tokenfab.calibrate.host_bound import drop_host_bound, host_bound_group_sizes
from tokenfab.cost.collectives import flat_time_s
from tokenfab.cost.profile import CollectiveParams
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.unit


def test_l40s_groups_beyond_a_pair_are_host_bound():
    assert host_bound_group_sizes()["l40s"] == (4, 8)


def test_drop_removes_only_that_chips_host_bound_group_sizes():
    rows = pd.DataFrame({"device": ["l40s"] * 4 + ["h100-sxm"] * 2, "op": ["all_reduce"] * 3 + ["gemm", "all_reduce", "all_reduce"],
                         "num_devices": [2.0, 4.0, 8.0, float("nan"), 4.0, 8.0]})
    kept = drop_host_bound(rows)
    assert kept["device"].tolist() == ["l40s", "l40s", "h100-sxm", "h100-sxm"]  # another chip keeps every size
    assert kept["num_devices"].fillna(0).tolist() == [2.0, 0.0, 4.0, 8.0]


def test_host_bound_rows_are_scored_in_their_own_group():
    from tokenfab.calibrate.validate import HOST_BOUND_GROUP, predict_measurements

    rows = pd.DataFrame({"device": ["l40s", "l40s"], "op": ["all_reduce", "all_reduce"], "num_devices": [2.0, 8.0],
                         "message_bytes": [2.0**20] * 2, "time_s": [1e-4, 1e-3]})
    assert predict_measurements(rows)["group"].tolist() == ["collectives", HOST_BOUND_GROUP]


def test_shipped_l40s_profile_has_no_host_bound_fits():
    import yaml

    from tokenfab.cost.profile import PROFILE_DIR

    profile = yaml.safe_load((PROFILE_DIR / "l40s.yaml").read_text())
    for name, by_size in profile["collectives"].items():
        assert set(by_size) == {2}, name


def test_eight_l40s_all_reduce_runs_the_pair_fit_over_eight_ring_steps():
    """Resolution falls back to the 2-GPU fit; the ring still has 2(n-1) steps and 2(n-1)/n bus bytes at n = 8."""
    import yaml

    from tokenfab.cost.profile import PROFILE_DIR

    fit = yaml.safe_load((PROFILE_DIR / "l40s.yaml").read_text())["collectives"]["all_reduce"][2]
    params = CollectiveParams(**{k: v for k, v in fit.items() if k != "fit"})
    link = load_chip("l40s").scale_up.bandwidth_bytes_per_s.value
    message = 8 * 2**20
    expected, _ = flat_time_s("all_reduce", 8, message, link, params)
    got = api.op("allreduce", "l40s", devices=8, bytes=message).cost.time_s
    assert got == pytest.approx(expected, rel=1e-9)
    assert got > api.op("allreduce", "l40s", devices=2, bytes=message).cost.time_s  # more bus bytes per device
