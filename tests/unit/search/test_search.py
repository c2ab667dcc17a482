"""`search`: screening, confirmation, reproducibility, objectives, scale-out, refusals."""

import math

import pytest

from tokenfab import api
from tokenfab.errors import InvalidInputError, UnknownNameError
from tokenfab.hardware.prices import load_prices, price_cny
from tokenfab.search.run import pareto_front

pytestmark = pytest.mark.unit

SMALL = dict(model="llama-3.1-8b", hardware=["h100-sxm", "h20"], rate=8.0, input_len=512, output_len=128,
             slo_ttft_ms=1000, slo_tpot_ms=40, tp=[1, 2], max_num_seqs=[64, 256], top=2, num_requests=300)


@pytest.fixture(scope="module")
def small():
    return api.search(**SMALL)


def test_json_keys_and_counts(small):
    d = small.to_dict()
    assert d["configs_evaluated"] == 2 * 2 * 2  # chips x tp x max_num_seqs
    for key in ("hardware", "tp", "pp", "ep", "dp", "replicas", "prefill_replicas", "decode_replicas", "engine",
                "predicted", "simulate_args", "simulated"):
        assert key in d["best"]
    assert d["search_wall_s"] >= d["screen_wall_s"] > 0
    assert d["pareto"] and all(c["predicted"]["feasible"] for c in d["candidates"])


def test_best_simulate_args_reproduce_the_confirmation(small):
    best = small.to_dict()["best"]
    again = api.simulate(**best["simulate_args"]).summary
    assert again["ttft_s"]["p99"] == best["simulated"]["ttft_s"]
    assert again["tpot_s"]["p99"] == best["simulated"]["tpot_s"]
    assert best["simulated"]["meets_slo"]


def test_replicas_carry_the_rate(small):
    for c in small.to_dict()["candidates"]:
        p = c["predicted"]
        assert p["goodput_tokens_per_s"] == pytest.approx(8.0 * 128)
        assert p["num_devices"] == c["replicas"] * c["tp"]
        assert 0 < p["utilization_frac"] <= 1.0


def test_objectives_rank_by_their_figure():
    per_cost = api.search(**{**SMALL, "objective": "goodput-per-cost", "top": 0}).to_dict()["candidates"]
    vals = [c["predicted"]["goodput_tokens_per_s_per_cny"] for c in per_cost]
    assert vals == sorted(vals, reverse=True)
    cheapest = api.search(**{**SMALL, "objective": "min-cost", "top": 0}).to_dict()["candidates"]
    costs = [c["predicted"]["cost_cny"] for c in cheapest]
    assert costs == sorted(costs)


def test_workers_give_the_local_result(small):
    par = api.search(**{**SMALL, "top": 0, "workers": 2}).to_dict()
    loc = api.search(**{**SMALL, "top": 0}).to_dict()
    strip = lambda d: [{k: v for k, v in c.items()} for c in d["candidates"]]  # noqa: E731
    assert strip(par) == strip(loc)


def test_disaggregated_mixed_vendor_pools_are_screened_and_simulated():
    r = api.search(model="llama-3.1-8b", hardware=["h100-sxm", "h20"], rate=6.0, input_len=1024, output_len=128,
                   slo_ttft_ms=1500, slo_tpot_ms=40, tp=[1], disaggregated=True, top=0, num_requests=200)
    pd = [c for c in r.to_dict()["candidates"] if c["disaggregated"]]
    mixed = [c for c in pd if c["decode_hardware"] != c["hardware"]]
    assert mixed, "a prefill pool on one chip and a decode pool on the other"
    c = mixed[0]
    assert c["predicted"]["num_devices"] == c["prefill_replicas"] + c["decode_replicas"]
    s = api.simulate(**c["simulate_args"])
    assert s.config["decode_hardware"] == c["decode_hardware"] and s.summary["completed"] == 200


def test_pareto_front_is_not_dominated():
    rows = [{"predicted": {"feasible": True, "goodput_tokens_per_s_per_chip": g, "tokens_per_s_per_user": u}}
            for g, u in [(10, 1), (5, 5), (4, 4), (1, 10), (10, 0.5)]]
    front = [(r["predicted"]["goodput_tokens_per_s_per_chip"], r["predicted"]["tokens_per_s_per_user"]) for r in pareto_front(rows)]
    assert front == [(10, 1), (5, 5), (1, 10)]


def test_bad_input_is_one_line():
    with pytest.raises(InvalidInputError, match="exactly one of"):
        api.search(model="llama-3.1-8b", hardware="h100-sxm", rate=1.0, concurrency=4)
    with pytest.raises(UnknownNameError, match="h100-sxm"):
        api.search(model="llama-3.1-8b", hardware="h100-sx", rate=1.0)
    with pytest.raises(InvalidInputError, match="min-cost needs a target rate"):
        api.search(model="llama-3.1-8b", hardware="h100-sxm", concurrency=4, objective="min-cost")


def test_prices_are_sourced_and_converted():
    cat = load_prices()
    for name, p in cat.prices.items():
        assert p.source.startswith("http") and p.basis
    usd = cat.exchange_rates["USD"].rate
    assert price_cny("h100-sxm") == pytest.approx(27500 * usd)
    assert price_cny("ascend-910b") is None  # no sourced price: none, not a guess
    assert math.isfinite(price_cny("h200-sxm"))


def test_trace_traffic_is_its_mean_rate_and_lengths(tmp_path):
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for i in range(41):  # one request every 0.5 s: 2 req/s; prompts 400/600, outputs 100/140
        rows.append(f"2023-11-16 18:15:{i // 2:02d}.{5000000 * (i % 2):07d},{400 + 200 * (i % 2)},{100 + 40 * (i % 2)}")
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n")
    r = api.search(model="llama-3.1-8b", hardware="h100-sxm", trace=str(path), slo_ttft_ms=1000, slo_tpot_ms=40,
                   tp=[1], top=1)
    d = r.to_dict()
    best = d["best"]
    assert best["predicted"]["goodput_tokens_per_s"] == pytest.approx(2.0 * 120, rel=0.03)
    assert best["simulate_args"]["trace"] == str(path) and "rate" not in best["simulate_args"]
    assert best["simulated"]["completed"] == 41
