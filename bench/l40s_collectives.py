"""Do the 4- and 8-GPU L40S collective measurements of ops_comm.csv belong in the L40S profile?

    python bench/l40s_collectives.py [--rows ROWS.csv]

calibrate/host_bound.yaml keeps the 4- and 8-GPU L40S collective rows out of the fit. This script tests that
decision with the data instead of asserting it. Three all-reduce models, each fitted on the fit half of the L40S
NCCL all-reduce rows (sha256 of group size and message size, even: fit, odd:
held out) and scored on the held-out half per group size:

- pair: today's profile, the 2-GPU fit run over n ring steps with 2(n-1)/n bus bytes (CollectiveParams via
  nearest_group);
- per-rank: one PCIe model for every group size: the 2-GPU fit with its bandwidth divided by 1 + c (n - 2), one
  extra parameter c for the bandwidth each extra rank takes from a shared PCIe path (switch uplink, host bridge);
- per-size: one fit per group size, i.e. what the rows measure (the upper bound of any model that uses them).

Then the consequence for the published TensorRT-LLM v0.14.0 L40S rows (trtllm.csv, TP4 and TP8): with `--rows`
(bench/offline_rows.py output of the current tree) each row's decode step is re-timed to first order, the
simulated step plus 2 x layers x (all-reduce time under the model - under the pair fit) at the row's simulated
mean batch, and the output tokens/s error is recomputed. Prefill steps and any change of batch are ignored, so
this is a screen: a model that fails it by a wide margin fails the simulation too. Last, per chip, format and TP of
the v0.14.0 Llama-3.1-70B rows whose output is at least 4x their input (decode-bound), the measured minus the
simulated step time against the simulated batch: a collective-bandwidth shortfall grows with the batch (the
all-reduce message is batch x hidden), a per-step cost does not.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from tokenfab.calibrate.fit import CollectiveSamples, collective_time_array, fit_collective
from tokenfab.calibrate.measurements import load_shared_ops
from tokenfab.hardware.catalog import load_chip

LAYERS, HIDDEN = 80, 8192  # Llama-3.1-70B: two all-reduces of the hidden state per layer


def half(num_devices: float, message_bytes: float) -> int:
    """sha256 of the row's key (group size, message bytes), even: fit half (0), odd: held out (1)."""
    return int(hashlib.sha256(f"{int(num_devices)}-{int(message_bytes)}".encode()).hexdigest(), 16) % 2


def l40s_all_reduce() -> pd.DataFrame:
    """The L40S NCCL all-reduce rows (2, 4, 8 GPUs) with their half."""
    ops = load_shared_ops()
    rows = ops[(ops.device == "l40s") & (ops.op == "all_reduce") & (ops.dtype == "half")].copy()
    rows["half"] = [half(n, b) for n, b in zip(rows.num_devices, rows.message_bytes)]
    return rows


def samples(rows: pd.DataFrame, link_bw: float) -> CollectiveSamples:
    n = rows.num_devices.to_numpy(float)
    return CollectiveSamples("all_reduce", n, rows.message_bytes.to_numpy(float), np.full(len(n), link_bw),
                             rows.time_s.to_numpy(float))


def per_rank_time(theta_pair: np.ndarray, c: float, s: CollectiveSamples) -> np.ndarray:
    """The pair fit with the link bandwidth divided by 1 + c (n - 2)."""
    slowed = CollectiveSamples(s.name, s.num_devices, s.message_bytes, s.link_bw / (1.0 + c * (s.num_devices - 2)),
                               s.time_s)
    return collective_time_array(theta_pair, slowed)


def fit_models(fit: pd.DataFrame, link_bw: float) -> dict:
    """Fitted parameters of the three models (module doc) on the fit half."""
    pair, _ = fit_collective(samples(fit[fit.num_devices == 2], link_bw))
    theta = np.array([pair.small_latency_s, pair.small_bus_eff, pair.latency_s, pair.bus_eff, pair.per_step_latency_s])
    s = samples(fit, link_bw)
    res = least_squares(lambda x: np.log(per_rank_time(theta, x[0], s)) - np.log(s.time_s), [0.5], bounds=([0.0], [50.0]))
    sizes = {int(n): fit_collective(samples(g, link_bw))[0] for n, g in fit.groupby("num_devices")}
    return {"pair": theta, "c": float(res.x[0]), "sizes": sizes}


def model_time(models: dict, kind: str, num_devices: np.ndarray, message_bytes: np.ndarray, link_bw: float) -> np.ndarray:
    s = CollectiveSamples("all_reduce", np.asarray(num_devices, float), np.asarray(message_bytes, float),
                          np.full(len(message_bytes), link_bw), np.ones(len(message_bytes)))
    if kind == "pair":
        return collective_time_array(models["pair"], s)
    if kind == "per-rank":
        return per_rank_time(models["pair"], models["c"], s)
    out = np.empty(len(message_bytes))
    for n in np.unique(s.num_devices):
        m = s.num_devices == n
        p = models["sizes"][int(n)]
        theta = np.array([p.small_latency_s, p.small_bus_eff, p.latency_s, p.bus_eff, p.per_step_latency_s])
        out[m] = collective_time_array(theta, s.subset(m))
    return out


def held_out_table(rows: pd.DataFrame, models: dict, link_bw: float) -> pd.DataFrame:
    test = rows[rows.half == 1]
    out = {}
    for kind in ("pair", "per-rank", "per-size"):
        t = model_time(models, kind, test.num_devices.to_numpy(), test.message_bytes.to_numpy(), link_bw)
        ape = np.abs(t / test.time_s.to_numpy() - 1.0)
        out[kind] = pd.Series(ape, index=test.index).groupby(test.num_devices).mean()
    return pd.DataFrame(out).assign(n=test.groupby("num_devices").size())


def serving_screen(rows_csv: str, models: dict, link_bw: float) -> pd.DataFrame:
    """First-order re-timing of the L40S 70B TP4/TP8 rows under each model (module doc)."""
    r = pd.read_csv(rows_csv)
    r = r[(r.device == "l40s") & (r.tp > 1) & (r.error.isna() | (r.error == ""))].copy()
    msg = r.mean_batch.to_numpy() * HIDDEN * 2.0
    base = model_time(models, "pair", r.tp.to_numpy(), msg, link_bw)
    out = {"rows": r.groupby("tp").size()}
    for kind in ("pair", "per-rank", "per-size"):
        extra_s = 2 * LAYERS * (model_time(models, kind, r.tp.to_numpy(), msg, link_bw) - base)
        step_s = r.predicted_step_ms.to_numpy() / 1e3 + extra_s
        pred = r.mean_batch.to_numpy() / step_s
        out[f"{kind} MAPE"] = pd.Series(np.abs(pred / r.measured.to_numpy() - 1.0), index=r.index).groupby(r.tp).mean()
    implied = (r.measured_step_ms - r.predicted_step_ms) / 1e3 / (2 * LAYERS)
    out["implied extra per all-reduce ms"] = 1e3 * implied.groupby(r.tp).median()
    return pd.DataFrame(out)


def step_excess(rows: pd.DataFrame) -> pd.DataFrame:
    """Per chip, format and TP of the decode-bound v0.14.0 70B rows: median excess step time (measured - simulated)
    and its least-squares slope against the simulated mean batch (module doc)."""
    r = rows[(rows.release.astype(str) == "0.14.0") & (rows.model == "llama-3.1-70b") & (rows.osl >= 4 * rows.isl)
             & (rows.tp > 1)]
    r = r.assign(excess_ms=r.measured_step_ms - r.predicted_step_ms)
    out = {}
    for key, g in r.groupby(["device", "dtype", "tp"]):
        slope = float(np.polyfit(g.mean_batch, g.excess_ms, 1)[0]) if g.mean_batch.nunique() > 1 else float("nan")
        out[key] = {"rows": len(g), "batch_min": g.mean_batch.min(), "batch_max": g.mean_batch.max(),
                    "excess_ms": g.excess_ms.median(), "slope_ms_per_seq": slope,
                    "excess_change_over_batches_ms": slope * (g.mean_batch.max() - g.mean_batch.min())}
    return pd.DataFrame(out).T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", help="bench/offline_rows.py --out CSV of the current tree (for the serving screen)")
    args = ap.parse_args()
    link_bw = load_chip("l40s").scale_up.bandwidth_bytes_per_s.value
    rows = l40s_all_reduce()
    models = fit_models(rows[rows.half == 0], link_bw)
    print(f"L40S NCCL all-reduce rows: {len(rows)} ({int((rows.half == 0).sum())} fit, {int((rows.half == 1).sum())} "
          f"held out); per-rank c = {models['c']:.3f} (bandwidth / (1 + c (n - 2)))")
    print("held-out MAPE per group size:")
    print(held_out_table(rows, models, link_bw).round(4).to_string())
    if args.rows:
        print("serving screen, TensorRT-LLM v0.14.0 L40S Llama-3.1-70B FP8 (first order, module doc):")
        print(serving_screen(args.rows, models, link_bw).round(4).to_string())
        print("excess step time of the decode-bound v0.14.0 70B rows (measured - simulated) against the batch:")
        print(step_excess(pd.read_csv(args.rows)).round(3).to_string())


if __name__ == "__main__":
    main()
