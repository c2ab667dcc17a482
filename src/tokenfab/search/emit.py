"""Deployment files for a chosen configuration: engine launch commands and Kubernetes manifests.

Each engine's command uses only flags listed for its pinned version in `data/engine_flags.yaml`
(with the documentation page they come from). Kubernetes manifests are Deployments with GPU
resource requests, one per pool (P/D: a prefill and a decode Deployment). Everything is rendered
in memory first and then written file by file atomically, so an error leaves nothing half-written.
"""

from __future__ import annotations

import functools
import os
import shlex
import tempfile
from pathlib import Path

import yaml

from tokenfab.errors import DataFileError, UnknownNameError
from tokenfab.hardware.catalog import load_chip

FLAGS_PATH = Path(__file__).parent / "data" / "engine_flags.yaml"
TARGETS = ("vllm", "sglang", "trtllm", "k8s")
_TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_IMAGES = {"vllm": "vllm/vllm-openai:v0.10.1", "sglang": "lmsysorg/sglang:v0.4.9-cu126",
           "trtllm": "nvcr.io/nvidia/tensorrt-llm/release:0.21.0"}
_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "huawei": "huawei.com/Ascend910",
             "intel": "habana.ai/gaudi"}


@functools.lru_cache(maxsize=1)
def engine_flags() -> dict:
    """The pinned versions, docs and valid flags of each engine."""
    return yaml.safe_load(FLAGS_PATH.read_text())


def hf_id(model: str) -> str:
    """The Hugging Face repository of a bundled model (its SOURCES.yaml entry), else the name given."""
    import tokenfab.workload as workload

    sources = Path(workload.__file__).parent / "configs" / "SOURCES.yaml"
    try:
        entry = (yaml.safe_load(sources.read_text()) or {}).get(model) or {}
    except OSError:
        entry = {}
    return entry.get("hf_id", model)


def _pool_args(cfg: dict, role: str) -> dict:
    """Parallel layout and limits of one pool ('both', 'prefill' or 'decode')."""
    tp = cfg["decode_tp"] if role == "decode" and cfg.get("decode_tp") else cfg["tp"]
    return {"tp": tp, "pp": cfg.get("pp", 1), "ep": cfg.get("ep", 1), "dp": cfg.get("dp", 1),
            "max_num_seqs": cfg["max_num_seqs"], "max_batched_tokens": cfg["max_batched_tokens"],
            "dtype": _TORCH_DTYPE.get(cfg["dtype"], "auto"), "kv_fp8": cfg.get("kv_dtype") in ("fp8",),
            "weight_quant": cfg.get("weight_dtype") if cfg.get("weight_dtype") not in (None, cfg["dtype"]) else None}


def _quant(weight_dtype: str | None) -> str | None:
    return {"fp8": "fp8", "int8": "w8a8_int8", "int4": "awq", "fp4": "modelopt_fp4"}.get(weight_dtype or "")


def _memory_flag(engine: str, cfg: dict, role: str, a: dict) -> list[str]:
    """The engine's memory fraction, written out as the simulation sized the pool with it: the pinned release
    may derive a different default (SGLang's depends on its version and the layout)."""
    from tokenfab.serving.engines import engine_spec

    hw = cfg.get("decode_hardware") if role == "decode" and cfg.get("decode_hardware") else cfg["hardware"]
    kwargs = engine_spec(engine, load_chip(hw).device_memory_bytes, a["tp"]).memory.memory_model_kwargs(
        a["tp"], a["pp"], a["dp"])
    frac = next(kwargs[k] for k in ("memory_utilization_frac", "static_memory_frac", "kv_free_memory_frac") if k in kwargs)
    flag = {"vllm": "--gpu-memory-utilization", "sglang": "--mem-fraction-static",
            "trtllm": "--kv_cache_free_gpu_memory_fraction"}[engine]
    return [flag, f"{frac:g}"]


def command(engine: str, cfg: dict, role: str = "both", port: int = 8000) -> list[str]:
    """argv of one server of `engine` for a pool of the configuration."""
    a, model = _pool_args(cfg, role), hf_id(cfg["model"])
    q = _quant(a["weight_quant"])
    if engine not in TARGETS[:3]:
        raise UnknownNameError("engine", engine, TARGETS[:3])
    if engine == "vllm":
        argv = ["vllm", "serve", model, "--host", "0.0.0.0", "--port", str(port), "--tensor-parallel-size", str(a["tp"]),
                "--pipeline-parallel-size", str(a["pp"]), "--dtype", a["dtype"], "--max-num-seqs", str(a["max_num_seqs"]),
                "--max-num-batched-tokens", str(a["max_batched_tokens"]), "--enable-chunked-prefill", "--enable-prefix-caching"]
        argv += ["--kv-cache-dtype", "fp8"] if a["kv_fp8"] else []
        argv += ["--quantization", q] if q else []
        argv += ["--enable-expert-parallel"] if a["ep"] > 1 else []
        if role != "both":
            argv += ["--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}']
    elif engine == "sglang":
        argv = ["python", "-m", "sglang.launch_server", "--model-path", model, "--host", "0.0.0.0", "--port", str(port),
                "--tp-size", str(a["tp"]), "--pp-size", str(a["pp"]), "--dtype", a["dtype"],
                "--max-running-requests", str(a["max_num_seqs"]), "--chunked-prefill-size", str(a["max_batched_tokens"])]
        argv += ["--kv-cache-dtype", "fp8_e4m3"] if a["kv_fp8"] else []
        argv += ["--quantization", q] if q else []
        argv += ["--ep-size", str(a["ep"])] if a["ep"] > 1 else []
        argv += ["--disaggregation-mode", role] if role != "both" else []
    else:
        argv = ["trtllm-serve", model, "--backend", "pytorch", "--host", "0.0.0.0", "--port", str(port),
                "--tp_size", str(a["tp"]), "--pp_size", str(a["pp"]), "--max_batch_size", str(a["max_num_seqs"]),
                "--max_num_tokens", str(a["max_batched_tokens"])]
        argv += ["--ep_size", str(a["ep"])] if a["ep"] > 1 else []
    return argv + _memory_flag(engine, cfg, role, a)


def emitted_flags(argv: list[str]) -> list[str]:
    return [x for x in argv if x.startswith("--")]


def _check_flags(engine: str, argv: list[str]) -> None:
    valid = set(engine_flags()[engine]["flags"])
    bad = [f for f in emitted_flags(argv) if f not in valid]
    if bad:
        raise AssertionError(f"{engine} flags {bad} are not in {FLAGS_PATH.name} for {engine_flags()[engine]['version']}")


def _roles(cfg: dict) -> list[str]:
    return ["prefill", "decode"] if cfg.get("disaggregated") else ["both"]


def _script(engine: str, cfg: dict) -> str:
    info = engine_flags()[engine]
    lines = ["#!/usr/bin/env bash", f"# {engine} {info['version']} launch for {cfg['model']} on {cfg['hardware']}"
             f" (flags: {info['docs']}); generated by tokenfab search.", "set -euo pipefail"]
    for i, role in enumerate(_roles(cfg)):
        argv = command(engine, cfg, role, 8000 + i)
        _check_flags(engine, argv)
        n = cfg["prefill_replicas"] if role == "prefill" else cfg["decode_replicas"] if role == "decode" else cfg["replicas"]
        hw = cfg.get("decode_hardware") if role == "decode" and cfg.get("decode_hardware") else cfg["hardware"]
        lines.append(f"# {role} pool: {n} replica(s) of this server on {hw}, one per group of "
                     f"{_pool_args(cfg, role)['tp'] * cfg.get('pp', 1)} devices")
        lines.append(shlex.join(argv))
    return "\n".join(lines) + "\n"


def _vendor(chip_name: str) -> str:
    words = load_chip(chip_name).vendor.lower().split()
    return words[0] if words else "nvidia"


def k8s_manifests(cfg: dict, engine: str = "vllm") -> list[dict]:
    """One Deployment per pool, each replica requesting its devices (nvidia.com/gpu, ...)."""
    docs = []
    for role in _roles(cfg):
        hw = cfg.get("decode_hardware") if role == "decode" and cfg.get("decode_hardware") else cfg["hardware"]
        a = _pool_args(cfg, role)
        devices = a["tp"] * a["pp"]
        n = cfg["prefill_replicas"] if role == "prefill" else cfg["decode_replicas"] if role == "decode" else cfg["replicas"]
        resource = _RESOURCE.get(_vendor(hw), "nvidia.com/gpu")
        name = f"{cfg['model']}-{role if role != 'both' else 'serve'}".replace(".", "-").lower()
        labels = {"app": name, "tokenfab/role": role, "tokenfab/hardware": hw}
        argv = command(engine, cfg, role)
        docs.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": n, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{
                    "name": engine, "image": _IMAGES[engine], "command": argv[:1], "args": argv[1:],
                    "ports": [{"containerPort": 8000}],
                    "resources": {"limits": {resource: devices}, "requests": {resource: devices}}}]}}}})
    return docs


def render(cfg: dict, targets: list[str]) -> dict[str, str]:
    """File name -> content for each target (nothing written yet)."""
    files: dict[str, str] = {}
    for t in targets:
        if t not in TARGETS:
            raise UnknownNameError("emit target", t, TARGETS)
        if t == "k8s":
            engine = cfg.get("engine", "vllm")
            files["k8s.yaml"] = yaml.safe_dump_all(k8s_manifests(cfg, engine if engine in _IMAGES else "vllm"), sort_keys=False)
        else:
            files[f"{t}.sh"] = _script(t, cfg)
    return files


def write_files(cfg: dict, targets: list[str], out_dir: str | Path) -> list[Path]:
    """Render every file, then write each atomically (temp file + rename) into `out_dir`."""
    files = render(cfg, targets)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(f"cannot create --out {out}: {exc.strerror}") from None
    written = []
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o755 if name.endswith(".sh") else 0o644)
        os.replace(tmp, out / name)
        written.append(out / name)
    return written
