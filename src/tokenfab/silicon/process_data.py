"""Foundry and back-end cost data: process nodes and packaging kinds, from YAML.

The numbers live in `silicon/data/*.yaml`, each with its source, so that a new node
or a better wafer-price estimate is a data edit, never a code edit. This module only
validates and serves them.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tokenfab.errors import DataFileError, UnknownNameError
from tokenfab.hardware.catalog import read_yaml, validation_message
from tokenfab.hardware.spec import Sourced
from tokenfab.silicon.ramp import DefectRampSpec
from tokenfab.silicon.yield_models import YieldModel

DATA_DIR = Path(__file__).parent / "data"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeSpec(_Frozen):
    """One process node at one foundry, as the cost model sees it."""

    display_name: str = Field(description="Human name, e.g. 'TSMC N7'.")
    foundry: str = Field(description="Who makes wafers on this node.")
    wafer_price_usd: Sourced = Field(description="Price of one processed 300 mm wafer, USD.")
    defect_density_per_cm2: Sourced | None = Field(
        default=None, description="Mature fatal-defect density D0 per cm^2 (None: no figure found)."
    )
    yield_model: YieldModel = Field(description="The yield model D0 was read or derived under.")
    clustering_alpha: float | None = Field(
        default=None, gt=0, description="Negative-binomial clustering alpha, if that is the model."
    )
    reference_ramp: DefectRampSpec | None = Field(
        default=None, description="A D0 learning curve observed or derived for this node, if any."
    )


class PackagingSpec(_Frozen):
    """One back-end flow: package (with interposer, if any) plus test and assembly."""

    display_name: str = Field(description="Human name of the packaging kind.")
    packaging_usd: Sourced = Field(description="Packaging (substrate, interposer, bonding) per chip, USD.")
    test_assembly_usd: Sourced = Field(description="Final test and assembly per chip, USD.")


class WaferDefaultsSpec(_Frozen):
    """Geometry used when a chip cost spec does not give its own."""

    wafer_diameter_mm: Sourced
    edge_exclusion_mm: Sourced
    scribe_width_mm: Sourced


class NreNodeSpec(_Frozen):
    """Headline one-off cost of a new chip on one node class (design, verification, IP, masks)."""

    design_usd: Sourced = Field(description="Design cost of one new chip, USD (software not included).")
    mask_set_usd: Sourced | None = Field(default=None, description="Mask set alone, USD (inside design_usd).")


class _NreFile(_Frozen):
    nodes: dict[str, NreNodeSpec]


class _NodeFile(_Frozen):
    wafer_defaults: WaferDefaultsSpec
    nodes: dict[str, NodeSpec]


class _PackagingFile(_Frozen):
    hbm_usd_per_gb: Sourced
    packaging: dict[str, PackagingSpec]


def _load(path: Path, model: type[_Frozen]) -> _Frozen:
    try:
        return model.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise DataFileError(f"invalid silicon data file {path}: {validation_message(exc)}") from None


@functools.cache
def _node_file() -> _NodeFile:
    return _load(DATA_DIR / "nodes.yaml", _NodeFile)  # type: ignore[return-value]


@functools.cache
def _packaging_file() -> _PackagingFile:
    return _load(DATA_DIR / "packaging.yaml", _PackagingFile)  # type: ignore[return-value]


def node_names() -> list[str]:
    """Keys of every process node in the data file."""
    return sorted(_node_file().nodes)


def load_node(name: str) -> NodeSpec:
    """A process node by key (e.g. 'tsmc-n7', 'smic-n+2')."""
    nodes = _node_file().nodes
    if name not in nodes:
        raise UnknownNameError("process node", name, nodes)
    return nodes[name]


def packaging_names() -> list[str]:
    return sorted(_packaging_file().packaging)


def load_packaging(name: str) -> PackagingSpec:
    """A packaging kind by key (e.g. 'cowos-s-class')."""
    kinds = _packaging_file().packaging
    if name not in kinds:
        raise UnknownNameError("packaging kind", name, kinds)
    return kinds[name]


def hbm_usd_per_gb() -> Sourced:
    """Default HBM price per decimal GB, with its source."""
    return _packaging_file().hbm_usd_per_gb


def wafer_defaults() -> WaferDefaultsSpec:
    return _node_file().wafer_defaults


@functools.cache
def _nre_file() -> _NreFile:
    return _load(DATA_DIR / "nre.yaml", _NreFile)  # type: ignore[return-value]


def load_nre(node_class: str) -> NreNodeSpec:
    """Headline NRE of a new chip on a node class ('28nm', '16nm', '7nm', '5nm'), with sources."""
    nodes = _nre_file().nodes
    if node_class not in nodes:
        raise UnknownNameError("NRE node class", node_class, nodes)
    return nodes[node_class]
