"""`tokenfab hw list|show` and `tokenfab model list|show`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tokenfab.cli.format import flatten_sourced, gb, quantity, rate
from tokenfab.cli.main import app, emit_json, out
from tokenfab.cost.profile import resolve_profile
from tokenfab.hardware.catalog import chip_names, load_chip, load_system, system_names
from tokenfab.workload.hf_config import load_model, model_names
from tokenfab.workload.onnx_graph import graph_names, load_graph
from tokenfab.workload.params import count_parameters

hw_app = typer.Typer(no_args_is_help=True, help="The hardware catalog.")
model_app = typer.Typer(no_args_is_help=True, help="The bundled models.")
app.add_typer(hw_app, name="hw")
app.add_typer(model_app, name="model")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@hw_app.command("list")
def hw_list(as_json: JsonOpt = False) -> None:
    """Chips and systems in the catalog."""
    chips = [load_chip(n) for n in chip_names()]
    if as_json:
        emit_json({"chips": [c.name for c in chips], "systems": system_names()})
        return
    t = Table(title="chips")
    for col in ("name", "product", "bf16 dense", "fp8 dense", "memory", "bandwidth", "TDP", "curves"):
        t.add_column(col)
    for c in chips:
        peak = lambda d: rate(c.peak(d), "FLOP/s") if c.supports(d) else "-"  # noqa: E731
        t.add_row(c.name, c.display_name, peak("bf16"), peak("fp8"), gb(c.memory_capacity_bytes),
                  rate(c.memory_bandwidth_bytes_per_s, "B/s"), f"{c.power.tdp_w.value:.0f} W", resolve_profile(c).provenance)
    out.print(t)
    out.print("systems: " + ", ".join(system_names()))


@hw_app.command("show")
def hw_show(name: Annotated[str, typer.Argument(help="Chip or system name, or YAML path.")], as_json: JsonOpt = False) -> None:
    """Every field of a chip (or system) with its source."""
    if name in system_names():
        spec = load_system(name)
        data = spec.model_dump(mode="json")
    else:
        chip = load_chip(name)
        data = chip.model_dump(mode="json", exclude_none=True)
        resolved = resolve_profile(chip)
        data["efficiency_curves"] = {"provenance": resolved.provenance, "note": resolved.note}
    if as_json:
        emit_json(data)
        return
    _print_spec(data)


def _print_spec(data: dict) -> None:
    """Plain fields, then each sourced number in human units with its basis and source (JSON stays SI)."""
    plain = Table(title=data.get("display_name") or data.get("name"), show_header=False)
    for key, value in data.items():
        if not isinstance(value, dict | list):
            plain.add_row(key, str(value))
    out.print(plain)
    numbers = Table(title="figures (SI in --json)")
    for col in ("field", "value", "basis", "source / note"):
        numbers.add_column(col, overflow="fold")
    for path, item in flatten_sourced(data):
        note = f" ({item['note']})" if item.get("note") else ""
        numbers.add_row(path, quantity(path, item["value"]), item["basis"], f"{item['source']}{note}")
    out.print(numbers)
    for key, value in data.items():
        if isinstance(value, dict) and not flatten_sourced({key: value}) and key != "efficiency_profile":
            out.print(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))


@model_app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    """Bundled models with their parameter counts."""
    rows = []
    for name in model_names():
        spec = load_model(name)
        p = count_parameters(spec)
        rows.append({"name": name, "family": spec.family, "layers": spec.num_layers, "hidden": spec.hidden_size,
                     "params": p.total, "active_params": p.active, "moe": spec.is_moe})
    graphs = [{"name": g, "params": load_graph(g, 1).weight_elements, "format": "onnx"} for g in graph_names()]
    if as_json:
        emit_json({"models": rows, "graphs": graphs})
        return
    t = Table(title="bundled models")
    for col in ("name", "family", "layers", "hidden", "params", "active"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["family"], str(r["layers"]), str(r["hidden"]), f"{r['params'] / 1e9:.2f} B",
                  f"{r['active_params'] / 1e9:.2f} B")
    out.print(t)
    g = Table(title="bundled ONNX graphs (predict --model NAME or PATH.onnx)")
    for col in ("name", "params"):
        g.add_column(col)
    for r in graphs:
        g.add_row(r["name"], f"{r['params'] / 1e6:.1f} M")
    out.print(g)


@model_app.command("show")
def model_show(name: Annotated[str, typer.Argument(help="Bundled model name or config.json path.")], as_json: JsonOpt = False) -> None:
    """Architecture and parameter counts of a model."""
    spec = load_model(name)
    p = count_parameters(spec)
    data = spec.model_dump(mode="json")
    data["parameters"] = {"total": p.total, "active": p.active, "embedding": p.embedding, "lm_head": p.lm_head,
                          "attention": p.attention, "dense_ffn": p.dense_ffn, "routed_experts": p.routed_experts}
    if as_json:
        emit_json(data)
        return
    out.print_json(data=data)
