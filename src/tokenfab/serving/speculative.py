"""Speculative decoding in the serving simulator, through the one step model.

The replica counts decode iterations in tokens: each iteration moves every decoder one token on.
A speculative iteration (k draft steps and one verify step of k + 1 tokens, see
`tokenfab.execution.speculative`) moves each sequence tau = 1 + A + ... + A^k tokens on average,
so in token units a decode-only iteration costs T_spec(n, ctx) / tau, which keeps every finish
time, KV block and TPOT right on average (the variance of the acceptance chain is not modelled).
A step that also prefills runs the prefill chunks beside the verify group; the decoders' share of
it is credited the same way: T_mixed - T_spec(n) (1 - 1 / tau).
"""

from __future__ import annotations

from tokenfab.execution.layers import StepBatch
from tokenfab.execution.speculative import SpeculativeModel


class SpeculativeTimer:
    """The simulator's StepTimer for a deployment that decodes speculatively."""

    def __init__(self, spec_model: SpeculativeModel):
        self.m = spec_model
        self.tau = spec_model.tokens_per_iteration
        self._cache: dict[tuple[int, float], tuple[float, float]] = {}

    def _spec_decode(self, num_decode: int, kv: float) -> tuple[float, float]:
        key = (num_decode, round(kv))
        hit = self._cache.get(key)
        if hit is None:
            t, e, _ = self.m.iteration(num_decode, kv)
            hit = self._cache[key] = (t, e)
        return hit

    def step(self, prefill: tuple, num_decode: int, decode_kv_len: float) -> tuple[float, float]:
        if num_decode == 0:
            return self.m.target.time_energy(StepBatch(prefill, 0, 0.0))
        t_spec, e_spec = self._spec_decode(num_decode, decode_kv_len)
        if not prefill:
            return t_spec / self.tau, e_spec / self.tau
        k = self.m.spec.num_spec_tokens
        c = int(round(decode_kv_len))
        t_mix, e_mix = self.m.target.time_energy(StepBatch(prefill + ((num_decode, k + 1, c + k + 1),)))
        verify_t, verify_e = self.m.target.time_energy(StepBatch(((num_decode, k + 1, c + k + 1),)))
        credit = 1.0 - 1.0 / self.tau  # the decoders' spec iteration, shared with the prefill chunks
        return t_mix + (t_spec - verify_t) - t_spec * credit, e_mix + (e_spec - verify_e) - e_spec * credit

    def decode_pair(self, num_decode: int, kv_first: float, kv_last: float) -> tuple[float, float, float, float]:
        t0, e0 = self._spec_decode(num_decode, kv_first)
        t1, e1 = self._spec_decode(num_decode, kv_last)
        return t0 / self.tau, e0 / self.tau, t1 / self.tau, e1 / self.tau
