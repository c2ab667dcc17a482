"""`tokenfab sweep --workers N / --ray`: the outcome does not depend on where the points ran."""

from __future__ import annotations

import json
import math

import pytest

from tokenfab import api
from tokenfab.cli.main import run
from tokenfab.errors import InvalidInputError, MissingDependencyError
from tokenfab.hardware.catalog import load_chip
from tokenfab.sweep.distribute import _chunks, memory_order
from tokenfab.sweep.knobs import apply_knobs

pytestmark = pytest.mark.unit

VARY = ["memory.bandwidth_bytes_per_s=1e12:6e12:2", "memory.capacity_bytes=12e9:120e9:2",
        "onchip_sram_bytes=10e6:500e6:2", "peak_flop_per_s.bf16=300e12:1500e12:2", "die_area_mm2=400:800:2"]


def _without_wall(result) -> dict:
    d = result.to_dict()
    d.pop("sweep_wall_s")
    return d


def test_chunks_are_contiguous_and_cover_every_point():
    items = list(range(11))
    assert _chunks(items, 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert _chunks(items[:2], 4) == [[0], [1]]


def test_points_are_chunked_by_memory_totals():
    base = load_chip("h100-sxm")
    chips = [apply_knobs(base, {"memory.capacity_bytes": c}) for c in (96e9, 40e9, 96e9, 64e9)]
    chips.append(apply_knobs(base, {"memory.bandwidth_bytes_per_s": 2e12}))  # the base's own (reported) memory
    assert memory_order(chips) == [1, 3, 4, 0, 2]  # 40, 64, 85.5 (an H100 as it reports itself), 96, 96 GB
    assert 80e9 < base.device_memory_bytes < 96e9


def test_two_workers_give_the_points_front_and_sensitivities_of_one():
    kw = dict(base="h100-sxm", vary=VARY, model="llama-3.1-8b", sample="sobol", points=12, seed=3)
    one, two = api.sweep(**kw), api.sweep(**kw, workers=2)
    a, b = _without_wall(one), _without_wall(two)
    assert sum(p["tokens_per_s_per_chip"] is not None for p in a["points"]) >= 6  # the sample has feasible points
    assert len({p["tp"] for p in a["points"]}) >= 2  # at more than one best TP degree
    assert a["points"] == b["points"]  # exact: each chunk records on the sweep's first point
    assert a["pareto"] == b["pareto"] and len(a["pareto"]) >= 1
    assert json.dumps(a["sensitivity"]) == json.dumps(b["sensitivity"])
    assert a == b


def test_bad_workers_and_missing_ray_are_one_line_errors(capsys):
    with pytest.raises(InvalidInputError, match="workers must be >= 1"):
        api.sweep(base="h100-sxm", vary=VARY[:1], workers=0)
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="ray"):
            api.sweep(base="h100-sxm", vary=VARY[:1], ray="local")
        with pytest.raises(SystemExit) as exit_info:
            run(["sweep", "--base", "h100-sxm", "--vary", VARY[0], "--ray", "local"])
        assert exit_info.value.code == 2 and "ray" in capsys.readouterr().err


def test_cli_workers_flag(capsys):
    run(["sweep", "--base", "h100-sxm", "--vary", "memory.bandwidth_bytes_per_s=2e12:4e12:3", "--workers", "2",
         "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["num_points"] == 3 and all(math.isfinite(p["tokens_per_s_per_chip"]) for p in d["points"])
    rates = [p["tokens_per_s_per_chip"] for p in d["points"]]
    assert rates == sorted(rates) and rates[0] < rates[-1]  # more bandwidth, more tokens
