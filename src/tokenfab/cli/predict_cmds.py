"""`tokenfab predict` and `tokenfab demo`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokenfab import api
from tokenfab.cli.format import banded, gb, ms, pct, rate
from tokenfab.cli.main import app, emit_json, err, out
from tokenfab.errors import DoesNotFitError

ModelOpt = Annotated[str, typer.Option("--model", "-m", help=(
    "Bundled model name, path to a config.json, or an ONNX graph: PATH.onnx or a bundled 'resnet-50' / 'bert-large' "
    "(then --batch, --dp and --dtype int8|fp16 apply and the result has throughput_samples_per_s and latency_s)."))]
HwOpt = Annotated[str, typer.Option("--hardware", "-H", help="Chip or system name, or path to a YAML spec.")]


@app.command()
def predict(
    model: ModelOpt = "llama-3.1-8b",
    hardware: HwOpt = "h100-sxm",
    devices: Annotated[int | None, typer.Option(help="Devices in use (default tp x pp x dp).")] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel degree.")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel stages.")] = 1,
    ep: Annotated[int, typer.Option(help="Expert-parallel degree (MoE).")] = 1,
    dp: Annotated[int | None, typer.Option(help="Attention data-parallel ranks (MoE; ep x moe-tp = tp x dp) or, for dense models, replicas (default devices / (tp x pp)).")] = None,
    moe_tp: Annotated[int | None, typer.Option("--moe-tp", help="Tensor-parallel split inside each expert (default tp x dp / ep).")] = None,
    moe_dispatch: Annotated[str, typer.Option(help="MoE token exchange with attention-DP: normal or low-latency (DeepEP all-to-all), or allgather (all-gather / reduce-scatter, TensorRT-LLM without MNNVL or DeepEP).")] = "normal",
    two_batch_overlap: Annotated[bool, typer.Option("--two-batch-overlap", help="Run MoE steps as two micro-batches whose expert all-to-all hides under the other's compute (SGLang --enable-two-batch-overlap); needs --ep > 1.")] = False,
    num_redundant_experts: Annotated[int, typer.Option("--num-redundant-experts", help="Extra expert slots over the EP group, filled with copies of the most loaded experts and placed by load (DeepSeek's EPLB; SGLang --ep-num-redundant-experts, vLLM --num-redundant-experts); experts + slots must be a multiple of --ep. Default 0: no EPLB, as the engines default to.")] = 0,
    dtype: Annotated[str, typer.Option(help="Compute/activation format: fp32 tf32 bf16 fp16 fp8 int8 int4 fp4.")] = "bf16",
    weight_dtype: Annotated[str | None, typer.Option(help="Weight format for weight-only quantisation.")] = None,
    kv_dtype: Annotated[str | None, typer.Option(help="KV-cache format (default: 16-bit).")] = None,
    batch: Annotated[int, typer.Option(help="Requests in the static batch.")] = 1,
    input_len: Annotated[int, typer.Option(help="Prompt tokens per request.")] = 1024,
    output_len: Annotated[int, typer.Option(help="Generated tokens per request.")] = 128,
    memory_utilization: Annotated[float, typer.Option(help="Usable fraction of device memory.")] = 0.9,
    allow_no_fit: Annotated[bool, typer.Option(help="Print the result even if it does not fit in memory.")] = False,
    band_level: Annotated[float, typer.Option(help="Level of the error bands (F_lo, F_hi; docs/bands.md).")] = 0.9,
    spec_method: Annotated[str | None, typer.Option(help="Speculative decoding: draft | eagle | mtp.")] = None,
    spec_tokens: Annotated[int, typer.Option(help="Tokens drafted per speculative step (k).")] = 1,
    spec_acceptance: Annotated[float | None, typer.Option(
        help="Probability each drafted token is accepted (default: the model's published MTP rate, if any).")] = None,
    spec_draft_model: Annotated[str | None, typer.Option(help="Draft model for --spec-method draft.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Latency, throughput, memory and energy of a static batch of requests."""
    result = api.predict(model=model, hardware=hardware, devices=devices, tp=tp, pp=pp, ep=ep, dp=dp, dtype=dtype,
                         weight_dtype=weight_dtype, kv_dtype=kv_dtype, batch=batch, input_len=input_len,
                         output_len=output_len, memory_utilization_frac=memory_utilization, moe_tp=moe_tp,
                         moe_dispatch=moe_dispatch, two_batch_overlap=two_batch_overlap, num_redundant_experts=num_redundant_experts, spec_method=spec_method, spec_tokens=spec_tokens, spec_acceptance=spec_acceptance,
                         spec_draft_model=spec_draft_model, band_level=band_level)
    if "throughput_samples_per_s" in (data := result.to_dict()):
        if not result.fits and not allow_no_fit:
            mem = data["memory_bytes"]
            raise DoesNotFitError(
                f"{result.model} at batch {batch} needs {gb(mem['total_per_device'])} per device but {result.hardware} "
                f"has {gb(mem['capacity_per_device'])}; lower --batch (--allow-no-fit prints the result anyway)")
        emit_json(data) if as_json else print_graph_prediction(data)
        return
    if not result.fits and not allow_no_fit:
        m = result.memory
        raise DoesNotFitError(
            f"{result.model} needs {gb(m.total_bytes)} per device (weights {gb(m.weights_bytes)}, KV {gb(m.kv_cache_bytes)}) "
            f"but {gb(m.usable_bytes)} of {gb(m.capacity_bytes)} is usable; largest batch that fits: "
            f"{result.max_batch_that_fits}" + ("; or raise --tp/--pp" if result.max_batch_that_fits == 0 else "")
            + " (--allow-no-fit prints the result anyway)"
        )
    if as_json:
        emit_json(data)
        return
    print_prediction(data)


def print_graph_prediction(d: dict) -> None:
    t = Table(title=f"{d['model']} on {d['dp']} x {d['hardware']} ({d['dtype']}), batch {d['batch']}", show_header=False)
    t.add_row("latency (one batch)", ms(d["latency_s"]))
    t.add_row("throughput", rate(d["throughput_samples_per_s"], "samples/s"))
    t.add_row("energy per sample", f"{d['energy_j_per_sample']:.4f} J")
    mem = d["memory_bytes"]
    t.add_row("memory per device", f"weights {gb(mem['weights'])}, activations {gb(mem['activations'])} "
              f"of {gb(mem['capacity_per_device'])}; on-chip SRAM {gb(mem['onchip_sram'])}"
              + (" (working set resident on chip)" if d["resident_on_chip"] else ""))
    t.add_row("parameters", f"{d['num_params'] / 1e6:.1f} M")
    if d["costed_as_elementwise"]:
        t.add_row("costed as memory-bound", ", ".join(d["costed_as_elementwise"]))
    out.print(t)
    b = Table(title="where the time goes")
    for col in ("op", "count", "time", "share", "bound"):
        b.add_column(col)
    for row in d["breakdown"][:10]:
        b.add_row(row["op"], str(row["count"]), ms(row["time_s"]), pct(row["time_s"] / d["latency_s"]), row["bound"])
    out.print(b)


def print_prediction(d: dict) -> None:
    title = (f"{d['model']} on {d['devices']} x {d['hardware']} (tp{d['tp']} pp{d['pp']} ep{d['ep']} dp{d['dp']}, "
             f"{d['dtype']}/{d['weight_dtype']} weights/{d['kv_dtype']} KV), batch {d['batch']}, "
             f"{d['input_len']} in / {d['output_len']} out")
    t = Table(title=title, show_header=False)
    tok_s = lambda v: rate(v, "tok/s")  # noqa: E731
    t.add_row(f"TTFT ({d['band_level']:.0%} band)", banded(d, "ttft_s"))
    t.add_row("TPOT", banded(d, "tpot_s"))
    t.add_row("end-to-end", banded(d, "e2e_s"))
    t.add_row("prefill throughput", banded(d, "prefill_tokens_per_s", tok_s))
    t.add_row("decode throughput", banded(d, "decode_tokens_per_s", tok_s))
    t.add_row("throughput (B x O / e2e)", banded(d, "throughput_tokens_per_s", tok_s))
    t.add_row("energy per output token", f"{d['energy_j_per_token']:.3f} J")
    mem = d["memory_bytes"]
    t.add_row("memory per device", f"{gb(mem['total_per_device'])} of {gb(mem['capacity_per_device'])} "
              f"(weights {gb(mem['weights'])}, KV {gb(mem['kv_cache'])}, activations {gb(mem['activations'])})")
    t.add_row("fits / largest batch", f"{'yes' if d['fits'] else 'NO'} / {d['max_batch_that_fits']}")
    t.add_row("efficiency curves", f"{d['efficiency_source']}: {d['efficiency_note']}")
    if spec := d.get("speculative"):
        t.add_row("speculative decoding", f"{spec['method']} k={spec['num_spec_tokens']}, acceptance {spec['acceptance_frac']:.2f} "
                  f"({spec['acceptance_source']}): {spec['tokens_per_iteration']:.2f} tokens per verify step")
    out.print(t)
    b = Table(title="where the time goes (top operators)")
    for col in ("op", "phase", "time", "share", "bound", "MFU", "MBU"):
        b.add_column(col)
    total = d["e2e_s"]
    for row in sorted(d["breakdown"], key=lambda r: -r["time_s"])[:12]:
        b.add_row(row["op"], row["phase"], ms(row["time_s"]), pct(row["time_s"] / total), row["bound"],
                  pct(row["mfu"]), pct(row["mbu"]))
    out.print(b)


@app.command()
def demo() -> None:
    """Predict bundled models on bundled chips with built-in defaults (no files, no network)."""
    cases = [
        ("llama-3.1-8b", "h100-sxm", 1, "bf16"), ("llama-3.1-8b", "h20", 1, "bf16"),
        ("llama-3.1-8b", "ascend-910b", 1, "fp16"), ("llama-3.1-70b", "h100-sxm", 8, "fp8"),
        ("qwen3-30b-a3b", "h20", 1, "bf16"), ("deepseek-v3", "h200-sxm", 8, "fp8"),
    ]
    t = Table(title="tokenfab demo: batch 16, 1024 prompt / 256 output tokens")
    for col in ("model", "hardware", "devices", "dtype", "TTFT", "TPOT", "throughput", "J/token", "mem/device", "curves"):
        t.add_column(col)
    for model, hw, tp, dtype in cases:
        r = api.predict(model=model, hardware=hw, tp=tp, dtype=dtype, batch=16, input_len=1024, output_len=256)
        d = r.to_dict()
        t.add_row(model, hw, str(tp), dtype, ms(d["ttft_s"]), ms(d["tpot_s"]), rate(d["throughput_tokens_per_s"], "tok/s"),
                  f"{d['energy_j_per_token']:.2f}", gb(d["memory_bytes"]["total_per_device"]), d["efficiency_source"])
    out.print(t)
    err.print("[dim]'fitted': this chip's measurements; 'inherited': a measured chip of the same family; "
              "'generic': pooled default. Try: tokenfab predict --help[/dim]")
