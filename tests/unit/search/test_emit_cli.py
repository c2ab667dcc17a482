"""Deployment files (flags of the pinned engine versions, parseable manifests, atomic writes), the
CLI's JSON (equal to the API's), the HTML report, and scale-out on Ray."""

import json

import pytest
import yaml

from tokenfab import api
from tokenfab.cli.main import run
from tokenfab.errors import UnknownNameError
from tokenfab.search.emit import command, emitted_flags, engine_flags, k8s_manifests, render, write_files

pytestmark = pytest.mark.unit

AGG = dict(model="llama-3.1-70b", hardware="h100-sxm", tp=4, pp=1, ep=1, dp=1, replicas=3, prefill_replicas=0,
           decode_replicas=0, max_num_seqs=128, max_batched_tokens=4096, dtype="bf16", weight_dtype="fp8",
           kv_dtype="fp8", engine="vllm", disaggregated=False)
PD = {**AGG, "disaggregated": True, "decode_hardware": "ascend-910b", "decode_tp": 8, "prefill_replicas": 2,
      "decode_replicas": 3, "replicas": 0}
MOE = {**AGG, "model": "qwen3-235b-a22b", "tp": 8, "ep": 8}


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
@pytest.mark.parametrize("cfg", [AGG, PD, MOE], ids=["aggregated", "pd", "moe"])
def test_every_emitted_flag_is_documented_for_the_pinned_version(engine, cfg):
    valid = set(engine_flags()[engine]["flags"])
    roles = ["prefill", "decode"] if cfg["disaggregated"] else ["both"]
    for role in roles:
        flags = emitted_flags(command(engine, cfg, role))
        assert flags and set(flags) <= valid, set(flags) - valid
    assert engine_flags()[engine]["docs"].startswith("https://") and engine_flags()[engine]["version"]


def test_commands_carry_the_layout():
    argv = command("vllm", AGG)
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-70B"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--max-num-seqs") + 1] == "128"
    assert argv[argv.index("--kv-cache-dtype") + 1] == "fp8"
    assert "--enable-expert-parallel" in command("vllm", MOE)
    pd_decode = command("sglang", PD, "decode")
    assert pd_decode[pd_decode.index("--disaggregation-mode") + 1] == "decode"


@pytest.mark.unit
def test_commands_write_the_memory_fraction_the_simulation_used():
    """The pinned SGLang (0.4.9) would derive its own mem_fraction_static; the command carries the one the pool was
    sized with (H100, TP 4: PR #10975's reserve of 512 + 8192 x 1.5 + 512 x 2 + 4 x 128 MiB, round(1 - 14336 /
    81559, 3)), and vLLM / TensorRT-LLM carry their 0.9."""
    sg = command("sglang", AGG)
    assert sg[sg.index("--mem-fraction-static") + 1] == "0.824"
    vl, tr = command("vllm", AGG), command("trtllm", AGG)
    assert vl[vl.index("--gpu-memory-utilization") + 1] == "0.9"
    assert tr[tr.index("--kv_cache_free_gpu_memory_fraction") + 1] == "0.9"


def test_k8s_manifests_parse_and_request_devices():
    docs = list(yaml.safe_load_all(render(PD, ["k8s"])["k8s.yaml"]))
    assert [d["kind"] for d in docs] == ["Deployment", "Deployment"]
    prefill, decode = docs
    assert prefill["spec"]["replicas"] == 2 and decode["spec"]["replicas"] == 3
    assert prefill["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert decode["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"huawei.com/Ascend910": 8}
    (agg,) = k8s_manifests(AGG)
    assert agg["spec"]["replicas"] == 3


def test_nothing_is_written_on_a_bad_target(tmp_path):
    with pytest.raises(UnknownNameError, match="emit target"):
        write_files(AGG, ["vllm", "helm"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    written = write_files(AGG, ["vllm", "sglang", "trtllm", "k8s"], tmp_path / "out")
    assert sorted(p.name for p in written) == ["k8s.yaml", "sglang.sh", "trtllm.sh", "vllm.sh"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


ARGS = ["search", "--model", "llama-3.1-8b", "--hardware", "h100-sxm,l40s", "--rate", "4", "--input-len", "512",
        "--output-len", "128", "--slo-ttft-ms", "1000", "--slo-tpot-ms", "40", "--tp", "1,2", "--top", "1",
        "--num-requests", "200"]


def test_cli_json_equals_the_api(capsys, tmp_path):
    run([*ARGS, "--json", "--emit", "vllm,k8s", "--out", str(tmp_path / "dep"), "--report", str(tmp_path / "s.html")])
    cli = json.loads(capsys.readouterr().out)
    ref = api.search(model="llama-3.1-8b", hardware=["h100-sxm", "l40s"], rate=4, input_len=512, output_len=128,
                     slo_ttft_ms=1000, slo_tpot_ms=40, tp=[1, 2], top=1, num_requests=200).to_dict()
    for d in (cli, ref):
        d.pop("search_wall_s"), d.pop("screen_wall_s")
        for c in [*d["candidates"], *d["pareto"], d["best"]]:
            c.get("simulated", {}).pop("sim_wall_s", None)
    assert json.loads(json.dumps(ref, default=float)) == cli
    assert (tmp_path / "dep" / "vllm.sh").exists() and (tmp_path / "dep" / "k8s.yaml").exists()
    page = (tmp_path / "s.html").read_text()
    assert "data:image/png;base64," in page and "Pareto" in page


def test_cli_bad_input_exits_2(capsys):
    with pytest.raises(SystemExit) as ex:
        run(["search", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--rate", "1", "--emit", "vllm"])
    assert ex.value.code == 2
    assert "--emit needs --out" in capsys.readouterr().err


def test_ray_gives_the_local_result():
    ray = pytest.importorskip("ray")
    kw = dict(model="llama-3.1-8b", hardware=["h100-sxm", "h20"], rate=4.0, input_len=512, output_len=128,
              slo_ttft_ms=1000, slo_tpot_ms=40, tp=[1, 2], top=0)
    try:
        on_ray = api.search(**kw, ray="local", workers=2).to_dict()["candidates"]
    finally:
        ray.shutdown()
    assert on_ray == api.search(**kw).to_dict()["candidates"]


def test_missing_ray_is_one_line(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    from tokenfab.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="tokenfab\\[ray\\]"):
        api.search(model="llama-3.1-8b", hardware="h100-sxm", rate=1.0, tp=[1], top=0, ray="local")
