"""Design knobs: dotted paths into a chip's YAML, how they are ranged, and how a point's chip is built.

`--vary memory.bandwidth_bytes_per_s=2e12:4e12:5` varies one number of the base chip from
2e12 to 4e12 in 5 steps; `--vary process_node=tsmc-n7,tsmc-n5` picks among process nodes
(keys of silicon/data/nodes.yaml). A point's chip is the base chip with its knobs replaced,
built with pydantic's `model_copy(update=...)` (no YAML, no re-validation: the ranges are
checked here once), so that ten thousand points cost milliseconds to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.hardware.spec import ChipSpec, Sourced
from tokenfab.silicon import load_node, node_names
from tokenfab.units import DTYPES

PROCESS_NODE = "process_node"

# Numeric knobs: dotted path -> (what it is, integer-valued)
_NUMERIC: dict[str, tuple[str, bool]] = {
    **{f"peak_flop_per_s.{d}": (f"dense {d} matrix peak, FLOP/s", False) for d in DTYPES},
    "vector_flop_per_s": ("vector (non-matrix) peak, FLOP/s", False),
    "memory.capacity_bytes": ("HBM/DRAM capacity, bytes", False),
    "memory.bandwidth_bytes_per_s": ("HBM/DRAM bandwidth, bytes/s", False),
    "onchip_sram_bytes": ("on-chip SRAM/L2 capacity, bytes", False),
    "onchip_sram_bandwidth_bytes_per_s": ("on-chip SRAM/L2 bandwidth, bytes/s", False),
    "scale_up.bandwidth_bytes_per_s": ("scale-up link bandwidth per chip and direction, bytes/s", False),
    "scale_out.bandwidth_bytes_per_s": ("scale-out bandwidth per chip and direction, bytes/s", False),
    "num_compute_units": ("SMs / cores", True),
    "die_area_mm2": ("compute-die area, mm^2", False),
    "power.tdp_w": ("board power, W", False),
    "power.idle_w": ("idle power, W", False),
}

KNOB_SOURCE = "tokenfab sweep design point"


def costed_nodes() -> list[str]:
    """Process nodes whose data has everything the cost per good die needs (a mature D0)."""
    return [n for n in node_names() if load_node(n).defect_density_per_cm2 is not None]


def knob_names() -> list[str]:
    """Every dotted path `--vary` accepts."""
    return sorted([*_NUMERIC, PROCESS_NODE])


@dataclass(frozen=True, slots=True)
class KnobRange:
    """One `--vary`: numeric [lo, hi] with `num_points` grid steps, or a list of node keys."""

    path: str
    lo: float = 0.0
    hi: float = 0.0
    num_points: int = 1
    choices: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        return bool(self.choices)

    def grid(self) -> list[Any]:
        """The grid values of this knob (evenly spaced, ends included)."""
        if self.categorical:
            return list(self.choices)
        if self.num_points == 1:
            return [self.lo]
        step = (self.hi - self.lo) / (self.num_points - 1)
        values = [self.lo + i * step for i in range(self.num_points)]
        return [round(v) for v in values] if _NUMERIC[self.path][1] else values

    def at(self, u: float) -> Any:
        """The value at fraction `u` in [0, 1) of the range (for low-discrepancy samples)."""
        if self.categorical:
            return self.choices[min(len(self.choices) - 1, int(u * len(self.choices)))]
        value = self.lo + u * (self.hi - self.lo)
        return round(value) if _NUMERIC[self.path][1] else value


def parse_vary(text: str) -> KnobRange:
    """Parse 'FIELD=LO:HI:N' (numbers, SI) or 'process_node=KEY[,KEY...]'."""
    if "=" not in text:
        raise InvalidInputError(f"--vary '{text}' must look like FIELD=LO:HI:N (e.g. memory.bandwidth_bytes_per_s=2e12:4e12:5)")
    path, spec = (s.strip() for s in text.split("=", 1))
    if path == PROCESS_NODE:
        choices = tuple(c.strip() for c in spec.split(",") if c.strip())
        if not choices:
            raise InvalidInputError(f"--vary {path}= needs node keys (valid: {', '.join(costed_nodes())})")
        for c in choices:
            load_node(c)  # UnknownNameError with the nearest keys
            if c not in costed_nodes():
                raise InvalidInputError(f"process node '{c}' has no published defect density, so no cost per good die "
                                        f"(nodes with one: {', '.join(costed_nodes())})")
        return KnobRange(path, choices=choices)
    if path not in _NUMERIC:
        raise UnknownNameError("sweep field", path, knob_names())
    parts = spec.split(":")
    try:
        lo, hi = float(parts[0]), float(parts[1] if len(parts) > 1 else parts[0])
        num = int(parts[2]) if len(parts) > 2 else (1 if lo == hi else 5)
    except (ValueError, IndexError):
        raise InvalidInputError(f"--vary {path}={spec}: expected LO:HI:N with numbers, e.g. {path}=1e12:4e12:4") from None
    if len(parts) > 3 or not (0 < lo <= hi) or num < 1 or (num > 1 and lo == hi):
        raise InvalidInputError(f"--vary {path}={spec}: need 0 < LO <= HI and N >= 1 (N = 1 only when LO = HI)")
    return KnobRange(path, lo, hi, num)


def check_base(base: ChipSpec, ranges: list[KnobRange]) -> None:
    """Knobs the base chip cannot take (a rate it lacks, a link it has not) fail before any work."""
    seen = set()
    for r in ranges:
        if r.path in seen:
            raise InvalidInputError(f"--vary {r.path} given twice")
        seen.add(r.path)
        head, _, leaf = r.path.partition(".")
        if head == "peak_flop_per_s" and leaf not in base.peak_flop_per_s:
            raise InvalidInputError(f"{base.name} has no {leaf} rate to vary (it has {', '.join(base.peak_flop_per_s)})")
        if head in ("scale_up", "scale_out") and getattr(base, head) is None:
            raise InvalidInputError(f"{base.name} has no {head} link to vary")


def _sourced(old: Sourced | None, value: float) -> Sourced:
    if old is None:
        return Sourced(value=value, source=KNOB_SOURCE, basis="template")
    return old.model_copy(update={"value": float(value), "source": KNOB_SOURCE, "basis": "template"})


def apply_knobs(base: ChipSpec, knobs: dict[str, Any]) -> ChipSpec:
    """The base chip with each knob set (values already range-checked by `parse_vary`)."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in knobs.items():
        if path == PROCESS_NODE:
            top[PROCESS_NODE] = value
            continue
        head, _, leaf = path.partition(".")
        if head == "peak_flop_per_s":
            peaks = top.setdefault("peak_flop_per_s", dict(base.peak_flop_per_s))
            peaks[leaf] = _sourced(peaks.get(leaf), value)
        elif leaf:
            nested.setdefault(head, {})[leaf] = value
        else:
            top[head] = _sourced(getattr(base, head), value)
    for head, leaves in nested.items():
        parent = getattr(base, head)
        update = {k: _sourced(getattr(parent, k), v) for k, v in leaves.items()}
        if head == "memory" and "capacity_bytes" in leaves:
            update["device_reported_bytes"] = None  # a design point's capacity is what its software sees
            update["cuda_total_bytes"] = None  # (and CUDA's total of the base chip no longer applies)
        top[head] = parent.model_copy(update=update)
    return base.model_copy(update=top)


# Free-text process nodes of the catalog -> silicon node keys (the closest node with cost data).
_NODE_WORDS = (("smic", "smic-n+2"), ("4n", "tsmc-n5"), ("n5", "tsmc-n5"), ("5nm", "tsmc-n5"), ("n3", "tsmc-n3"),
               ("3nm", "tsmc-n3"), ("n7", "tsmc-n7"), ("7nm", "tsmc-n7"), ("n10", "tsmc-n10"), ("10nm", "tsmc-n10"),
               ("28nm", "tsmc-28nm"))


def silicon_node(chip: ChipSpec) -> str:
    """The silicon-cost node key of a chip: its `process_node` if that is a key, else the node the
    catalog's free text names (TSMC 4N/4NP are N5-family, SMIC 7nm-class is N+2); else an error
    asking for `--vary process_node=...`."""
    text = chip.process_node.strip().lower()
    key = text if text in node_names() else next((k for w, k in _NODE_WORDS if w in text.replace(" ", "")), None)
    if key in costed_nodes():
        return key
    raise InvalidInputError(
        f"{chip.name}'s process node '{chip.process_node}' has no silicon cost data; "
        f"give one with --vary process_node=KEY (valid: {', '.join(costed_nodes())})"
    )
