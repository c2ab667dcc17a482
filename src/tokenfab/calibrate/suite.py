"""Microbenchmarks on a real device through PyTorch (an optional extra, imported lazily).

GEMM sweeps (square, skinny decode shapes, MoE expert shapes) per supported format, memory
bandwidth (copy, scale, triad from cache-sized to DRAM-sized arrays), attention (PyTorch's
fused scaled_dot_product_attention, prefill and decode, GQA), elementwise kernels (RMSNorm,
SiLU-gate) and host-device transfers. Each kernel: warm-up calls, then timed repeats with
proper synchronisation (CUDA events on GPUs, wall clock on the CPU), reporting the median and
the spread (inter-quartile range / median). A time budget stops the suite early; the rows
measured so far are kept.

    python -m tokenfab.calibrate.suite --device cuda --out h100.csv [--quick] [--budget-s 300]

(the same as `tokenfab calibrate`, for machines that have torch but not the CLI's extras).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tokenfab.errors import InvalidInputError, MissingDependencyError


GPU_NAMES = {"H100": "h100-sxm", "H200": "h200-sxm", "H800": "h800-sxm", "H20": "h20", "A100": "a100-sxm",
             "B200": "b200", "GB200": "gb200", "L40S": "l40s", "L20": "l20", "L4": "l4", "MI300X": "mi300x",
             "MI325X": "mi325x"}


def catalog_name_for(device_name: str) -> str | None:
    """The catalog chip a driver's device string names ('NVIDIA H100 80GB HBM3' -> h100-sxm)."""
    tokens = set(re.split(r"[\s\-_]+", device_name.upper()))
    for key in sorted(GPU_NAMES, key=len, reverse=True):
        if key in tokens:
            return GPU_NAMES[key]
    return None


def _torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "running device microbenchmarks") from None
    return torch


@dataclass
class SuiteConfig:
    device: str = "cpu"
    quick: bool = False
    tiny: bool = False  # smallest shapes, for tests
    budget_s: float = 600.0
    repeats: int = 30
    warmup: int = 3
    progress: Callable[[str, int, int], None] | None = None
    rows: list[dict] = field(default_factory=list)


class Timer:
    """Median and spread of a kernel's time with the right synchronisation for the device."""

    def __init__(self, torch, device: str):
        self.torch, self.cuda = torch, device.startswith("cuda")

    def __call__(self, fn: Callable[[], object], repeats: int, warmup: int, target_s: float = 0.25) -> tuple[float, float, int]:
        """Median and spread of `fn`'s time: one probe call sizes the number of repeats so that a
        kernel takes about `target_s` in all (at least 3 repeats, at most `repeats`)."""
        probe = self._once(fn)
        for _ in range(warmup if probe < 0.01 else 1):
            fn()
        n = max(3, min(repeats, int(target_s / max(probe, 1e-7))))
        times = sorted(self._once(fn) for _ in range(n))
        med = statistics.median(times)
        q1, q3 = times[len(times) // 4], times[(3 * len(times)) // 4]
        return med, (q3 - q1) / med if med > 0 else 0.0, len(times)

    def _once(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            torch = self.torch
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def _dtypes(torch, device: str) -> list[tuple[str, object]]:
    if device.startswith("cuda"):
        return [("bf16", torch.bfloat16), ("fp16", torch.float16)]
    return [("fp32", torch.float32), ("bf16", torch.bfloat16)]


def gemm_shapes(device: str, quick: bool, tiny: bool = False) -> list[tuple[int, int, int]]:
    """(m, n, k): squares, skinny decode GEMMs (small m), MoE-expert-like shapes."""
    if tiny:
        return [(m, n, k) for n, k in ((128, 128), (256, 512)) for m in (1, 8, 64, 256)]
    if device.startswith("cuda"):
        ms = (1, 16, 128, 1024, 4096) if quick else (1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
        nk = [(4096, 4096), (8192, 8192), (14336, 4096), (4096, 14336)]
        if not quick:
            nk += [(1024, 1024), (2048, 2048), (16384, 16384), (28672, 8192), (8192, 28672), (1536, 4096), (4096, 768)]
    else:
        ms = (1, 16, 128, 512) if quick else (1, 4, 16, 64, 128, 256, 512, 1024)
        nk = [(1024, 1024), (2048, 2048), (4096, 1024)] if quick else [(512, 512), (1024, 1024), (2048, 2048), (4096, 1024), (1024, 4096)]
    return [(m, n, k) for n, k in nk for m in ms]


def _gemm_rows(torch, cfg: SuiteConfig, timer: Timer) -> Iterator[dict]:
    dev = torch.device(cfg.device)
    for name, dt in _dtypes(torch, cfg.device):
        for m, n, k in gemm_shapes(cfg.device, cfg.quick, cfg.tiny):
            a = torch.randn(m, k, device=dev, dtype=dt)
            w = torch.randn(k, n, device=dev, dtype=dt)
            med, spread, reps = timer(lambda: torch.matmul(a, w), cfg.repeats, cfg.warmup)
            yield {"op": "gemm", "dtype": name, "weight_dtype": name, "variant": "", "m": m, "n": n, "k": k,
                   "time_s": med, "repeats": reps, "spread_frac": spread}


def _fp8_gemm_rows(torch, cfg: SuiteConfig, timer: Timer) -> Iterator[dict]:
    """FP8 (e4m3) GEMMs through torch._scaled_mm where the GPU and torch support it (Hopper, Ada, Blackwell)."""
    if not cfg.device.startswith("cuda") or not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return
    dev = torch.device(cfg.device)
    one = torch.ones((), device=dev)
    for m, n, k in gemm_shapes(cfg.device, cfg.quick, cfg.tiny):
        if m % 16 or n % 16 or k % 16:
            continue  # _scaled_mm needs multiples of 16
        a = torch.randn(m, k, device=dev).to(torch.float8_e4m3fn)
        w = torch.randn(n, k, device=dev).to(torch.float8_e4m3fn).t()  # column-major second operand
        try:
            fn = lambda: torch._scaled_mm(a, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
            fn()
        except (RuntimeError, TypeError):
            return
        med, spread, reps = timer(fn, cfg.repeats, cfg.warmup)
        yield {"op": "gemm", "dtype": "fp8", "weight_dtype": "fp8", "variant": "", "m": m, "n": n, "k": k,
               "time_s": med, "repeats": reps, "spread_frac": spread}


def _bandwidth_rows(torch, cfg: SuiteConfig, timer: Timer) -> Iterator[dict]:
    dev = torch.device(cfg.device)
    top = 28 if cfg.device.startswith("cuda") else 26  # elements of fp32: 1 GiB on GPUs, 256 MiB on CPUs
    sizes = [1 << p for p in range(18, top + 1, 2 if cfg.quick else 1)] if not cfg.tiny else [1 << 12, 1 << 14, 1 << 16]
    for n in sizes:
        a = torch.rand(n, device=dev)
        b = torch.rand(n, device=dev)
        c = torch.empty(n, device=dev)
        kernels = {"copy": (lambda: c.copy_(a), 8.0), "scale": (lambda: torch.mul(a, 3.0, out=c), 8.0),
                   "triad": (lambda: torch.add(a, b, alpha=3.0, out=c), 12.0)}
        for kind, (fn, bytes_per) in kernels.items():
            med, spread, reps = timer(fn, cfg.repeats, cfg.warmup)
            yield {"op": "elementwise", "variant": kind, "dtype": "fp32", "bytes": n * bytes_per, "time_s": med,
                   "repeats": reps, "spread_frac": spread}


def _attention_rows(torch, cfg: SuiteConfig, timer: Timer) -> Iterator[dict]:
    f = torch.nn.functional
    dev = torch.device(cfg.device)
    dt = torch.bfloat16 if cfg.device.startswith("cuda") else torch.float32
    name = "bf16" if dt == torch.bfloat16 else "fp32"
    heads = [(32, 8), (32, 32)] if not cfg.quick else [(32, 8)]
    gpu = cfg.device.startswith("cuda")
    prefill = [(1, 512), (1, 2048), (4, 1024), (1, 8192)] if gpu else [(1, 128), (1, 512)]
    decode = [(1, 1024), (16, 1024), (64, 2048), (128, 4096), (8, 16384)] if gpu else [(1, 512), (8, 1024), (32, 2048)]
    if not gpu and not cfg.quick:
        prefill = [(1, 128), (1, 256), (1, 512), (2, 512)]
        decode = [(1, 256), (1, 1024), (4, 512), (8, 1024), (16, 2048), (32, 2048)]
    if gpu and not cfg.quick:
        heads = [(32, 8), (32, 32), (64, 8), (16, 2)]
        prefill = [(b, s) for b in (1, 4) for s in (128, 512, 1024, 2048, 4096, 8192) if b * s <= 16384]
        decode = [(b, s) for b in (1, 8, 32, 64, 128, 256) for s in (128, 1024, 4096, 16384) if b * s <= 1 << 20]
    if cfg.tiny:
        heads, prefill, decode = [(4, 2)], [(1, 64)], [(2, 128)]
    def sdpa(q, k, v, causal: bool):
        try:  # torch >= 2.5 shares each KV head among its query group, as inference kernels do
            return f.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        except TypeError:
            rep = q.shape[1] // k.shape[1]
            return f.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=causal)

    for h, kv in heads:
        for b, s in prefill:
            q = torch.randn(b, h, s, 128, device=dev, dtype=dt)
            k = torch.randn(b, kv, s, 128, device=dev, dtype=dt)
            v = torch.randn(b, kv, s, 128, device=dev, dtype=dt)
            med, spread, reps = timer(lambda: sdpa(q, k, v, True), cfg.repeats, cfg.warmup)
            yield {"op": "attention_prefill", "dtype": name, "kv_dtype": name, "batch": b, "q_len": s, "kv_len": s,
                   "num_heads": h, "num_kv_heads": kv, "head_dim": 128, "time_s": med, "repeats": reps, "spread_frac": spread}
        for b, s in decode:
            q = torch.randn(b, h, 1, 128, device=dev, dtype=dt)
            k = torch.randn(b, kv, s, 128, device=dev, dtype=dt)
            v = torch.randn(b, kv, s, 128, device=dev, dtype=dt)
            med, spread, reps = timer(lambda: sdpa(q, k, v, False), cfg.repeats, cfg.warmup)
            yield {"op": "attention_decode", "dtype": name, "kv_dtype": name, "batch": b, "q_len": 1, "kv_len": s,
                   "num_heads": h, "num_kv_heads": kv, "head_dim": 128, "time_s": med, "repeats": reps, "spread_frac": spread}


def _transfer_rows(torch, cfg: SuiteConfig, timer: Timer) -> Iterator[dict]:
    if not cfg.device.startswith("cuda"):
        return
    dev = torch.device(cfg.device)
    for p in (20, 24, 28):
        host = torch.empty(1 << p, dtype=torch.uint8).pin_memory()
        gpu = torch.empty(1 << p, dtype=torch.uint8, device=dev)
        for op, fn in (("h2d", lambda: gpu.copy_(host, non_blocking=True)), ("d2h", lambda: host.copy_(gpu, non_blocking=True))):
            med, spread, reps = timer(fn, cfg.repeats, cfg.warmup)
            yield {"op": op, "bytes": float(1 << p), "time_s": med, "repeats": reps, "spread_frac": spread}


SECTIONS = (("gemm", _gemm_rows), ("fp8 gemm", _fp8_gemm_rows), ("bandwidth", _bandwidth_rows), ("attention", _attention_rows), ("transfer", _transfer_rows))


def device_identity(torch, device: str) -> tuple[str, str]:
    """(device name as the driver reports it, library versions)."""
    versions = f"torch {torch.__version__}; python {platform.python_version()}"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInputError("--device cuda asked for, but torch sees no CUDA device (use --device cpu)")
        idx = torch.device(device).index or 0
        versions += f"; cuda {torch.version.cuda}"
        return torch.cuda.get_device_name(idx), versions
    if device != "cpu":
        raise InvalidInputError(f"unknown device '{device}' (valid: cpu, cuda, cuda:N)")
    return _cpu_model() or platform.processor() or platform.machine(), versions + f"; {torch.get_num_threads()} threads"


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), or '' elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


BUDGET_SHARE = {"gemm": 0.35, "fp8 gemm": 0.15, "bandwidth": 0.15, "attention": 0.3, "transfer": 0.05}


def run_suite(cfg: SuiteConfig, device_label: str) -> list[dict]:
    """Run every section within its share of the time budget (unused time passes on to the next);
    rows carry the device label and provenance."""
    torch = _torch()
    name, versions = device_identity(torch, cfg.device)
    timer = Timer(torch, cfg.device)
    t0 = time.perf_counter()
    rows: list[dict] = cfg.rows
    deadline = t0
    for section, fn in SECTIONS:
        deadline += cfg.budget_s * BUDGET_SHARE[section]
        for row in fn(torch, cfg, timer):
            row.update(device=device_label, source=f"tokenfab calibrate on {name} ({versions})")
            rows.append(row)
            if cfg.progress:
                cfg.progress(section, len(rows), 0)
            if time.perf_counter() > deadline:
                break
        deadline = max(deadline, time.perf_counter())
    return rows


def main(argv: list[str] | None = None) -> None:
    from tokenfab.calibrate.measurements import write_measurements
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--label", default=None, help="device name in the file (default: cpu-host or the GPU's name)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget-s", type=float, default=600.0)
    args = ap.parse_args(argv)
    cfg = SuiteConfig(device=args.device, quick=args.quick, budget_s=args.budget_s)
    name = device_identity(_torch(), args.device)[0]
    label = args.label or ("cpu-host" if args.device == "cpu" else catalog_name_for(name) or name)
    rows = run_suite(cfg, label)
    write_measurements(pd.DataFrame(rows), args.out)
    print(f"{len(rows)} measurements written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
