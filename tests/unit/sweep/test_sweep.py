"""tokenfab sweep: knob parsing, design points, the slow path's equality with plan's capacity, output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tokenfab import api
from tokenfab.cli.main import run
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.hardware.catalog import load_chip
from tokenfab.sweep.analysis import pareto_mask, sensitivity
from tokenfab.sweep.capacity import capacity_at_slo
from tokenfab.sweep.knobs import apply_knobs, parse_vary, silicon_node
from tokenfab.sweep.run import design_points
from tokenfab.workload.hf_config import load_model

pytestmark = pytest.mark.unit

SLO = SLOSpec(ttft_s=2.0, tpot_s=0.05, input_tokens=1024, output_tokens=256)


def test_parse_vary_and_grid():
    r = parse_vary("memory.bandwidth_bytes_per_s=2e12:4e12:3")
    assert r.grid() == [2e12, 3e12, 4e12]
    assert parse_vary("num_compute_units=100:132:3").grid() == [100, 116, 132]
    assert parse_vary("process_node=tsmc-n7,smic-n+2").grid() == ["tsmc-n7", "smic-n+2"]


@pytest.mark.parametrize("text, fragment", [
    ("memory.bandwith=1:2:2", "did you mean memory.bandwidth_bytes_per_s"),
    ("onchip_sram_bytes=4:2:3", "LO <= HI"),
    ("onchip_sram_bytes=a:b", "LO:HI:N"),
    ("onchip_sram_bytes", "FIELD=LO:HI:N"),
    ("process_node=tsmc-n6", "did you mean"),
    ("process_node=tsmc-n10", "no published defect density"),
])
def test_bad_vary_is_one_line_error(text, fragment):
    with pytest.raises((InvalidInputError, UnknownNameError)) as info:
        parse_vary(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_apply_knobs_changes_only_the_knobs():
    base = load_chip("h100-sxm")
    chip = apply_knobs(base, {"memory.bandwidth_bytes_per_s": 5e12, "peak_flop_per_s.bf16": 2e15,
                              "onchip_sram_bandwidth_bytes_per_s": 10e12, "process_node": "tsmc-n7"})
    assert chip.memory_bandwidth_bytes_per_s == 5e12 and chip.peak("bf16") == 2e15
    assert chip.memory_capacity_bytes == base.memory_capacity_bytes and chip.peak("fp8") == base.peak("fp8")
    assert chip.onchip_sram_bandwidth_bytes_per_s.basis == "template" and silicon_node(chip) == "tsmc-n7"
    assert base.memory_bandwidth_bytes_per_s != 5e12  # the base is untouched
    assert silicon_node(base) == "tsmc-n5"  # TSMC 4N is an N5-family node


def test_sobol_and_lhs_are_seeded_and_in_range():
    ranges = [parse_vary("memory.bandwidth_bytes_per_s=1e12:2e12:2"), parse_vary("process_node=tsmc-n7,tsmc-n5")]
    a = design_points(ranges, "sobol", 16, seed=3)
    assert a == design_points(ranges, "sobol", 16, seed=3) and a != design_points(ranges, "sobol", 16, seed=4)
    assert all(1e12 <= p["memory.bandwidth_bytes_per_s"] <= 2e12 for p in a)
    assert {p["process_node"] for p in design_points(ranges, "lhs", 16, seed=0)} == {"tsmc-n7", "tsmc-n5"}


def test_capacity_of_a_catalog_chip_equals_plans_capacity():
    ours = capacity_at_slo(load_chip("h100-sxm"), load_model("llama-3.1-8b"), SLO)
    theirs = api.predicted_capacity("h100-sxm", "llama-3.1-8b", SLO)
    assert ours.tokens_per_s_per_chip == pytest.approx(theirs.tokens_per_s_per_chip, rel=0.01)
    assert ours.avg_power_w_per_chip == pytest.approx(theirs.avg_power_w_per_chip, rel=0.01)
    assert ours.batch > 1 and theirs.source.startswith(f"tokenfab search capacity: tp{ours.tp} batch {ours.batch} ")


def test_pareto_mask_by_hand():
    v = np.array([[1.0, 1.0], [2.0, 0.5], [0.5, 0.5], [np.nan, 3.0], [2.0, 0.5]])
    # equal outputs do not dominate each other: both designs with (2, 0.5) stay on the front
    assert pareto_mask(v, [True, True]).tolist() == [True, True, False, False, True]
    assert pareto_mask(v, [True, False]).tolist() == [False, True, False, False, True]


def test_sensitivity_finds_the_knob_that_matters():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(200, 2))
    s = sensitivity(x, {"y": 3 * x[:, 0] + 0.01 * rng.normal(size=200)}, ["a", "b"])["y"]
    assert s["a"]["spearman"] > 0.99 and abs(s["b"]["spearman"]) < 0.2
    assert s["a"]["src"] == pytest.approx(1.0, abs=0.01)


def test_api_sweep_outputs_move_with_their_knobs():
    r = api.sweep(base="h100-sxm", vary=["memory.bandwidth_bytes_per_s=2e12:4e12:2", "die_area_mm2=500:800:2"],
                  model="llama-3.1-8b")
    d = r.to_dict()
    assert d["num_points"] == 4 and {p["model"] for p in d["points"]} == {"llama-3.1-8b"}
    by = {(p["knobs"]["memory.bandwidth_bytes_per_s"], p["knobs"]["die_area_mm2"]): p for p in d["points"]}
    assert by[(4e12, 500)]["tokens_per_s_per_chip"] > by[(2e12, 500)]["tokens_per_s_per_chip"]
    assert by[(2e12, 800)]["cost_per_good_die"] > by[(2e12, 500)]["cost_per_good_die"]
    assert by[(2e12, 800)]["tokens_per_s_per_chip"] == by[(2e12, 500)]["tokens_per_s_per_chip"]
    assert by[(4e12, 500)] in d["pareto"] and d["units"]["cost_per_mtok"].startswith("CNY")
    assert math.isfinite(by[(4e12, 500)]["cost_per_mtok"])
    sens = d["sensitivity"]["llama-3.1-8b"]
    assert sens["cost_per_good_die"]["die_area_mm2"]["spearman"] == pytest.approx(1.0)


def test_cli_json_and_bad_input(capsys):
    run(["sweep", "--base", "h100-sxm", "--vary", "memory.bandwidth_bytes_per_s=3e12:3e12:1", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["num_points"] == 1 and d["points"][0]["tokens_per_s_per_chip"] > 0
    with pytest.raises(SystemExit) as exit_info:
        run(["sweep", "--base", "h100-sxm", "--vary", "peak_flop_per_s.bf=1:2:2"])
    assert exit_info.value.code == 2
    assert "did you mean peak_flop_per_s.bf16" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run(["sweep", "--base", "h20", "--vary", "memory.bandwidth_bytes_per_s=3e12:4e12:2"])
    assert exit_info.value.code == 2 and "die_area_mm2" in capsys.readouterr().err


def test_html_report_is_written_whole(tmp_path, capsys):
    path = tmp_path / "sweep.html"
    run(["sweep", "--base", "npu-template", "--vary", "memory.bandwidth_bytes_per_s=2e12:4e12:2",
         "--vary", "process_node=smic-n+2,tsmc-n7", "--report", str(path)])
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("data:image/png;base64,") == 3
    assert not list(tmp_path.glob("*.tmp")) and "Pareto front" in capsys.readouterr().out
