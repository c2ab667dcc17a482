"""MLPerf system power: predicted wall power of a whole server against MLPerf's measured system_power_w.

    python bench/accuracy_power.py

Rows: the system_power_w rows of ../shared/calibration/mlperf.csv. A row is expressible when its chip
is in the catalog and its model is bundled; the wall power is the simulation's energy over its span
(accelerators + the node's host share, fans and power-supply losses, see hardware/nodes.yaml). MLPerf
states the mean output tokens per sample but not the prompt lengths of its long-context mix, so each row
is simulated at several prompt lengths and the spread is reported beside the middle one's error: the
prediction is not matched to a guessed length.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from tokenfab import api
from tokenfab.calibrate.measurements import shared_calibration_dir
from tokenfab.errors import TokenfabError

HARDWARE = {"B200-SXM-180GB": "b200", "H100-SXM-80GB": "h100-sxm", "H200-SXM-141GB": "h200-sxm"}
MODELS = {"Llama-3.1-405B-Instruct": "llama-3.1-405b", "Llama-2-70B": "llama-2-70b"}
PRECISION = {"fp4": "fp4", "fp8": "fp8", "bf16": "bf16", "fp16": "fp16"}
PROMPT_LENGTHS = (2048, 8192, 16384)


def run_power_group(directory: Path) -> tuple[pd.DataFrame, list[str]]:
    rows = pd.read_csv(directory / "mlperf.csv")
    rows = rows[rows["metric"] == "system_power_w"]
    out, skipped = [], []
    for _, r in rows.iterrows():
        hw, model = HARDWARE.get(r["hardware"]), MODELS.get(r["model"])
        dtype = PRECISION.get(str(r["precision"]).lower())
        if hw is None or model is None or dtype is None:
            skipped.append(f"{r['case_id']} ({r['hardware']} / {r['model']} not in the catalog)")
            continue
        m = re.search(r"TOKENS_PER_SAMPLE: ([\d.]+)", str(r["notes"]))
        osl = int(round(float(m.group(1)))) if m else 512
        n = int(r["n_accel"])
        powers = []
        for isl in PROMPT_LENGTHS:
            try:
                s = api.simulate(model=model, hardware=hw, tp=n, dtype=dtype, kv_dtype="fp8", offline=True,
                                 num_requests=max(200, 4 * 256), input_len=isl, output_len=osl, engine="trtllm",
                                 max_batched_tokens=max(8192, isl + 256)).summary
            except TokenfabError as exc:
                skipped.append(f"{r['case_id']} ({exc})")
                break
            powers.append(s["energy_j"] / s["simulated_s"])
        else:
            mid = powers[len(powers) // 2]
            out.append({"case_id": r["case_id"], "group": "power:MLPerf system power (wall)", "device": hw,
                        "framework": "trtllm", "measured": float(r["value"]), "predicted": mid,
                        "predicted_range_w": [min(powers), max(powers)]})
    frame = pd.DataFrame(out)
    if len(frame):
        frame["error_frac"] = frame["predicted"] / frame["measured"] - 1.0
    return frame, skipped


def main() -> None:
    frame, skipped = run_power_group(shared_calibration_dir())
    for _, r in frame.iterrows():
        lo, hi = r["predicted_range_w"]
        print(f"{r['case_id']}: measured {r['measured']:.0f} W, predicted {r['predicted']:.0f} W "
              f"({r['error_frac'] * 100:+.1f}%; {lo:.0f}-{hi:.0f} W over prompts {PROMPT_LENGTHS})")
    if len(frame):
        print(f"MAPE {frame['error_frac'].abs().mean() * 100:.1f}% over {len(frame)} rows")
    for s in skipped:
        print("skipped:", s)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps({"rows": frame.to_dict("records"), "skipped": skipped}, indent=2, default=float))


if __name__ == "__main__":
    main()
