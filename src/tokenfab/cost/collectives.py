"""Cost of collectives (all-reduce, all-gather, reduce-scatter, all-to-all, send/recv)
over a system's links.

Time = per-step latency x algorithm steps + the faster of two protocols (low latency
for small messages, full bandwidth for large ones), each a latency plus bus bytes over
a fitted fraction of the link's one-direction bandwidth; bus bytes follow NCCL's
convention (all-reduce moves 2(n-1)/n of the message per device, gathers and scatters
(n-1)/n). Within one scale-up domain the intra-node link is
used; across nodes the collective is hierarchical (reduce-scatter inside the node,
the reduced shard across nodes over the scale-out NIC, all-gather inside the node).
The fitted parameters already reflect the algorithm the library chose (ring, tree,
NVLS) on the measured fabric; unmeasured fabrics use the generic fit.

A full-mesh fabric (Ascend HCCS, AMD xGMI: one point-to-point link to each of the other
D-1 chips, the chip's bandwidth split evenly over them) runs direct algorithms instead:
every device sends each peer its share at once, so n devices use n-1 links in parallel
(bandwidth link_bw x (n-1)/(D-1)) in one step per phase (all-reduce: a direct
reduce-scatter then a direct all-gather). This is why HCCL's measured bus bandwidth
grows as n-1 on an 8-NPU node (vendors/README.md).
"""

from __future__ import annotations

import math

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.profile import CollectiveParams
from tokenfab.cost.result import OpCost
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.hardware.spec import LinkSpec, SystemSpec

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
_CLI_NAMES = {"allreduce": "all_reduce", "allgather": "all_gather", "reducescatter": "reduce_scatter",
              "alltoall": "all_to_all", "sendrecv": "send_recv"}


def collective_name(name: str) -> str:
    """Canonical collective name from CLI spelling ('allreduce') or canonical ('all_reduce')."""
    key = name.replace("-", "_")
    key = _CLI_NAMES.get(key.replace("_", ""), key)
    if key not in COLLECTIVES:
        raise UnknownNameError("collective", name, list(_CLI_NAMES))
    return key


def bus_factor(name: str, n: int) -> float:
    """Bytes each device moves per byte of message (NCCL 'bus bandwidth' normalisation)."""
    if name == "all_reduce":
        return 2.0 * (n - 1) / n
    if name == "send_recv":
        return 1.0
    return (n - 1) / n


def steps(name: str, n: int) -> int:
    """Latency-bearing steps of the ring algorithm."""
    if name == "all_reduce":
        return 2 * (n - 1)
    if name == "send_recv":
        return 1
    return n - 1


def tree_steps(n: int) -> int:
    """Latency-bearing steps of a (double binary) tree all-reduce: reduce up, broadcast down."""
    return 2 * math.ceil(math.log2(n))


TREE_BUS_FACTOR = 2.0  # a pipelined tree all-reduce moves the whole message up and down once


def mesh_steps(name: str) -> int:
    """Latency-bearing steps of the direct algorithm on a full mesh."""
    return 2 if name == "all_reduce" else 1


def mesh_bandwidth(link_bw: float, n: int, domain_size: int) -> float:
    """Bandwidth `n` devices of a `domain_size` full mesh use at once: n-1 of the D-1 links."""
    return link_bw * (n - 1) / max(domain_size - 1, 1)


def flat_time_s(
    name: str, n: int, message_bytes: float, link_bw: float, p: CollectiveParams, mesh_domain: int = 0,
) -> tuple[float, float]:
    """(time, link-bound lower limit) of one collective among `n` devices on one fabric.

    All-reduce takes the faster of the ring (2(n-1) steps, 2(n-1)/n of the message per device)
    and the tree (2 log2 n steps, twice the message), as NCCL chooses between them; the tree
    wins for small messages on many devices. Every other collective runs as a ring.
    `mesh_domain` > 0: a full mesh of that many chips, direct algorithms (module doc).
    """
    if n <= 1 or message_bytes <= 0:
        return 0.0, 0.0
    bus = bus_factor(name, n) * message_bytes
    if mesh_domain > 0:
        bw = mesh_bandwidth(link_bw, n, mesh_domain)
        return p.per_step_latency_s * mesh_steps(name) + _protocols(bus, bw, p), bus / bw
    ring = p.per_step_latency_s * steps(name, n) + _protocols(bus, link_bw, p)
    if name == "all_reduce" and n > 2:
        tree_bus = TREE_BUS_FACTOR * message_bytes
        tree = p.per_step_latency_s * tree_steps(n) + _protocols(tree_bus, link_bw, p)
        if tree < ring:
            return tree, tree_bus / link_bw
    return ring, bus / link_bw


def _protocols(bus_bytes: float, link_bw: float, p: CollectiveParams) -> float:
    """The faster of the low-latency and the bandwidth protocol for `bus_bytes` per device."""
    small = p.small_latency_s + bus_bytes / (link_bw * p.small_bus_eff)
    large = p.latency_s + bus_bytes / (link_bw * p.bus_eff)
    return min(small, large)


def _link_bw(link: LinkSpec | None, what: str, system: SystemSpec | None = None) -> float:
    if link is None:
        where = ""
        if system is not None and system.chip.scale_up is None:
            where = (f" ({system.chip.name} has no scale-up link in the catalog because none is published; "
                     f"run it on 1 device or give a system file with an intra-node link)")
        raise InvalidInputError(f"the system has no {what} link to run a collective over{where}")
    return link.bandwidth_bytes_per_s.value


def mesh_domain(link: LinkSpec | None) -> int:
    """Domain size when `link` is a full mesh (direct algorithms), else 0."""
    return link.domain_size if link is not None and link.topology == "full-mesh" else 0


def estimate_collective(
    cc: ChipCost, system: SystemSpec, name: str, num_devices: int, message_bytes: float, *, op: str | None = None,
    implementation: str = "",
) -> OpCost:
    """One collective of `message_bytes` (per device, NCCL's message size) among `num_devices`.

    `implementation` selects another fitted kernel for the same collective, e.g. "oneshot" for an
    inference engine's custom one-shot all-reduce (profile key 'all_reduce_oneshot').
    """
    name = collective_name(name)
    if num_devices < 1 or num_devices > system.num_devices:
        raise InvalidInputError(f"a collective over {num_devices} devices does not fit a system of {system.num_devices}")
    if message_bytes < 0:
        raise InvalidInputError(f"message size must be >= 0 bytes, got {message_bytes}")
    fit_name = f"{name}_{implementation}" if implementation else name
    if name == "send_recv" and not cc.resolved.has_collective(name):
        fit_name = "all_gather"
    per_node = min(num_devices, system.chips_per_node)
    params, source = cc.resolved.collective(fit_name, 2 if name == "send_recv" else per_node)
    intra_bw = _link_bw(system.scale_up_link, "scale-up", system) if per_node > 1 else 0.0
    mesh = mesh_domain(system.scale_up_link)
    if name == "send_recv" or num_devices <= system.chips_per_node:
        if name == "send_recv" and num_devices > system.chips_per_node:
            intra_bw, mesh = _link_bw(system.scale_out_link, "scale-out", system), 0
        n = 2 if name == "send_recv" else num_devices
        time_s, bound = flat_time_s(name, n, message_bytes, intra_bw, params, mesh)
    else:
        nodes = math.ceil(num_devices / per_node)
        inter_bw = _link_bw(system.scale_out_link, "scale-out", system)
        time_s = bound = 0.0
        if name in ("all_reduce", "reduce_scatter") and per_node > 1:
            t, b = flat_time_s("reduce_scatter", per_node, message_bytes, intra_bw, params, mesh)
            time_s, bound = time_s + t, bound + b
        shard = message_bytes / per_node if name in ("all_reduce", "reduce_scatter", "all_gather") else message_bytes
        t, b = flat_time_s(name, nodes, shard, inter_bw, params)
        time_s, bound = time_s + t, bound + b
        if name in ("all_reduce", "all_gather") and per_node > 1:
            t, b = flat_time_s("all_gather", per_node, message_bytes, intra_bw, params, mesh)
            time_s, bound = time_s + t, bound + b
    moved = bus_factor(name, max(num_devices, 2)) * message_bytes if num_devices > 1 else 0.0
    return OpCost(op or name, time_s, 0.0, moved, "network", bound, source)


def bus_bandwidth_bytes_per_s(name: str, num_devices: int, message_bytes: float, time_s: float) -> float:
    """NCCL-tests 'busbw': algorithm bandwidth times the bus factor."""
    if time_s <= 0 or num_devices <= 1:
        return 0.0
    return message_bytes / time_s * bus_factor(collective_name(name), num_devices)
