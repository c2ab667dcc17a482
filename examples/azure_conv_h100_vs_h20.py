"""Replay the Azure LLM conversation trace (2023) on Llama-3.1-8B served by one H100 and by one H20.

    python examples/azure_conv_h100_vs_h20.py [--num-requests N] [--trace PATH]

The trace (Splitwise, ISCA'24; CC-BY 4.0) ships in the shared data folder: $TOKENFAB_SHARED_DIR/traces,
or ../shared/traces next to the repository when the variable is unset. Prints TTFT, TPOT and
end-to-end percentiles, throughput, goodput under a 2 s TTFT / 100 ms TPOT SLO and energy per
token side by side. The H20 has 15% of the H100's bf16 FLOP/s but 19% more memory bandwidth, so
prefill (TTFT) suffers on it while decode (TPOT) does not.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tokenfab import api
from tokenfab.errors import TokenfabError

SHARED_DIR = Path(os.environ.get("TOKENFAB_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DEFAULT_TRACE = SHARED_DIR / "traces" / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-requests", type=int, default=19_366, help="requests to replay (the trace has 19,366)")
    ap.add_argument("--trace", default=str(DEFAULT_TRACE))
    args = ap.parse_args()
    try:
        results = {hw: api.simulate(model="llama-3.1-8b", hardware=hw, trace=args.trace, num_requests=args.num_requests,
                                    slo_ttft_ms=2000, slo_tpot_ms=100).summary
                   for hw in ("h100-sxm", "h20")}
    except TokenfabError as exc:  # a missing trace or a bad argument: one line, exit 2, like the CLI
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    table = Table(title=f"Azure conversation trace, {args.num_requests:,} requests, Llama-3.1-8B bf16, one GPU")
    table.add_column("metric")
    for hw in results:
        table.add_column(hw, justify="right")

    def row(label: str, fn) -> None:
        table.add_row(label, *(fn(s) for s in results.values()))

    for name in ("ttft_s", "tpot_s", "e2e_s"):
        for q in ("p50", "p90", "p99"):
            row(f"{name[:-2].upper()} {q}", lambda s, n=name, q=q: f"{s[n][q] * 1e3:,.1f} ms")
    row("throughput", lambda s: f"{s['throughput_tokens_per_s']:,.0f} tok/s")
    row("goodput (TTFT<=2s, TPOT<=100ms)", lambda s: f"{s['goodput_requests_per_s']:.2f} req/s ({s['slo_attainment']:.0%})")
    row("mean batch / KV use", lambda s: f"{s['mean_batch_size']:.1f} / {s['mean_kv_utilization']:.0%}")
    row("energy", lambda s: f"{s['energy_j_per_token']:.3f} J/token")
    row("preempted / rejected", lambda s: f"{s['preempted']} / {s['rejected']}")
    row("simulation wall time", lambda s: f"{s['sim_wall_s']:.2f} s")
    Console().print(table)


if __name__ == "__main__":
    main()
