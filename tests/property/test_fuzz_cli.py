"""Fuzzing the CLI (issue 8.3): over its argument space and over mutated chip YAML, config.json and
trace files. Every run must end in exit 0 with finite, sane output, or exit 2 with one line on
stderr; never exit 1 (an internal error); and never leave a file half-written.

Derandomised under HYPOTHESIS_PROFILE=ci with a bounded number of examples per test, so CI time
stays small; `FUZZ_EXAMPLES=N` runs N per test by hand. Outcome counts go to stdout (pytest -s).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfab.cli.main import run
from tokenfab.hardware.catalog import CHIP_DIR

pytestmark = pytest.mark.property

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
OUTCOMES: collections.Counter = collections.Counter()
CONFIG_DIR = Path(__file__).resolve().parents[2] / "src" / "tokenfab" / "workload" / "configs"


def invoke(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def _finite_and_sane(value, key: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_and_sane(v, str(k))
    elif isinstance(value, list):
        for v in value:
            _finite_and_sane(v, key)
    elif isinstance(value, float):
        assert math.isfinite(value), f"{key} = {value}"
        if key.endswith(("_s", "_j", "_bytes", "_per_s")) or key in ("p50", "p90", "p99", "mean"):
            assert value >= 0, f"{key} = {value}"


def check(kind: str, argv: list[str], workdir: Path | None = None) -> None:
    if os.environ.get("FUZZ_LOG"):  # to find a case that kills the process (memory, time) by hand
        with open(os.environ["FUZZ_LOG"], "a") as log:
            log.write(" ".join(argv) + "\n")
    before = set(workdir.iterdir()) if workdir else set()
    code, out, err = invoke(argv)
    assert code in (0, 2), f"exit {code} for {argv}: {err[-2000:]}"
    if code == 2:
        assert err.startswith("error: ") and err.strip().count("\n") == 0, f"{argv}: {err!r}"
        if workdir:  # nothing written on failure
            assert set(workdir.iterdir()) == before, f"{argv} left {set(workdir.iterdir()) - before}"
    elif "--json" in argv:
        _finite_and_sane(json.loads(out))
    if workdir:
        assert not [p for p in workdir.iterdir() if p.name.endswith(".tmp")], f"{argv} left a temporary file"
    OUTCOMES[(kind, "exit 0" if code == 0 else "exit 2")] += 1


# Valid values are drawn about half the time, so both outcomes are exercised.
NUMBERS = st.one_of(st.sampled_from(["1", "2", "4", "8", "16"]),
                    st.sampled_from(["0", "-1", "3", "nan", "inf", "-inf", "1e9", "0.5", "1.5", "abc", "", "1e-9"]))
NAMES = st.sampled_from(["llama-3.1-8b", "qwen3-8b", "mixtral-8x7b", "llama3", "h100-sxm", "a100-sxm", "h20",
                         "ascend-910b", "cpu-host", "nope", "", "../etc", "bf16", "fp8", "fp32", "fp4", "int4"])
MODELS = st.one_of(st.just("llama-3.1-8b"), NAMES)
CHIPS = st.one_of(st.just("h100-sxm"), NAMES)
DTYPES = st.one_of(st.sampled_from(["bf16", "fp16", "fp8"]), NAMES)

PREDICT_OPTS = {"--model": MODELS, "--hardware": CHIPS, "--tp": NUMBERS, "--pp": NUMBERS, "--dp": NUMBERS,
                "--devices": NUMBERS, "--dtype": DTYPES, "--kv-dtype": DTYPES, "--weight-dtype": DTYPES, "--batch": NUMBERS,
                "--input-len": NUMBERS, "--output-len": NUMBERS, "--memory-utilization": NUMBERS}
OP_OPTS = {"gemm": {"--hardware": CHIPS, "--m": NUMBERS, "--n": NUMBERS, "--k": NUMBERS, "--dtype": DTYPES},
           "attention": {"--hardware": CHIPS, "--phase": st.sampled_from(["prefill", "decode", "x"]), "--batch": NUMBERS,
                         "--q-len": NUMBERS, "--kv-len": NUMBERS, "--heads": NUMBERS, "--kv-heads": NUMBERS,
                         "--head-dim": NUMBERS, "--dtype": DTYPES},
           "allreduce": {"--hardware": CHIPS, "--devices": NUMBERS, "--bytes": NUMBERS}}
SIM_OPTS = {"--rate": NUMBERS, "--concurrency": NUMBERS, "--burstiness": NUMBERS, "--think-time-ms": NUMBERS,
            "--input-len": st.sampled_from(["0", "-5", "16", "64", "nan", "1e12"]), "--output-len": st.sampled_from(["0", "1", "4", "x"]),
            "--slo-ttft-ms": NUMBERS, "--slo-tpot-ms": NUMBERS, "--seed": NUMBERS, "--replicas": st.sampled_from(["0", "1", "2", "-1"]),
            "--prefill-replicas": st.sampled_from(["0", "1", "-1"]), "--decode-replicas": st.sampled_from(["0", "1"]),
            "--max-num-seqs": NUMBERS, "--block-size": NUMBERS, "--rate-scale": NUMBERS, "--dtype": DTYPES,
            "--input-dist": st.sampled_from(["uniform:8,32", "normal:a,b", "fixed:0", "lognormal:20,5", "zipf:1"])}


def _options(table: dict, max_size: int = 4) -> st.SearchStrategy[list[str]]:
    return st.dictionaries(st.sampled_from(sorted(table)), st.just(None), max_size=max_size).flatmap(
        lambda chosen: st.tuples(*(st.tuples(st.just(k), table[k]) for k in chosen)) if chosen else st.just(()))


def _flat(pairs) -> list[str]:
    return [x for pair in pairs for x in pair]


@settings(max_examples=EXAMPLES)
@given(pairs=_options(PREDICT_OPTS), as_json=st.booleans())
def test_fuzz_predict(pairs, as_json):
    check("predict", ["predict", *_flat(pairs), "--input-len", "64", "--output-len", "4", *(["--json"] if as_json else [])]
          if "--input-len" not in dict(pairs) else ["predict", *_flat(pairs), *(["--json"] if as_json else [])])


@settings(max_examples=EXAMPLES)
@given(kind=st.sampled_from(sorted(OP_OPTS)), data=st.data())
def test_fuzz_op(kind, data):
    pairs = data.draw(_options(OP_OPTS[kind]))
    required = {"gemm": ["--m", "64", "--n", "64", "--k", "64"], "allreduce": ["--bytes", "1e6"]}.get(kind, [])
    given_keys = dict(pairs)
    extra = [x for i in range(0, len(required), 2) if required[i] not in given_keys for x in required[i:i + 2]]
    check(f"op {kind}", ["op", kind, *_flat(pairs), *extra, "--json"])


@settings(max_examples=EXAMPLES)
@given(pairs=_options(SIM_OPTS, 3), out_name=st.sampled_from(["", ".csv", ".parquet", ".txt", "/missing/x.csv"]))
def test_fuzz_simulate(tmp_path_factory, pairs, out_name):
    work = tmp_path_factory.mktemp("sim")
    opts = dict(pairs)
    argv = ["simulate", *_flat(pairs), "--num-requests", "4", "--json"]
    if "--rate" not in opts and "--concurrency" not in opts:
        argv += ["--rate", "2"]
    if "--input-len" not in opts and "--input-dist" not in opts:
        argv += ["--input-len", "32"]
    if "--output-len" not in opts:
        argv += ["--output-len", "3"]
    if out_name:
        argv += ["--requests-out", out_name if out_name.startswith("/") else str(work / f"requests{out_name}")]
    check("simulate", argv, work)


def _mutate(data: dict, draw) -> dict:
    """One change to a nested mapping: a leaf value replaced, a key dropped, or an unknown key added."""
    paths, stack = [], [((), data)]
    while stack:
        prefix, node = stack.pop()
        for k, v in node.items():
            paths.append(prefix + (k,))
            if isinstance(v, dict):
                stack.append((prefix + (k,), v))
    path = draw(st.sampled_from(sorted(paths, key=str)))
    action = draw(st.sampled_from(["value", "value", "value", "drop", "add"]))
    node = data
    for k in path[:-1]:
        node = node[k]
    if action == "drop":
        node.pop(path[-1])
    elif action == "add":
        node["zzz_unknown"] = 1
    else:
        old = node[path[-1]]
        scale = old if isinstance(old, int | float) and not isinstance(old, bool) else 1
        node[path[-1]] = draw(st.sampled_from([0, -1, -scale, scale * 1e-3, scale * 1e3, scale * 1e12, float("nan"),
                                               float("inf"), "x", None, [], {"value": 1}, True, 10**30]))
    return data


@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzz_chip_yaml(tmp_path_factory, data):
    chip = yaml.safe_load((CHIP_DIR / "h100-sxm.yaml").read_text())
    chip.pop("efficiency_profile", None)
    path = tmp_path_factory.mktemp("chip") / "chip.yaml"
    path.write_text(yaml.safe_dump(_mutate(chip, data.draw)))
    check("chip yaml: hw show", ["hw", "show", str(path), "--json"])
    check("chip yaml: predict", ["predict", "--hardware", str(path), "--input-len", "64", "--output-len", "4", "--json"])


@settings(max_examples=EXAMPLES)
@given(name=st.sampled_from(["llama-3.1-8b", "qwen3-30b-a3b", "deepseek-v3"]), data=st.data())
def test_fuzz_model_config(tmp_path_factory, name, data):
    config = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    path = tmp_path_factory.mktemp("model") / "config.json"
    text = json.dumps(_mutate(config, data.draw))
    if data.draw(st.integers(0, 9)) == 0:  # now and then a file cut short
        text = text[: len(text) // 2]
    path.write_text(text)
    check("config.json: model show", ["model", "show", str(path), "--json"])
    check("config.json: predict", ["predict", "--model", str(path), "--tp", "8", "--input-len", "64", "--output-len", "4",
                                   "--json"])


AZURE_ROW = st.tuples(st.sampled_from(["2023-11-16 18:15:46.6805900", "2023-11-16 18:15:47.1", "yesterday", "", "-1"]),
                      st.sampled_from(["374", "0", "-5", "x", "", "1e12", "12.5"]),
                      st.sampled_from(["44", "0", "-1", "y", "", "3"]))
MOONCAKE_ROW = st.fixed_dictionaries({"timestamp": st.sampled_from([0, 40, -3, "t", None, 1e300]),
                                      "input_length": st.sampled_from([100, 0, -1, "x", 10**9]),
                                      "output_length": st.sampled_from([4, 0, -2, None]),
                                      "hash_ids": st.sampled_from([[0, 1], [], "h", None, [-1]])})


@settings(max_examples=EXAMPLES)
@given(fmt=st.sampled_from(["azure", "mooncake"]), data=st.data())
def test_fuzz_trace_files(tmp_path_factory, fmt, data):
    work = tmp_path_factory.mktemp("trace")
    if fmt == "azure":
        rows = data.draw(st.lists(AZURE_ROW, max_size=6))
        header = data.draw(st.sampled_from(["TIMESTAMP,ContextTokens,GeneratedTokens", "TIME,Tokens", ""]))
        text = "\n".join([header, *(",".join(r) for r in rows)]) + "\n"
        path = work / "trace.csv"
    else:
        rows = data.draw(st.lists(MOONCAKE_ROW, max_size=6))
        lines = [json.dumps(r) for r in rows] + data.draw(st.sampled_from([[], ["{broken"], ["[]"]]))
        text = "\n".join(lines) + "\n"
        path = work / "trace.jsonl"
    path.write_text(text)
    check(f"trace {fmt}", ["simulate", "--trace", str(path), "--num-requests", "5", "--json",
                           "--timeseries-out", str(work / "ts.csv")], work)


def test_fuzz_outcomes_are_reported():
    """Runs last in this module: prints the counts by outcome (the report quotes them)."""
    print("\nfuzz outcomes:", json.dumps({f"{k[0]} / {k[1]}": v for k, v in sorted(OUTCOMES.items())}, indent=1))
    if OUTCOMES:  # when run with the other fuzz tests: every family must have been exercised
        assert sum(OUTCOMES.values()) >= EXAMPLES
