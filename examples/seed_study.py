"""The seed study: our NPU against H20, Ascend 910B and H100 for Qwen3-235B-A22B and Llama-3.1-70B at
TTFT p99 < 2 s and TPOT p99 < 50 ms: tokens/s per chip, per watt and per CNY, each chip at its best
deployment (`tokenfab search`: TP/PP/EP, weight formats and replicas screened by the step model, the
best confirmed by simulation).

    python examples/seed_study.py [--rate 16] [--json]

Prices: `src/tokenfab/hardware/prices.yaml` (sourced, dated, converted at its dated rate). The NPU
(`npu-template`, made at SMIC N+2 as in examples/fleet_2026_2028.yaml) has no market price: its
manufacturing cost per good chip from `tokenfab.silicon` stands in, and the table says so. Ascend 910B
has no sourced unit price, so its per-CNY figure is left empty rather than guessed.
"""

from __future__ import annotations

import argparse
import json

from tokenfab import api
from tokenfab.hardware.prices import load_prices, price_cny

MODELS = ["qwen3-235b-a22b", "llama-3.1-70b"]
CHIPS = ["npu-template", "h20", "ascend-910b", "h100-sxm"]


def npu_cost_cny() -> float:
    """Manufacturing cost of one good npu-template (600 mm^2 at SMIC N+2, 96 GB HBM) from the silicon model."""
    from tokenfab.silicon.chip_cost import ChipCostSpec, estimate_chip_cost

    est = estimate_chip_cost(ChipCostSpec(node="smic-n+2", die_area_mm2=600, hbm_capacity_bytes=96e9))
    return est.cost_per_good_chip_usd * load_prices().exchange_rates["USD"].rate


def best_for(model: str, chip: str, args) -> dict:
    r = api.search(model=model, hardware=chip, rate=args.rate, input_len=args.input_len, output_len=args.output_len,
                   slo_ttft_ms=2000, slo_tpot_ms=50, tp=[1, 2, 4, 8], pp=[1, 2], ep=[1, 8],
                   weight_dtype=["native", "fp8", "int8"], max_devices=args.max_devices, top=args.top,
                   num_requests=args.num_requests)
    d = r.to_dict()
    best = d["best"]
    row = {"model": model, "chip": chip, "configs": d["configs_evaluated"]}
    if best is None or "simulated" not in best or not best["simulated"]["meets_slo"]:
        return {**row, "deployment": "none meets the SLO"}
    s, p = best["simulated"], best["predicted"]
    price = price_cny(chip)
    basis = "price"
    if price is None and chip == "npu-template":
        price, basis = npu_cost_cny(), "manufacturing cost"
    per_chip = s["goodput_tokens_per_s_per_chip"]
    return {**row, "deployment": f"{best['replicas']}x tp{best['tp']} pp{best['pp']} ep{best['ep']} w:{best['weight_dtype']}",
            "tokens_per_s_per_chip": per_chip, "tokens_per_s_per_w": s["goodput_tokens_per_s_per_w"],
            "tokens_per_s_per_kcny": per_chip / price * 1e3 if price else None, "cny_basis": basis if price else "no sourced price",
            "ttft_p99_s": s["ttft_s"], "tpot_p99_s": s["tpot_s"], "predicted_tokens_per_s_per_chip": p["goodput_tokens_per_s_per_chip"]}


def main() -> None:
    ap = argparse.ArgumentParser(description="our NPU vs H20, Ascend 910B, H100 at TTFT p99 < 2 s, TPOT p99 < 50 ms")
    ap.add_argument("--rate", type=float, default=16.0, help="requests/s the deployment must carry")
    ap.add_argument("--input-len", type=int, default=2048)
    ap.add_argument("--output-len", type=int, default=512)
    ap.add_argument("--max-devices", type=int, default=256)
    ap.add_argument("--top", type=int, default=3, help="candidates confirmed by simulation per chip")
    ap.add_argument("--num-requests", type=int, default=1000)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--chips", default=",".join(CHIPS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [best_for(m, c, args) for m in args.models.split(",") for c in args.chips.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"| model | chip | best deployment ({args.rate:g} req/s, {args.input_len}/{args.output_len} tokens) | tok/s/chip | "
          "tok/s/W | tok/s per 1k CNY | TTFT p99 | TPOT p99 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "tokens_per_s_per_chip" not in r:
            print(f"| {r['model']} | {r['chip']} | {r['deployment']} | - | - | - | - | - |")
            continue
        cny = "-" if r["tokens_per_s_per_kcny"] is None else f"{r['tokens_per_s_per_kcny']:.3f}" + (" (cost)" if r["cny_basis"] == "manufacturing cost" else "")
        print(f"| {r['model']} | {r['chip']} | {r['deployment']} | {r['tokens_per_s_per_chip']:.1f} | "
              f"{r['tokens_per_s_per_w']:.3f} | {cny} | {r['ttft_p99_s'] * 1e3:.0f} ms | {r['tpot_p99_s'] * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
