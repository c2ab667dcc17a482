"""`op`: the cost of one operator (GEMM, attention, a collective) in the API."""

from __future__ import annotations

from dataclasses import dataclass

from tokenfab.api.boundary import OP_RULES, validated
from tokenfab.api.deployment import _dtype, _positive
from tokenfab.cost.bands import DEFAULT_BAND_LEVEL, add_bands, check_level, op_band
from tokenfab.cost.attention import estimate_decode_attention, estimate_prefill_attention
from tokenfab.cost.chip_cost import chip_cost
from tokenfab.cost.collectives import COLLECTIVES, bus_bandwidth_bytes_per_s, collective_name, estimate_collective
from tokenfab.cost.gemm import estimate_gemm
from tokenfab.cost.moe import MoEShape, estimate_moe
from tokenfab.cost.result import OpCost
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.hardware.catalog import load_chip, load_system

OPS = ("gemm", "attention", "moe", "allreduce", "allgather", "reducescatter", "alltoall", "sendrecv")


@dataclass(frozen=True)
class OpResult:
    """Cost of one operator on one device (or one collective on a group of devices)."""

    op: str
    hardware: str
    cost: OpCost
    num_devices: int = 1
    message_bytes: float = 0.0
    family: str = "gemm"
    band_level: float = DEFAULT_BAND_LEVEL

    def to_dict(self) -> dict:
        c = self.cost
        out = {"op": self.op, "hardware": self.hardware, "time_s": c.time_s, "bound": c.bound,
               "flops": c.flops, "bytes": c.bytes, "roofline_s": c.roofline_s, "efficiency_source": c.source}
        if self.op in ("gemm", "attention", "moe"):
            out["tflops"] = c.flops / c.time_s / 1e12 if c.time_s > 0 else 0.0
        if self.op not in ("gemm", "attention", "moe"):
            out["devices"] = self.num_devices
            out["message_bytes"] = self.message_bytes
            out["bus_bandwidth_bytes_per_s"] = bus_bandwidth_bytes_per_s(self.op, self.num_devices, self.message_bytes, c.time_s)
        out["band_level"] = self.band_level
        return add_bands(out, op_band(self.family, c.source, self.band_level), ("time_s", "tflops", "bus_bandwidth_bytes_per_s"))


@validated(conflicts=OP_RULES)
def op(
    name: str, hardware: str = "h100-sxm", *, m: int | None = None, n: int | None = None, k: int | None = None,
    dtype: str = "bf16", weight_dtype: str | None = None, variant: str = "", warm_cache: bool = False,
    phase: str = "decode", batch: int = 1, q_len: int | None = None, kv_len: int = 1024, heads: int = 32,
    kv_heads: int | None = None, head_dim: int = 128, kv_dtype: str | None = None, devices: int = 8,
    bytes: float | None = None, profile: str | None = None, tokens: int | None = None, hidden: int | None = None,
    intermediate: int | None = None, topk: int | None = None, experts: int | None = None, moe_tp: int = 1,
    ep: int = 1, gated: bool = True, distribution: str = "balanced", band_level: float = DEFAULT_BAND_LEVEL,
) -> OpResult:
    """Cost of one operator: 'gemm', 'attention', 'moe' (one layer, one device) or a collective; the result
    carries an error band at `band_level` (docs/bands.md)."""
    band_level = check_level(band_level)
    if name not in OPS and name.replace("_", "") not in OPS:
        raise UnknownNameError("op", name, OPS)
    _dtype(dtype, "data type"), _dtype(weight_dtype, "weight data type"), _dtype(kv_dtype, "kv-cache data type")
    if name == "gemm":
        if m is None or n is None or k is None:
            raise InvalidInputError("op gemm needs --m, --n and --k")
        _positive(m=m, n=n, k=k)
        chip = load_chip(hardware)
        chip.check_compute_dtype(dtype)
        cc = chip_cost(chip, profile)
        return OpResult("gemm", cc.chip.name, estimate_gemm(cc, m, n, k, dtype, weight_dtype, variant=variant, warm_cache=warm_cache),
                        band_level=band_level)
    if name == "moe":
        missing = [f"--{n}" for n, v in (("tokens", tokens), ("hidden", hidden), ("intermediate", intermediate),
                                         ("topk", topk), ("experts", experts)) if v is None]
        if missing:
            raise InvalidInputError(f"op moe needs {', '.join(missing)}")
        _positive(tokens=tokens, hidden=hidden, intermediate=intermediate, topk=topk, experts=experts, moe_tp=moe_tp, ep=ep)
        shape = MoEShape(tokens, hidden, intermediate, topk, experts, moe_tp, ep, gated, distribution)
        cc = chip_cost(load_chip(hardware), profile)
        cost = estimate_moe(cc, shape, dtype, weight_dtype, variant=variant, warm_cache=warm_cache, op="moe")
        return OpResult("moe", cc.chip.name, cost, family="moe", band_level=band_level)
    if name == "attention":
        return OpResult("attention", hardware, _attention(hardware, phase, batch, q_len, kv_len, heads, kv_heads,
                                                          head_dim, dtype, kv_dtype, profile),
                        family=f"attention_{phase}", band_level=band_level)
    coll = collective_name(name)
    if coll not in COLLECTIVES:
        raise UnknownNameError("op", name, OPS)
    if bytes is None:
        raise InvalidInputError(f"op {name} needs --bytes")
    if bytes <= 0:
        raise InvalidInputError(f"--bytes must be > 0, got {bytes}")
    _positive(devices=devices)
    system = load_system(hardware, devices)
    cc = chip_cost(system.chip, profile)
    cost = estimate_collective(cc, system, coll, devices, bytes)
    return OpResult(name.replace("_", ""), system.chip.name, cost, devices, bytes, "collectives", band_level)


def _attention(hardware: str, phase: str, batch: int, q_len: int | None, kv_len: int, heads: int, kv_heads: int | None,
               head_dim: int, dtype: str, kv_dtype: str | None, profile: str | None) -> OpCost:
    kv_heads = kv_heads or heads
    _positive(batch=batch, kv_len=kv_len, heads=heads, kv_heads=kv_heads, head_dim=head_dim, q_len=q_len)
    if heads % kv_heads:
        raise InvalidInputError(f"--heads {heads} is not a multiple of --kv-heads {kv_heads}")
    chip = load_chip(hardware)
    chip.check_compute_dtype(dtype)
    cc = chip_cost(chip, profile)
    kv = kv_dtype or ("bf16" if dtype not in ("fp16",) else "fp16")
    if phase == "prefill":
        q = q_len or kv_len
        if q > kv_len:
            raise InvalidInputError(f"--q-len {q} exceeds --kv-len {kv_len}")
        return estimate_prefill_attention(cc, batch, q, kv_len, heads, kv_heads, head_dim, None, dtype, kv)
    if phase == "decode":
        return estimate_decode_attention(cc, batch, kv_len, heads, kv_heads, head_dim, None, kv, act_dtype=dtype)
    raise UnknownNameError("phase", phase, ["prefill", "decode"])


