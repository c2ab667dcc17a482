"""The benchmark client at fixed concurrency: lockstep of exact lengths, desynchronisation by varied lengths,
warm-up, and the client-to-engine latency (docs/serving.md, "The benchmark client")."""

import numpy as np
import pytest

from tokenfab import api

pytestmark = pytest.mark.unit

COMMON = dict(model="llama-3.1-8b", hardware="h100-sxm", engine="vllm", input_len=1024, output_len=512)


def _ttfts(result) -> np.ndarray:
    return result.log.column("first_token_s") - result.log.column("arrival_s")


def test_request_latency_shifts_every_ttft_and_e2e_by_exactly_the_latency():
    # Open-loop arrivals shifted by a constant meet the engine in the same order and spacing: a pure shift.
    kw = dict(COMMON, rate=5.0, num_requests=300, seed=4)
    base, late = api.simulate(**kw), api.simulate(request_latency_ms=25.0, **kw)
    assert np.allclose(_ttfts(late) - _ttfts(base), 0.025, atol=1e-9)
    assert late.summary["e2e_s"]["mean"] == pytest.approx(base.summary["e2e_s"]["mean"] + 0.025, abs=1e-9)
    assert late.summary["tpot_s"]["mean"] == pytest.approx(base.summary["tpot_s"]["mean"], rel=1e-12)
    assert late.config["request_latency_ms"] == 25.0


def test_exact_lengths_keep_closed_loop_waves_in_lockstep():
    # All C clients start at t=0 with the same output length: every wave's C prompts arrive together and prefill
    # in one iteration, so the mean TTFT is that of C prompts, not of one.
    c = 8
    single = api.simulate(concurrency=1, num_requests=4, **COMMON).summary["ttft_s"]["mean"]
    locked = api.simulate(concurrency=c, num_requests=10 * c, **COMMON).summary["ttft_s"]["mean"]
    assert locked > 0.6 * c * single


def test_varied_output_lengths_desynchronise_the_clients():
    # +-2% output lengths spread the clients over the decode cycle after the first wave: a prompt then mostly
    # prefills alone (beside the others' decodes), and only the first wave (1 in 10 here) pays for C prompts.
    c = 8
    kw = dict(COMMON, concurrency=c, num_requests=40 * c)
    single = api.simulate(**{**kw, "concurrency": 1, "num_requests": 4}).summary["ttft_s"]["mean"]
    locked = api.simulate(**kw).summary["ttft_s"]["mean"]
    spread = api.simulate(output_dist="uniform:502,522", **kw).summary["ttft_s"]["mean"]
    assert spread < 0.35 * locked
    assert spread < 2.0 * single


def test_warmup_leaves_the_first_wave_out_of_the_mean():
    c = 16
    kw = dict(COMMON, concurrency=c, num_requests=10 * c, output_dist="uniform:502,522")
    counted = api.simulate(**kw)
    left_out = api.simulate(warmup_requests=c, **kw)
    assert left_out.summary["completed"] == counted.summary["completed"] == 10 * c
    assert left_out.summary["ttft_s"]["mean"] < counted.summary["ttft_s"]["mean"]


def test_negative_request_latency_is_refused():
    from tokenfab.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="request_latency_ms"):
        api.simulate(request_latency_ms=-1.0, rate=1.0, num_requests=2, **COMMON)
