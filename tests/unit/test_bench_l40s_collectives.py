"""bench/l40s_collectives.py: the per-rank PCIe all-reduce model, the serving screen and the step-excess slope."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from l40s_collectives import model_time, per_rank_time, serving_screen, step_excess  # noqa: E402

from tokenfab.calibrate.fit import CollectiveSamples  # noqa: E402
from tokenfab.cost.collectives import flat_time_s  # noqa: E402
from tokenfab.cost.profile import CollectiveParams  # noqa: E402

pytestmark = pytest.mark.unit

PAIR = CollectiveParams(small_latency_s=5e-6, small_bus_eff=0.2, latency_s=2e-5, bus_eff=0.8, per_step_latency_s=1e-6)
THETA = np.array([PAIR.small_latency_s, PAIR.small_bus_eff, PAIR.latency_s, PAIR.bus_eff, PAIR.per_step_latency_s])
LINK = 32e9


def _samples(n: list[int], message: list[float]) -> CollectiveSamples:
    return CollectiveSamples("all_reduce", np.array(n, float), np.array(message), np.full(len(n), LINK), np.ones(len(n)))


def test_per_rank_term_leaves_a_pair_alone_and_divides_the_bandwidth_of_larger_groups():
    """c = 1: a pair keeps the link (1 + 1 x 0), eight ranks see 1/7 of it (1 + 1 x 6); 8 MiB messages."""
    message = 8 * 2.0**20
    got = per_rank_time(THETA, 1.0, _samples([2, 8], [message, message]))
    assert got[0] == pytest.approx(flat_time_s("all_reduce", 2, message, LINK, PAIR)[0], rel=1e-12)
    assert got[1] == pytest.approx(flat_time_s("all_reduce", 8, message, LINK / 7.0, PAIR)[0], rel=1e-12)


def test_serving_screen_reproduces_the_rows_under_the_pair_model(tmp_path):
    """With c = 0 and the pair fit for every size, no model adds time: each MAPE is the rows' own error. Two TP8 rows:
    batch 500 at a simulated 250 ms step (2000 tokens/s predicted) measured 1600 (+25%), and batch 300 at 200 ms
    (1500 predicted) measured 1500 (0%): MAPE 12.5%."""
    rows = pd.DataFrame({"device": ["l40s", "l40s", "h100-sxm"], "tp": [8, 8, 8], "error": ["", "", ""],
                         "mean_batch": [500.0, 300.0, 10.0], "predicted_step_ms": [250.0, 200.0, 1.0],
                         "measured": [1600.0, 1500.0, 1.0], "measured_step_ms": [312.5, 200.0, 1.0]})
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    models = {"pair": THETA, "c": 0.0, "sizes": {8: PAIR}}
    table = serving_screen(str(path), models, LINK)
    assert table.loc[8, "rows"] == 2
    for kind in ("pair", "per-rank", "per-size"):
        assert table.loc[8, f"{kind} MAPE"] == pytest.approx(0.125)
    # implied extra per all-reduce: (62.5 ms, 0 ms) over 2 x 80 all-reduces, median 0.1953 ms
    assert table.loc[8, "implied extra per all-reduce ms"] == pytest.approx(62.5 / 160 / 2)
    assert model_time(models, "per-size", np.array([8]), np.array([1e6]), LINK)[0] == pytest.approx(
        flat_time_s("all_reduce", 8, 1e6, LINK, PAIR)[0], rel=1e-12)


def test_step_excess_slope_separates_a_per_step_cost_from_a_per_sequence_one():
    """Excess 5 ms + 0.01 ms per sequence over batches 100-300 (decode-bound 70B rows of v0.14.0): slope 0.01, a
    change of 2 ms, median 7 ms; rows of another release, model, TP1 or a prefill-bound shape are left out."""
    batch = np.array([100.0, 200.0, 300.0])
    base = {"device": "l40s", "dtype": "fp8", "release": "0.14.0", "model": "llama-3.1-70b", "tp": 8, "isl": 128,
            "osl": 2048, "predicted_step_ms": 100.0}
    rows = [{**base, "mean_batch": b, "measured_step_ms": 100.0 + 5.0 + 0.01 * b} for b in batch]
    rows += [{**base, "release": "0.20", "mean_batch": 50.0, "measured_step_ms": 500.0},
             {**base, "model": "llama-3.1-8b", "mean_batch": 50.0, "measured_step_ms": 500.0},
             {**base, "tp": 1, "mean_batch": 50.0, "measured_step_ms": 500.0},
             {**base, "isl": 2048, "osl": 128, "mean_batch": 50.0, "measured_step_ms": 500.0}]
    table = step_excess(pd.DataFrame(rows))
    assert len(table) == 1
    got = table.loc[("l40s", "fp8", 8)]
    assert got["rows"] == 3
    assert got["slope_ms_per_seq"] == pytest.approx(0.01)
    assert got["excess_change_over_batches_ms"] == pytest.approx(2.0)
    assert got["excess_ms"] == pytest.approx(7.0)
