"""The decode attention core of one layer group at many contexts: `decode_attention_arrays`, with the constants hoisted.

`StepModel.decode_times` (what `predict` integrates its decode phase from) evaluates the attention core of every
layer group at ~33 contexts per call. The numpy arrays are short, so the cost was the fixed work around them:
looking up the fitted curve, building the work record and its shape, the warm-cache and occupancy `np.where`s
that are constant for a forward pass, and the parameter vector. `DecodeCorePlan` does that once per deployment
and layer group and then runs exactly the arithmetic of `cost.attention.decode_attention_work` (vector branch,
KV streamed from DRAM) and `cost.kernel.kernel_time_array` (no warm cache), operation for operation in the same
order, so every element is bit-identical to the general path (tests/property/test_step_model_exact.py checks
that, and equality with `StepModel.step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenfab.cost.attention import KV_SPLIT, MLA_HEAD_TILE, _compute_dtype, decode_curve, kv_kind, mla_kind
from tokenfab.cost.chip_cost import ChipCost
from tokenfab.units import bytes_per_element


@dataclass(frozen=True, slots=True)
class DecodeCorePlan:
    """Everything of one layer group's decode attention core that does not depend on the batch or the contexts."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    dv: int
    kv_bytes: float
    window: int | None
    latent_dim: int | None
    peak: float
    bandwidth: float
    theta: tuple  # KernelParams.as_vector() unpacked (numpy float64 scalars, as kernel_time_array unpacks them)
    half_units: object  # occupancy parameter x compute units, as kernel_time_array computes it

    @classmethod
    def build(cls, cc: ChipCost, num_heads: int, num_kv_heads: int, head_dim: int, v_head_dim: int | None = None,
              kv_dtype: str = "bf16", *, window: int | None = None, latent_dim: int | None = None,
              act_dtype: str = "bf16") -> DecodeCorePlan:
        """The plan of `decode_attention_arrays(cc, batch, kv, <these arguments>)` for any batch and contexts."""
        kind = mla_kind(kv_dtype) if latent_dim else kv_kind(kv_dtype)
        params, _ = decode_curve(cc, kind, latent_dim)
        theta = tuple(params.as_vector())
        return cls(num_heads, num_kv_heads, head_dim, v_head_dim or head_dim, bytes_per_element(kv_dtype), window,
                   latent_dim, cc.peak(_compute_dtype(act_dtype)), cc.bandwidth_bytes_per_s, theta,
                   theta[4] * cc.compute_units)

    def arrays(self, batch: int, kv_len: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(time_s, flops, dram bytes) at each context of `kv_len` (a float array): `decode_attention_arrays`."""
        num_heads, num_kv_heads, head_dim, dv, kvb = self.num_heads, self.num_kv_heads, self.head_dim, self.dv, self.kv_bytes
        kv = np.minimum(kv_len, self.window) if self.window else kv_len
        flops = 2.0 * batch * num_heads * kv * (head_dim + dv)
        if self.latent_dim:
            cache = batch * kv * self.latent_dim * kvb
            units = batch * np.ceil(num_heads / MLA_HEAD_TILE) * np.ceil(kv / KV_SPLIT)
        else:
            cache = batch * kv * num_kv_heads * (head_dim + dv) * kvb
            units = batch * num_kv_heads * np.ceil(kv / KV_SPLIT)
        dram = cache + batch * num_heads * (head_dim + dv) * 2.0 + batch * num_kv_heads * (head_dim + dv) * kvb
        launch, ce, me, p = self.theta[:4]
        half_units = self.half_units
        # kernel_time_array without a warm cache: its bandwidth array is `bandwidth` everywhere and its
        # occupancy `np.where` takes one branch for the whole array (u = 1.0 exactly when half_units <= 0)
        t_c = flops / self.peak
        if half_units > 0:
            a = t_c / (ce * (units / (units + max(half_units, 1e-30))))
        else:
            a = t_c / (ce * 1.0)
        b = dram / self.bandwidth / me
        hi = np.maximum(np.maximum(a, b), 1e-30)
        return launch + hi * ((a / hi) ** p + (b / hi) ** p) ** (1.0 / p), flops, dram
