"""The kernel rows of a step's layer part for many token counts at once (the sweep's plans).

A sweep's steady states ask for tens of thousands of distinct token counts, and the layer part
of each (every operator of every layer that depends on the token count only) was built through
the scalar step model: a dozen operator estimates, a part record and a row per kernel, only for
the row's chip-independent figures to be re-timed later (`sweep.retime`). For dense layers
(standard attention and a dense MLP) those figures are simple functions of the token count T:
a GEMM's m, FLOPs 2mnk, output-tile work and traffic; an elementwise kernel's bytes (norms,
rotary, activation, embedding); the TP all-reduce's message. `LayerRows` takes every other
figure (fitted parameters, peaks, n, k, residency) from rows the step model itself recorded at
a probe token count, substitutes the T-dependent ones for an array of token counts with the same
formulas as the scalar code, and is used only after it has reproduced the step model's own rows
bit for bit at a set of probe counts (both the eager and the graph-replayed coster); any
difference, and any other layer kind (MLA, MoE, linear attention), keeps the scalar path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tokenfab.cost.collectives import bus_factor
from tokenfab.cost.elementwise import activation_bytes, embedding_bytes, norm_bytes, rotary_bytes
from tokenfab.cost.gemm import TILE
from tokenfab.cost.onchip import GemmShape, gemm_traffic_array
from tokenfab.execution.step import StepModel
from tokenfab.sweep.retime import _COL, ALL_REDUCE, GEMM, PLAIN, Kernels

PROBE_TOKENS = (1, 2, 7, 127, 128, 129, 1000, 4099, 16384)  # both sides of the GEMM's tile edge, short and long

_DRAM, _FLOPS, _WORK, _M, _N, _K = (_COL[f] for f in ("dram", "flops", "work", "m", "n", "k"))
_A, _W, _OUT, _ON_CHIP, _BYTES, _MESSAGE = (_COL[f] for f in ("a", "w", "out", "w_on_chip", "bytes", "message"))


def _eligible(sm: StepModel) -> bool:
    """Dense layers of standard attention: the layer part depends on the token count only."""
    if sm._mla or sm._moe_dp or sm._tbo or sm.par.pp > 1:
        return False
    return all(g.attention.kind not in ("mla", "linear") and not g.attention.index_topk_tokens
               and g.ffn.kind == "dense" for g in sm.model.layers)


def _recipe(sm: StepModel) -> list[tuple[str, Callable | None]]:
    """(op name, bytes of an elementwise kernel or a collective's message as a function of T; None for a GEMM) of
    every operator `LayerCoster.layer_ops` yields for a dense layer, group by group, then the embedding."""
    coster, h, tp = sm.coster, sm.model.hidden_size, sm.par.tp
    ab = coster.act_bytes
    out: list[tuple[str, Callable | None]] = []
    for group, _ in sm._group_counts:
        attn, ffn = group.attention, group.ffn
        heads, kv_heads = attn.num_heads // tp, max(1, attn.num_kv_heads // tp)
        width = ffn.intermediate_size // tp
        out += [("norm", lambda t: norm_bytes(t, h, ab)), ("attn.qkv_proj", None),
                ("attn.rotary", lambda t, a=attn, hd=heads, kv=kv_heads: rotary_bytes(t, hd, kv, a.rotary_dim, ab)),
                ("attn.o_proj", None)]
        allreduce = [("tp_allreduce", lambda t: t * h * ab)] if tp > 1 else []
        if not group.parallel_attn_mlp:
            out += allreduce + [("norm", lambda t: norm_bytes(t, h, ab))]
        out += [("mlp.up_proj", None),
                ("mlp.act", lambda t, w=width, g=ffn.gated: activation_bytes(t, w, ab, g)),
                ("mlp.down_proj", None)] + allreduce
    emb = sm._act_bytes
    out.append(("embedding", lambda t: embedding_bytes(t, h, emb, emb)))
    return out


class LayerRows:
    """Rows of the layer part at any token counts, for one TP degree's recording step model (`build`)."""

    def __init__(self, sm: StepModel, kernels: Kernels):
        self.sm, self.kernels = sm, kernels
        self.recipe = _recipe(sm)
        self.templates: dict[bool, tuple[np.ndarray, np.ndarray]] = {}  # graphed -> (rows at the probe, counts)
        self.reuse_bytes = sm.cc.onchip.reuse_capacity_bytes

    @classmethod
    def build(cls, sm: StepModel, kernels: Kernels) -> LayerRows | None:
        """The layer rows of this step model, or None where they would not be the step model's own."""
        if not _eligible(sm):
            return None
        self = cls(sm, kernels)
        for graphed in (False, True):
            rows, counts, ops = self._scalar(PROBE_TOKENS[0], graphed)
            if ops != [name for name, _ in self.recipe]:
                return None
            self.templates[graphed] = (rows, counts)
        for graphed in (False, True):
            for t in PROBE_TOKENS:
                rows, counts, _ = self._scalar(t, graphed)
                mine, my_counts = self.rows(np.array([t]), graphed, with_traffic=True)
                if not (np.array_equal(mine[0], rows) and np.array_equal(my_counts, counts)):
                    return None
        return self

    def _scalar(self, num_tokens: int, graphed: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(rows, counts, op names) of the step model's own layer part at `num_tokens`."""
        sm = self.sm
        part = StepModel._layers_part(sm, num_tokens, num_tokens if graphed else 0)
        pairs = sm.part_pairs[id(part)][1]
        rows = np.array([self.kernels.row(cost, 0.0) for cost, _ in pairs], dtype=float)
        return rows, np.array([count for _, count in pairs], dtype=float), [cost.op for cost, _ in pairs]

    def rows(self, tokens: np.ndarray, graphed: bool, with_traffic: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(rows (len(tokens), ops, fields), counts (ops,)) of the layer part at each token count (int array).
        A GEMM's DRAM bytes are filled in only `with_traffic` (as `build` checks them): a plan's `_Block`
        re-evaluates every GEMM's traffic at each point's on-chip capacity, so the column is NaN otherwise."""
        template, counts = self.templates[graphed]
        out = np.repeat(template[None, :, :], len(tokens), axis=0)
        tp = self.sm.par.tp
        for j, (_, bytes_of) in enumerate(self.recipe):
            r = out[:, j, :]
            kind = template[j, 0]
            if kind == GEMM:
                n, k = int(template[j, _N]), int(template[j, _K])
                r[:, _M] = tokens
                r[:, _FLOPS] = 2.0 * tokens * n * k
                r[:, _WORK] = np.minimum(tokens, TILE) * n / (TILE * TILE)
                if with_traffic:
                    shape = GemmShape(tokens, n, k, template[j, _A], template[j, _W], template[j, _OUT],
                                      bool(template[j, _ON_CHIP]))
                    r[:, _DRAM] = gemm_traffic_array(shape, self.reuse_bytes, shape.weights_on_chip)[0]
                else:
                    r[:, _DRAM] = np.nan
            elif kind == ALL_REDUCE:
                moved = bus_factor("all_reduce", tp) * bytes_of(tokens)
                r[:, _BYTES], r[:, _MESSAGE] = moved, moved / bus_factor("all_reduce", tp)
            elif kind == PLAIN:
                r[:, _DRAM] = bytes_of(tokens)
            else:
                raise AssertionError(f"layer row of kind {kind}")  # `build` refuses such models
        return out, counts
