"""The hardware catalog: one YAML file per chip under `hardware/chips/`, one per system
under `hardware/systems/`. A path to a user's YAML file works anywhere a name does.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import yaml
from pydantic import ValidationError

from tokenfab.errors import DataFileError, InvalidInputError, UnknownNameError
from tokenfab.hardware.spec import ChipSpec, NodePowerSpec, SystemSpec

_HERE = Path(__file__).parent
CHIP_DIR = _HERE / "chips"
SYSTEM_DIR = _HERE / "systems"


# libyaml's parser when PyYAML was built with it: the same safe constructors, parsing ~10x faster (a chip's
# efficiency profile and the band table are read on every fresh process's first call, in its timed path)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or "/" in name or "\\" in name


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping, turning every way it can be wrong into a one-line DataFileError."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise DataFileError(f"malformed YAML in {path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise DataFileError(f"{path} must hold a YAML mapping, not {type(data).__name__}")
    return data


def validation_message(exc: ValidationError) -> str:
    """The first validation problem as 'field.path: message' (one line)."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"


NODES_PATH = _HERE / "nodes.yaml"


@functools.lru_cache(maxsize=1)
def _node_table() -> dict[str, tuple[NodePowerSpec, int]]:
    data = read_yaml(NODES_PATH) if NODES_PATH.exists() else {}
    table = {}
    for name, entry in data.items():
        try:
            spec = NodePowerSpec.model_validate({k: v for k, v in entry.items() if k not in ("chips", "chips_per_node")})
        except ValidationError as exc:
            raise DataFileError(f"invalid node power entry {name} in {NODES_PATH}: {validation_message(exc)}") from None
        for chip in entry.get("chips", []):
            table[chip] = (spec, int(entry["chips_per_node"]))
    return table


def node_power_of(chip_name: str) -> tuple[NodePowerSpec, int] | None:
    """(node power spec, accelerators per node) of the server a chip ships in, if the catalog knows it."""
    return _node_table().get(chip_name)


def chip_names() -> list[str]:
    """Names of every chip in the built-in catalog."""
    return sorted(p.stem for p in CHIP_DIR.glob("*.yaml"))


def system_names() -> list[str]:
    return sorted(p.stem for p in SYSTEM_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=256)
def load_chip(name: str) -> ChipSpec:
    """A chip by catalog name (e.g. 'h100-sxm') or by YAML path."""
    if _looks_like_path(name):
        path = Path(name)
        if not path.exists():
            raise DataFileError(f"chip file {name} does not exist")
    else:
        path = CHIP_DIR / f"{name}.yaml"
        if not path.exists():
            raise UnknownNameError("hardware", name, chip_names() + system_names())
    data = read_yaml(path)
    try:
        chip = ChipSpec.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(f"invalid chip spec {path}: {validation_message(exc)}") from None
    return chip


@functools.lru_cache(maxsize=256)
def load_system(name: str, devices: int | None = None) -> SystemSpec:
    """A system by name or path, or a chip name/path turned into the smallest system of
    `devices` chips: whole scale-up domains (nodes) of the chip's domain size.

    Asking a fixed system for more devices than it has is an error.
    """
    if devices is not None and devices < 1:
        raise InvalidInputError(f"--devices must be at least 1, got {devices}")
    system_path = None
    if _looks_like_path(name):
        path = Path(name)
        if not path.exists():
            raise DataFileError(f"hardware file {name} does not exist")
        data = read_yaml(path)
        if "chip" in data and "chips_per_node" in data:
            system_path = path
        else:
            return system_of_chip(load_chip(name), devices)
    elif (SYSTEM_DIR / f"{name}.yaml").exists():
        system_path = SYSTEM_DIR / f"{name}.yaml"
        data = read_yaml(system_path)
    else:
        return system_of_chip(load_chip(name), devices)

    chip_ref = data.get("chip")
    if isinstance(chip_ref, str):
        data = {**data, "chip": load_chip(chip_ref).model_dump()}
    try:
        system = SystemSpec.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(f"invalid system spec {system_path}: {validation_message(exc)}") from None
    if system.node_power is None and (known := node_power_of(system.chip.name)) is not None:
        system = system.model_copy(update={"node_power": known[0]})
    if devices is not None and devices > system.num_devices:
        raise InvalidInputError(
            f"{devices} devices requested but system '{system.name}' has {system.num_devices} "
            f"({system.num_nodes} node(s) x {system.chips_per_node})"
        )
    return system


def system_of_chip(chip: ChipSpec, devices: int | None) -> SystemSpec:
    devices = devices or 1
    domain = chip.scale_up.domain_size if chip.scale_up else 1
    per_node = min(devices, domain)
    nodes = math.ceil(devices / per_node)
    if per_node * nodes != devices:
        raise InvalidInputError(
            f"{devices} devices of {chip.name} do not fill whole nodes of {domain}; "
            f"use a multiple of {domain} (e.g. {domain * nodes}) or at most {domain}"
        )
    known = node_power_of(chip.name)
    return SystemSpec(
        name=f"{chip.name}-x{devices}",
        display_name=f"{devices} x {chip.display_name}",
        chip=chip,
        chips_per_node=per_node,
        num_nodes=nodes,
        node_power=known[0] if known else None,
    )
