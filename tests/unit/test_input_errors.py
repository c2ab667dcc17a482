"""Every class of bad input in issue 8.3 is a one-line TokenfabError (CLI exit 2), one test per class."""

from __future__ import annotations

import math

import pytest
import yaml

from tokenfab import api
from testkit import run_cli as cli
from tokenfab.errors import DataFileError, InvalidInputError, MissingDependencyError, TokenfabError
from tokenfab.hardware.catalog import CHIP_DIR, load_chip

pytestmark = pytest.mark.unit

SMALL = dict(model="llama-3.1-8b", hardware="h100-sxm", num_requests=5, input_len=64, output_len=4)




def one_line_exit_2(args, capsys) -> str:
    code, _out, err = cli(args, capsys)
    assert code == 2, err
    assert err.strip().count("\n") == 0 and err.startswith("error: "), err
    return err


# class: zero treated as "not given"
@pytest.mark.parametrize("kwargs, needle", [
    (dict(rate=0.0), "rate must be > 0"),
    (dict(concurrency=0), "concurrency must be >= 1"),
    (dict(rate=1.0, slo_ttft_ms=0.0), "slo_ttft_ms must be > 0"),
    (dict(rate=1.0, slo_tpot_ms=0.0), "slo_tpot_ms must be > 0"),
])
def test_zero_is_refused_not_taken_as_unset(kwargs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        api.simulate(**SMALL, **kwargs)


def test_zero_kv_heads_and_q_len_are_refused():
    with pytest.raises(InvalidInputError, match="kv_heads must be >= 1"):
        api.op("attention", "h100-sxm", kv_heads=0)
    with pytest.raises(InvalidInputError, match="q_len must be >= 1"):
        api.op("attention", "h100-sxm", phase="prefill", q_len=0)


# class: NaN, infinity and negative values
@pytest.mark.parametrize("kwargs, needle", [
    (dict(rate=math.nan), "rate must be a finite number"),
    (dict(rate=math.inf), "rate must be a finite number"),
    (dict(rate=-1.0), "rate must be > 0"),
    (dict(rate=1.0, seed=-3), "seed must be >= 0"),
    (dict(rate=1.0, slo_ttft_ms=-5.0), "slo_ttft_ms must be > 0"),
    (dict(rate=1.0, memory_utilization_frac=1.5), "memory_utilization_frac must be <= 1"),
])
def test_nan_inf_negative_are_refused(kwargs, needle):
    with pytest.raises(InvalidInputError, match=needle):
        api.simulate(**SMALL, **kwargs)


def test_nan_bytes_and_negative_sizes_on_the_cli(capsys):
    assert "finite" in one_line_exit_2(["op", "allreduce", "--bytes", "nan"], capsys)
    assert "batch must be >= 1" in one_line_exit_2(["predict", "--batch", "-2"], capsys)
    assert "memory_utilization_frac must be a finite number" in one_line_exit_2(
        ["predict", "--memory-utilization", "inf"], capsys)


# class: compute formats the chip lacks
@pytest.mark.parametrize("hardware, dtype", [("h100-sxm", "fp32"), ("a100-sxm", "fp8"), ("ascend-910b", "fp8"),
                                             ("a100-sxm", "fp4"), ("cpu-host", "tf32")])
def test_compute_format_the_chip_lacks_is_refused(hardware, dtype):
    with pytest.raises(InvalidInputError, match=f"{hardware} has no {dtype} rate .*compute formats"):
        api.predict(model="llama-3.1-8b", hardware=hardware, dtype=dtype, input_len=64, output_len=4)
    with pytest.raises(InvalidInputError, match=f"has no {dtype} rate"):
        api.op("gemm", hardware, m=64, n=64, k=64, dtype=dtype)


def test_weight_only_quantisation_still_runs_on_a100():
    r = api.predict(model="llama-3.1-8b", hardware="a100-sxm", dtype="bf16", weight_dtype="fp8", input_len=64, output_len=4)
    assert r.tpot_s > 0


# class: failed writes and unknown output extensions
def test_unknown_output_extension_is_refused_before_the_run(capsys, tmp_path):
    target = tmp_path / "requests.txt"
    err = one_line_exit_2(["simulate", "--rate", "1", "--num-requests", "3", "--requests-out", str(target)], capsys)
    assert "unknown extension '.txt'" in err and not target.exists()


def test_failed_write_is_one_line_and_leaves_nothing(capsys, tmp_path):
    err = one_line_exit_2(["simulate", "--rate", "1", "--num-requests", "3", "--timeseries-out",
                           str(tmp_path / "missing" / "ts.csv")], capsys)
    assert "does not exist" in err
    (tmp_path / "dir.csv").mkdir()
    assert "is a directory" in one_line_exit_2(["simulate", "--rate", "1", "--num-requests", "3", "--requests-out",
                                                str(tmp_path / "dir.csv")], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.csv"]


def test_atomic_write_cleans_its_temporary_on_failure(tmp_path):
    from tokenfab.table_io import write_text

    with pytest.raises(DataFileError, match="unknown extension"):
        write_text("x", tmp_path / "r.pdf", (".html",))
    path = write_text("<p>ok</p>", tmp_path / "r.html", (".html",))
    assert path.read_text() == "<p>ok</p>" and [p.name for p in tmp_path.iterdir()] == ["r.html"]


# class: empty traces and windows past a trace's end
def test_empty_trace_and_window_past_the_end(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    with pytest.raises(InvalidInputError, match="has no requests"):
        api.simulate(model="llama-3.1-8b", hardware="h100-sxm", trace=str(empty))
    trace = tmp_path / "two.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,100,5\n"
                     "2023-11-16 18:15:47.6805900,100,5\n")
    with pytest.raises(InvalidInputError, match="no requests at or after --trace-start 100 s"):
        api.simulate(model="llama-3.1-8b", hardware="h100-sxm", trace=str(trace), trace_start_s=100.0)
    assert api.simulate(model="llama-3.1-8b", hardware="h100-sxm", trace=str(trace)).to_dict()["completed"] == 2


# class: options that conflict or would be ignored
@pytest.mark.parametrize("kwargs, needle", [
    (dict(trace="x.csv", input_len=100), "--input-len would be ignored"),
    (dict(rate=1.0, rate_scale=2.0), "--rate-scale only apply with --trace"),
    (dict(concurrency=2, burstiness=2.0), "--burstiness only applies with --rate"),
    (dict(rate=1.0, think_time_ms=5.0), "--think-time-ms only applies with --concurrency"),
    (dict(rate=1.0, prefill_replicas=1, decode_replicas=1, replicas=3), "--replicas conflicts"),
    (dict(rate=1.0, prefill_tp=2), "--prefill-tp only apply with"),
    (dict(rate=1e-9), "span ~3e\\+09 s of simulated time"),  # found by the fuzz test: the run exhausted memory
])
def test_conflicting_or_ignored_options_are_refused(kwargs, needle):
    base = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "num_requests": 3}
    with pytest.raises(InvalidInputError, match=needle):
        api.simulate(**base, **kwargs)


def test_op_refuses_options_of_another_operator():
    with pytest.raises(InvalidInputError, match="op gemm does not take --bytes"):
        api.op("gemm", "h100-sxm", m=8, n=8, k=8, bytes=1e6)
    with pytest.raises(InvalidInputError, match="op allreduce does not take --m"):
        api.op("allreduce", "h100-sxm", bytes=1e6, m=8)


# class: chip YAML values off by orders of magnitude
@pytest.mark.parametrize("path, value, needle", [
    (("memory", "bandwidth_bytes_per_s"), 3.35, "memory.bandwidth_bytes_per_s"),
    (("memory", "capacity_bytes"), 80.0, "memory.capacity_bytes"),
    (("peak_flop_per_s", "bf16"), 989.4, "peak_flop_per_s"),
    (("power", "tdp_w"), 7e5, "power.tdp_w"),
    (("scale_up", "bandwidth_bytes_per_s"), 450.0, "scale_up.bandwidth_bytes_per_s"),
])
def test_implausible_chip_yaml_is_refused(tmp_path, path, value, needle):
    data = yaml.safe_load((CHIP_DIR / "h100-sxm.yaml").read_text())
    data[path[0]][path[1]]["value"] = value
    f = tmp_path / "chip.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(DataFileError, match=f"{needle}.*plausible range"):
        load_chip(str(f))


def test_catalog_chips_are_all_plausible():
    from tokenfab.hardware.catalog import chip_names

    assert all(load_chip(n).memory_bandwidth_bytes_per_s > 1e9 for n in chip_names())


# class: API arguments of the wrong type
@pytest.mark.parametrize("kwargs, needle", [
    (dict(batch="eight"), "bad batch='eight'"),
    (dict(batch=2.5), "bad batch=2.5"),
    (dict(model=["llama-3.1-8b"]), "bad model="),
    (dict(tp=None), "bad tp=None"),
    (dict(batchsize=3), "unexpected keyword argument 'batchsize'"),
])
def test_wrong_argument_types_are_one_line_errors(kwargs, needle):
    args = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "input_len": 64, "output_len": 4, **kwargs}
    with pytest.raises(InvalidInputError) as exc:
        api.predict(**args)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_missing_extras_name_the_right_install():
    assert "pip install 'tokenfab[bench]'" in str(MissingDependencyError("torch", "device benchmarks"))
    assert "pip install 'tokenfab[ray]'" in str(MissingDependencyError("ray", "clusters"))
    message = str(MissingDependencyError("highspy", "plan", "fleet planning"))
    assert "core dependency" in message and "tokenfab[" not in message
    assert issubclass(MissingDependencyError, TokenfabError)


# class: measurement files of one chip validated or fitted as another
def test_measurements_of_another_chip_are_refused_unless_forced(capsys, tmp_path):
    import pandas as pd

    from tokenfab.calibrate.measurements import write_measurements

    rows = [{"device": "h100-sxm", "op": "gemm", "dtype": "bf16", "weight_dtype": "bf16", "variant": "",
             "m": float(m), "n": 4096.0, "k": 4096.0, "time_s": 2.0 * m * 4096 * 4096 / 6e14} for m in (256, 1024, 4096)]
    path = tmp_path / "h100.csv"
    write_measurements(pd.DataFrame(rows), path)
    err = one_line_exit_2(["validate", "-H", "a100-sxm", "--measurements", str(path)], capsys)
    assert "measurements are of h100-sxm, not a100-sxm" in err and "--force" in err
    code, out, _ = cli(["validate", "-H", "a100-sxm", "--measurements", str(path), "--force", "--json"], capsys)
    assert code == 0 and '"hardware": "a100-sxm"' in out
    err = one_line_exit_2(["calibrate", "--measurements", str(path), "--hardware", "mi300x",
                           "--profile-out", str(tmp_path / "p.yaml")], capsys)
    assert "measures h100-sxm, not mi300x" in err and not (tmp_path / "p.yaml").exists()


# class: an unknown model in a plan file
def test_unknown_model_in_a_plan_is_named(capsys, tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "fleet_2026_2028.yaml"
    bad = tmp_path / "plan.yaml"
    bad.write_text(example.read_text().replace("- name: qwen3-32b\n", "- name: qwen3-32bx\n", 1))
    err = one_line_exit_2(["plan", str(bad)], capsys)
    assert "unknown model 'qwen3-32bx'; did you mean qwen3-32b" in err


def test_undefined_figures_are_null_in_json_and_n_a_in_tables(capsys):
    """One-token outputs have no TPOT: JSON (which has no NaN) says null, the table n/a."""
    import json

    code, out, _ = cli(["simulate", "--rate", "2", "--num-requests", "3", "--input-len", "16", "--output-len", "1",
                        "--json"], capsys)
    assert code == 0 and json.loads(out)["tpot_s"]["p50"] is None and "NaN" not in out
    code, out, _ = cli(["simulate", "--rate", "2", "--num-requests", "3", "--input-len", "16", "--output-len", "1"], capsys)
    assert code == 0 and "n/a" in out and "nan" not in out
