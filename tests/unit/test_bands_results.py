"""Every op, predict and simulate result carries F_lo <= F <= F_hi at `band_level` (DESIGN.md 'Error bands')."""

import json

import pytest

from tokenfab import api
from testkit import run_cli as _cli
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def _bracketed(d: dict, key: str) -> None:
    assert d[f"{key}_lo"] <= d[key] <= d[f"{key}_hi"], key
    assert d[f"{key}_lo"] > 0


def test_predict_has_bands_on_every_timed_figure():
    d = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=8, input_len=512, output_len=64).to_dict()
    assert d["band_level"] == 0.9
    for key in ("ttft_s", "tpot_s", "e2e_s", "prefill_tokens_per_s", "decode_tokens_per_s", "throughput_tokens_per_s",
                "energy_j_per_token"):
        _bracketed(d, key)
    assert d["ttft_s_hi"] > d["ttft_s"] > d["ttft_s_lo"]  # a real band, not a point
    # e2e = ttft + decode, comonotone: its bounds are the sums of the parts' bounds
    decode, decode_lo = d["e2e_s"] - d["ttft_s"], d["e2e_s_lo"] - d["ttft_s_lo"]
    assert decode_lo == pytest.approx(decode * d["tpot_s_lo"] / d["tpot_s"], rel=1e-6)
    assert d["throughput_tokens_per_s_lo"] == pytest.approx(d["throughput_tokens_per_s"] * d["e2e_s"] / d["e2e_s_hi"])
    for row in d["breakdown"]:
        _bracketed(row, "time_s")


def test_predict_bands_grow_with_level():
    kw = dict(model="llama-3.1-8b", hardware="h100-sxm", batch=4, input_len=256, output_len=32)
    narrow, wide = api.predict(**kw, band_level=0.8).to_dict(), api.predict(**kw, band_level=0.95).to_dict()
    assert narrow["ttft_s"] == wide["ttft_s"]
    assert wide["ttft_s_hi"] > narrow["ttft_s_hi"] and wide["ttft_s_lo"] < narrow["ttft_s_lo"]
    assert wide["tpot_s_hi"] >= narrow["tpot_s_hi"]


def test_generic_chip_band_is_wider_than_fitted():
    kw = dict(model="llama-3.1-8b", batch=4, input_len=256, output_len=32)
    fitted = api.predict(hardware="h100-sxm", **kw).to_dict()
    generic = api.predict(hardware="mi300x", **kw).to_dict()
    assert fitted["efficiency_source"] == "fitted" and generic["efficiency_source"] == "generic"

    def rel(d, k):
        return d[f"{k}_hi"] / d[f"{k}_lo"]

    assert rel(generic, "tpot_s") > rel(fitted, "tpot_s")
    assert rel(generic, "ttft_s") > rel(fitted, "ttft_s")


def test_op_results_have_bands():
    g = api.op("gemm", "h100-sxm", m=4096, n=4096, k=4096).to_dict()
    _bracketed(g, "time_s")
    assert g["tflops_lo"] == pytest.approx(g["tflops"] * g["time_s"] / g["time_s_hi"])
    a = api.op("attention", "h100-sxm", phase="prefill", batch=1, kv_len=2048, heads=32).to_dict()
    _bracketed(a, "time_s")
    c = api.op("allreduce", "h100-sxm", devices=8, bytes=64e6).to_dict()
    _bracketed(c, "time_s")
    _bracketed(c, "bus_bandwidth_bytes_per_s")
    assert "roofline_s_lo" not in g


def test_simulate_summary_has_nested_bands():
    d = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", concurrency=4, num_requests=16, input_len=256,
                     output_len=16).to_dict()
    assert d["band_level"] == 0.9
    for metric in ("ttft_s", "tpot_s", "e2e_s"):
        for p in ("p50", "p90", "p99", "mean"):
            _bracketed(d[metric], p)
    _bracketed(d, "throughput_tokens_per_s")
    assert "sim_wall_s_lo" not in d


def test_bad_band_level_is_rejected_before_work():
    with pytest.raises(InvalidInputError, match="band-level"):
        api.predict(band_level=1.2)




def test_cli_band_level(capsys):
    code, out, _ = _cli(["op", "gemm", "--m", "1024", "--n", "1024", "--k", "1024", "--band-level", "0.8", "--json"], capsys)
    d = json.loads(out)
    assert code == 0 and d["band_level"] == 0.8 and d["time_s_lo"] <= d["time_s"] <= d["time_s_hi"]
    code, _, err = _cli(["predict", "--band-level", "2", "--json"], capsys)
    assert code == 2 and "band-level" in err and "Traceback" not in err
    code, out, _ = _cli(["predict", "--batch", "2", "--input-len", "128", "--output-len", "8"], capsys)
    assert code == 0 and " .. " in out


def test_goodput_band_recounts_the_slo_at_the_band_edges():
    d = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", concurrency=8, num_requests=64, input_len=512,
                     output_len=32, slo_ttft_ms=200, slo_tpot_ms=20).to_dict()
    assert d["goodput_requests_per_s_lo"] <= d["goodput_requests_per_s"] <= d["goodput_requests_per_s_hi"]
    assert d["slo_attainment_lo"] <= d["slo_attainment"] <= d["slo_attainment_hi"]
    # no SLO: every request counts, so the band is the request rate's
    free = api.simulate(model="llama-3.1-8b", hardware="h100-sxm", concurrency=8, num_requests=64, input_len=512,
                        output_len=32).to_dict()
    assert free["goodput_requests_per_s_lo"] == pytest.approx(free["requests_per_s_lo"])
    assert free["slo_attainment_lo"] == free["slo_attainment_hi"] == 1.0


def test_step_has_bands():
    d = api.step("llama-3.1-8b", "h100-sxm", batch=8, context_len=1024, phase="prefill", new_tokens=256).to_dict()
    _bracketed(d, "time_s")
    for row in d["breakdown"].values():
        _bracketed(row, "time_s")
