"""`tokenfab op gemm|attention|moe|allreduce|allgather|reducescatter|alltoall`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokenfab import api
from tokenfab.cli.format import banded, ms, rate
from tokenfab.cli.main import app, emit_json, out

op_app = typer.Typer(no_args_is_help=True, help="Cost of one operator on one device (or one collective).")
app.add_typer(op_app, name="op")

HwOpt = Annotated[str, typer.Option("--hardware", "-H", help="Chip name or path to a chip YAML.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
BandOpt = Annotated[float, typer.Option(help="Level of the error band (time_s_lo, time_s_hi; docs/bands.md).")]


def _show(result: api.OpResult, as_json: bool) -> None:
    d = result.to_dict()
    if as_json:
        emit_json(d)
        return
    t = Table(title=f"{d['op']} on {d['hardware']}", show_header=False)
    t.add_row(f"time ({d['band_level']:.0%} band)", banded(d, "time_s"))
    t.add_row("bound", d["bound"])
    if "tflops" in d:
        t.add_row("achieved", f"{d['tflops']:.1f} TFLOP/s")
    if "bus_bandwidth_bytes_per_s" in d:
        t.add_row("bus bandwidth", rate(d["bus_bandwidth_bytes_per_s"], "B/s"))
    t.add_row("roofline", ms(d["roofline_s"]))
    t.add_row("efficiency curves", d["efficiency_source"])
    out.print(t)


@op_app.command()
def gemm(
    hardware: HwOpt = "h100-sxm",
    m: Annotated[int, typer.Option(help="Rows of A and C (tokens).")] = ...,
    n: Annotated[int, typer.Option(help="Columns of W and C.")] = ...,
    k: Annotated[int, typer.Option(help="Inner dimension.")] = ...,
    dtype: Annotated[str, typer.Option(help="Activation (input) format.")] = "bf16",
    weight_dtype: Annotated[str | None, typer.Option(help="Weight format (weight-only quantisation).")] = None,
    warm_cache: Annotated[bool, typer.Option(help="Model a microbenchmark loop whose operands may stay in on-chip cache.")] = False,
    band_level: BandOpt = 0.9,
    as_json: JsonOpt = False,
) -> None:
    """C[m,n] = A[m,k] @ W[k,n]."""
    _show(api.op("gemm", hardware, m=m, n=n, k=k, dtype=dtype, weight_dtype=weight_dtype, warm_cache=warm_cache,
                band_level=band_level), as_json)


@op_app.command()
def attention(
    hardware: HwOpt = "h100-sxm",
    phase: Annotated[str, typer.Option(help="prefill or decode.")] = "decode",
    batch: Annotated[int, typer.Option(help="Sequences.")] = 1,
    q_len: Annotated[int | None, typer.Option(help="New tokens per sequence (prefill; default kv-len).")] = None,
    kv_len: Annotated[int, typer.Option(help="Positions attended to per sequence.")] = 1024,
    heads: Annotated[int, typer.Option(help="Query heads on this device.")] = 32,
    kv_heads: Annotated[int | None, typer.Option(help="KV heads on this device (default = heads).")] = None,
    head_dim: Annotated[int, typer.Option(help="Head dimension.")] = 128,
    dtype: Annotated[str, typer.Option(help="Activation format.")] = "bf16",
    kv_dtype: Annotated[str | None, typer.Option(help="KV-cache format.")] = None,
    band_level: BandOpt = 0.9,
    as_json: JsonOpt = False,
) -> None:
    """Attention of one layer on one device."""
    _show(api.op("attention", hardware, phase=phase, batch=batch, q_len=q_len, kv_len=kv_len, heads=heads,
                 kv_heads=kv_heads, head_dim=head_dim, dtype=dtype, kv_dtype=kv_dtype, band_level=band_level), as_json)


@op_app.command()
def moe(
    hardware: HwOpt = "h100-sxm",
    tokens: Annotated[int, typer.Option(help="Tokens routed across the expert-parallel group.")] = ...,
    hidden: Annotated[int, typer.Option(help="Model hidden size.")] = ...,
    intermediate: Annotated[int, typer.Option(help="Per-expert intermediate width (before --moe-tp splits it).")] = ...,
    topk: Annotated[int, typer.Option(help="Experts each token is routed to.")] = ...,
    experts: Annotated[int, typer.Option(help="Routed experts of the layer.")] = ...,
    moe_tp: Annotated[int, typer.Option("--moe-tp", help="Tensor-parallel split inside each expert.")] = 1,
    ep: Annotated[int, typer.Option(help="Expert-parallel ranks the experts are spread over.")] = 1,
    dtype: Annotated[str, typer.Option(help="Activation format (fp8 with --weight-dtype fp4: MXFP4 x MXFP8).")] = "bf16",
    weight_dtype: Annotated[str | None, typer.Option(help="Expert weight format.")] = None,
    gated: Annotated[bool, typer.Option("--gated/--no-gated", help="Gated (SwiGLU) experts or a plain up projection.")] = True,
    distribution: Annotated[str, typer.Option(help="Token routing: balanced, uniform, power-law:A or zipf:S (skewed expert popularity).")] = "balanced",
    warm_cache: Annotated[bool, typer.Option(help="Model a microbenchmark loop whose weights may stay in on-chip cache.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One fused MoE FFN layer (routed experts) on one device's shard."""
    _show(api.op("moe", hardware, tokens=tokens, hidden=hidden, intermediate=intermediate, topk=topk, experts=experts,
                 moe_tp=moe_tp, ep=ep, dtype=dtype, weight_dtype=weight_dtype, gated=gated, distribution=distribution,
                 warm_cache=warm_cache), as_json)


def _collective(name: str):
    def command(
        hardware: HwOpt = "h100-sxm",
        devices: Annotated[int, typer.Option(help="Devices in the collective.")] = 8,
        bytes_: Annotated[float, typer.Option("--bytes", help="Message size in bytes (NCCL's message size).")] = ...,
        band_level: BandOpt = 0.9,
        as_json: JsonOpt = False,
    ) -> None:
        _show(api.op(name, hardware, devices=devices, bytes=bytes_, band_level=band_level), as_json)

    command.__doc__ = f"{name} among --devices devices of one system."
    op_app.command(name=name)(command)


for _name in ("allreduce", "allgather", "reducescatter", "alltoall"):
    _collective(_name)
