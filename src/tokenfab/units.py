"""SI helpers and data-type sizes.

Everything inside tokenfab is SI: seconds, bytes, FLOP, joules, watts. Human units
(ms, GB, TB/s, TFLOP/s) appear only at the edges (CLI flags, reports, catalog
comments); the conversions live here so that no other module multiplies by 1e12.
GB is decimal (1e9 bytes) and GiB binary (2**30 bytes); they are never mixed.
"""

from __future__ import annotations

from typing import Literal, get_args

DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]
"""Numeric formats a tensor can be stored or computed in."""

DTYPES: tuple[str, ...] = get_args(DType)

_BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,  # stored as fp32, computed at reduced mantissa
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "fp4": 0.5,
}

# Which tensor-core rate a matrix multiply runs at when both operands are in this
# format. Weight-only int4/int8 GEMMs dequantise to 16-bit and run at the bf16
# rate; that choice is made by the cost layer, not here.
BITS_PER_ELEMENT: dict[str, int] = {k: int(v * 8) for k, v in _BYTES_PER_ELEMENT.items()}

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KiB = 2.0**10
MiB = 2.0**20
GiB = 2.0**30
TERA = 1e12
GIGA = 1e9
MS = 1e-3
US = 1e-6
MM2_PER_CM2 = 100.0
SECONDS_PER_YEAR = 365.25 * 24 * 3600.0  # Julian year
J_PER_KWH = 3.6e6


def bytes_per_element(dtype: str) -> float:
    """Storage size of one element of `dtype` in bytes (int4/fp4 are half a byte)."""
    try:
        return _BYTES_PER_ELEMENT[dtype]
    except KeyError:
        from tokenfab.errors import UnknownNameError

        raise UnknownNameError("data type", dtype, DTYPES) from None


def tflops_to_flop_per_s(tflops: float) -> float:
    return tflops * TERA


def tbs_to_bytes_per_s(tb_per_s: float) -> float:
    return tb_per_s * TB


def gbs_to_bytes_per_s(gb_per_s: float) -> float:
    return gb_per_s * GB


def gbit_to_bytes_per_s(gbit_per_s: float) -> float:
    return gbit_per_s * GIGA / 8.0


def gb_to_bytes(gb: float) -> float:
    return gb * GB


def s_to_ms(seconds: float) -> float:
    return seconds / MS


def ms_to_s(ms: float) -> float:
    return ms * MS


def bytes_to_gb(num_bytes: float) -> float:
    return num_bytes / GB


def bytes_to_gib(num_bytes: float) -> float:
    return num_bytes / GiB
