"""MoE groups of bench/accuracy.py: the fused MoE layer, MoE serving, and which MoE rows are expressible.

    python bench/accuracy_moe.py [--json OUT] [--serving-limit N] [--no-serving] [--fixed-cost-form] [--cache-steps]

1. Fused MoE layer (ops_moe.csv, TensorRT-LLM kernels on A100, L40S, H100, B200):
   - held-out: per chip, the `moe` kernel table is fitted on 70% of the layer shapes (hidden,
     intermediate, top-k, experts, MoE-TP, EP; every token count of a shape on the same side) and
     scored on the other 30%, per chip and dtype;
   - leave-one-chip-out: each chip resolved as `calibrate.unseen` defines a chip the tool never saw measured, its work counted as
     `cost.moe.estimate_moe` counts it (`resolved_moe_form`)
     (the one definition bench/accuracy.py's 'MoE layer-unseen' uses too, so the two figures are equal): the
     generic profile refitted on the other three chips' rows (its MoE tables with a cache term relative to each
     chip's own L2, since these benchmarks re-run warm weights, one copy of the working set per cache partition,
     `num_onchip_sram_partitions`: `--cache-steps` shows the step; the fixed cost in thousands of cycles of
     each chip's clock, `calibrate.moe_fit`), and of the held chip only its spec: the pooled kilocycles at its
     clock (`ChipSpec.clock_hz`); a kind the pool lacks (B200's MXFP4 x MXFP8, L40S's CUTLASS backend) takes
     the pooled bf16 curve moved by the pooled (not the held chip's) GEMM efficiencies of the two formats;
     scored on every row of the chip left out;
   - leave-one-chip-out, own fixed cost: the same pooled efficiencies with only the fixed cost taken from
     the held chip (median residual of its 1-token rows), scored on its other rows: how much of the
     unseen-chip error is the fixed cost, which is the engine's kernel chain and no spec states;
   - leave-one-chip-out on layers measured at >= 200 us, where the work, not the fixed cost, dominates.
2. MoE serving at fixed concurrency: the aggregated MoE rows of e2e_aiconfigurator_silicon.csv
   (DeepSeek-V3/R1, Qwen3-235B-A22B, GPT-OSS-120B) through `api.simulate` with the row's layout
   (tp, attention-DP, MoE-TP, EP) and `--concurrency`, reusing bench/accuracy_serving.py's job runner.
3. TensorRT-LLM MoE offline throughput rows of trtllm.csv.
4. Every MoE row of shared/calibration is listed as expressed or failed-by-reason.
5. A format a chip did not measure: the same chip's nearest measured format's fit with its efficiencies
   moved by the chip's dense-GEMM efficiency ratio of the two formats (what the tool uses), beside the
   same without the ratio, on chips with two or more formats.
6. Absorbed-MLA decode (H20 FlashInfer MLA rows in vendors/): the fitted 'mla' curve on held-out batch
   sizes, beside the prefill-curve fallback that chips without MLA measurements use.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from tokenfab.calibrate.fit import KernelSamples, fit_kernel, predict_samples
from tokenfab.calibrate.measurements import from_shared_frame, load_shared_ops, shared_calibration_dir, validate
from tokenfab.calibrate.profiles import kernel_samples, table_upper
from tokenfab.calibrate.unseen import unseen_chip_cost
from tokenfab.cost.moe import MOE_FORMS, resolved_moe_form
from tokenfab.hardware.catalog import load_chip

HOLDOUT_FRAC_TENTHS = 3  # 30% of the layer shapes are held out
SHAPE_COLUMNS = ["hidden", "intermediate", "topk", "num_experts", "moe_tp", "ep"]


def moe_rows(directory: Path) -> pd.DataFrame:
    """ops_moe.csv as measurement rows, each marked held-out (`test`) by a hash of its layer shape."""
    frame = validate(from_shared_frame(pd.read_csv(directory / "ops_moe.csv")), "ops_moe.csv")
    key = frame[SHAPE_COLUMNS].astype(int).astype(str).agg("-".join, axis=1) + "-" + frame["variant"].fillna("")
    frame["test"] = key.map(lambda s: zlib.crc32(s.encode()) % 10 < HOLDOUT_FRAC_TENTHS)
    return frame


def _rows(group: str, device: str, kind: str, samples: KernelSamples, theta: np.ndarray) -> list[dict]:
    pred = predict_samples(theta, samples)
    return [{"group": group, "device": device, "kind": kind, "measured": m, "predicted": p, "error_frac": p / m - 1.0}
            for m, p in zip(samples.time_s, pred)]


def _forms(frame: pd.DataFrame, device: str) -> dict[str, dict]:
    """A chip's MoE samples by work form (`cost.moe.MOE_FORMS`), then by (table, kind)."""
    chip = load_chip(device)
    return {form: kernel_samples(frame, chip, moe_form=form) for form in MOE_FORMS}


def _by_form(forms: dict[str, dict], key: tuple[str, str]) -> dict:
    """One kind's samples in every work form (what `calibrate.moe_fit.fit_moe_kind` takes)."""
    return {form: by[key] for form, by in forms.items()}


def kernel_holdout(frame: pd.DataFrame) -> pd.DataFrame:
    """Per chip and kernel kind: fit on the training shapes (both work-unit forms, the lower training loss
    kept, as the profile fit does), signed error on the held-out ones."""
    from tokenfab.calibrate.moe_fit import fit_moe_kind

    rows = []
    for device in sorted(frame["device"].unique()):
        own = frame[frame["device"] == device]
        train, test = _forms(own[~own["test"]], device), _forms(own[own["test"]], device)
        for key in sorted(test["columns"]):
            if key not in train["columns"]:
                continue
            params, _, form = fit_moe_kind(_by_form(train, key), table_upper("moe"))
            rows += _rows("moe-layer:held-out", device, key[1], test[form][key], params.as_vector())
    return pd.DataFrame(rows)


def _resolution(device: str, own_moe: dict, own_forms: dict | None = None):
    """The chip's shipped resolution (its dense-GEMM fits, which saw no MoE row) with its MoE tables replaced by
    `own_moe` (kind -> KernelParams), each with its work form (`own_forms`, kind -> form), and no MoE table behind
    it in a reference. Predictions then go through `ResolvedProfile.moe`, the tool's own path for that case."""
    import dataclasses

    from tokenfab.cost.chip_cost import chip_cost
    from tokenfab.cost.profile import ResolvedProfile

    base = chip_cost(load_chip(device)).resolved
    forms = own_forms or {}
    own = dataclasses.replace(base.profile, moe=own_moe, moe_launch_kilocycles={},
                              moe_row_tiles=frozenset(k for k, f in forms.items() if f == "row-tiles"),
                              moe_tile_ladder=frozenset(k for k, f in forms.items() if f == "tile-ladder"))
    reference = None if base.reference is None else dataclasses.replace(base.reference, moe={})
    return ResolvedProfile(own, base.generic, base.provenance, base.compute_units, base.note, reference,
                           clock_hz=base.clock_hz)


def loco_ops(directory: Path) -> pd.DataFrame:
    """The rows the leave-one-chip-out refits read: GEMMs and fused MoE layers of ops_*.csv. The generic profile's
    MoE tables and the GEMM tables that scale them depend on nothing else, so its MoE predictions equal those of
    bench/accuracy.py's refit on every op (its 'MoE layer-unseen' group)."""
    ops = load_shared_ops(directory)
    return ops[ops["op"].isin(["gemm", "moe"])]


def kernel_loco(frame: pd.DataFrame, ops: pd.DataFrame) -> pd.DataFrame:
    """Per chip left out: the chip resolved as `calibrate.unseen` defines an unseen chip (the generic profile
    refitted on the other chips' rows of `ops`, the held chip's spec only: its clock counts the pooled
    kilocycles), error on all of its rows. Beside it, what generalises without the fixed cost: the same pooled
    efficiencies with the fixed cost alone refitted on the held chip's 1-token rows (the layer timed once per
    shape at its smallest size), scored on its other rows."""
    devices = sorted(frame["device"].unique())
    one = frame["num_tokens"] == 1
    forms = {d: _forms(frame[frame["device"] == d], d) for d in devices}
    smallest = {d: _forms(frame[(frame["device"] == d) & one], d) for d in devices}
    rest = {d: _forms(frame[(frame["device"] == d) & ~one], d) for d in devices}
    rows = []
    for held in devices:
        cc = unseen_chip_cost(ops, held, devices)
        for (table, kind) in sorted(forms[held]["columns"]):
            params, _ = cc.resolved.moe(kind)
            i = resolved_moe_form(cc, kind)  # as `cost.moe.estimate_moe` counts the work
            rows += _rows("moe-layer:unseen-chip", held, kind, forms[held][i][(table, kind)], params.as_vector())
            theta = params.as_vector()
            theta[0] = 0.0
            small = smallest[held][i][(table, kind)]
            theta[0] = max(0.0, float(np.median(small.time_s - predict_samples(theta, small))))
            rows += _rows("moe-layer:unseen-chip, own fixed cost", held, kind, rest[held][i][(table, kind)], theta)
        print(f"  moe leave-one-chip-out: {held} done", file=sys.stderr)
    return pd.DataFrame(rows)


def kernel_unmeasured_format(frame: pd.DataFrame) -> pd.DataFrame:
    """Per chip and format as if the chip had not measured that format: the tool's resolution with the chip's
    other formats as its own MoE fits (`ResolvedProfile.moe`: the nearest format's fit, efficiencies moved by
    the chip's dense-GEMM efficiency ratio of the two formats), beside the same without that ratio (the
    previous rule). The generic path for the same rows is the leave-one-chip-out group. Chips with one
    format only (A100, B200) have nothing to score."""
    from tokenfab.calibrate.moe_fit import fit_moe_kind
    from tokenfab.cost.profile import nearest_moe_kind

    devices = sorted(frame["device"].unique())
    forms = {d: _forms(frame[frame["device"] == d], d) for d in devices}
    fits = {d: {key[1]: fit_moe_kind(_by_form(forms[d], key), table_upper("moe")) for key in forms[d]["columns"]}
            for d in devices}
    rows = []
    for d in devices:
        for (table, kind) in sorted(forms[d]["columns"]):
            others = {k: v[0] for k, v in fits[d].items() if k != kind}
            if not others:
                continue
            own = _resolution(d, others, own_forms={k: v[2] for k, v in fits[d].items() if k != kind})
            scaled, _ = own.moe(kind)
            sample = forms[d][own.moe_form(kind)][(table, kind)]
            rows += _rows("moe-layer:unmeasured-format (same chip, GEMM-scaled)", d, kind, sample, scaled.as_vector())
            rows += _rows("moe-layer:unmeasured-format (same chip's nearest format)", d, kind, sample,
                          others[nearest_moe_kind(kind, others)].as_vector())
    return pd.DataFrame(rows)


def fixed_cost_form(frame: pd.DataFrame) -> list[dict]:
    """Is the fused kernel's fixed cost paid on top of its work (a chain of kernels inside the captured CUDA
    graph) or hidden under it (host launch overhead, which an eager benchmark shows but a graph replay and a
    CUDA-graph serving step do not)? Per chip and format: held-out MAPE of the additive form beside the form
    t = (L^q + work^q)^(1/q) with q fitted (q = 1: additive; q -> inf: max(L, work), fully hidden).
    The collector (aiconfigurator collect_moe.py, helper.benchmark_with_power) times CUDA-graph replays."""
    from scipy.optimize import least_squares

    from tokenfab.calibrate.fit import LOWER, NUM_PARAMS as Q  # theta[Q] is the exponent q
    from tokenfab.cost.kernel import kernel_time_array

    def predict(theta: np.ndarray, s: KernelSamples) -> np.ndarray:
        work = kernel_time_array(s.flops, s.dram_bytes, s.peak, s.bandwidth, np.r_[0.0, theta[1:Q]], s.work_units,
                                 s.compute_units, s.cache_bytes)
        return (theta[0] ** theta[Q] + work ** theta[Q]) ** (1.0 / theta[Q])

    out = []
    for device in sorted(frame["device"].unique()):
        chip, own = load_chip(device), frame[frame["device"] == device]
        train, test = kernel_samples(own[~own["test"]], chip), kernel_samples(own[own["test"]], chip)
        for key in sorted(set(train) & set(test)):
            base, _ = fit_kernel(train[key], upper=table_upper("moe"))
            x0 = np.r_[base.as_vector(), 2.0]
            lo, hi = np.r_[LOWER, 1.0], np.r_[table_upper("moe"), 30.0]
            free = [i for i in range(Q + 1) if i not in (6, 7)]  # cache residency and ramp kept at the additive fit's

            def residual(x: np.ndarray, x0=x0, s=train[key]) -> np.ndarray:
                theta = x0.copy()
                theta[free] = x
                return np.log(predict(theta, s)) - np.log(s.time_s)
            fit = least_squares(residual, np.clip(x0[free], lo[free] + 1e-12, hi[free] - 1e-12), bounds=(lo[free], hi[free]),
                                loss="soft_l1", f_scale=0.05, x_scale="jac", max_nfev=3000)
            theta = x0.copy()
            theta[free] = fit.x
            held = test[key].time_s
            out.append({"device": device, "kind": key[1],
                        "additive_mape": float(np.mean(np.abs(predict_samples(base.as_vector(), test[key]) / held - 1.0))),
                        "q_form_mape": float(np.mean(np.abs(predict(theta, test[key]) / held - 1.0))),
                        "q": float(theta[Q]), "launch_s": base.launch_s})
    return out


CACHE_STEP_BINS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0, 8.0, np.inf)


def cache_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """Where each chip's warm layers stop running from cache: per chip and format, the memory-dominated rows (DRAM
    time >= 3x compute time) binned by their resident bytes over the L2 (`onchip_sram_bytes`; resident bytes count
    one copy per cache partition, `num_onchip_sram_partitions`), with the median effective bandwidth in units of the
    chip's DRAM bandwidth: DRAM time / (measured time - the chip's fitted fixed cost). Above 1 the bytes came from
    cache. With one copy counted, A100's and H100's step sits at half their L2, L40S's at all of it."""
    from tokenfab.cost.chip_cost import chip_cost

    out = []
    for device in sorted(frame["device"].unique()):
        chip = load_chip(device)
        resolved = chip_cost(chip).resolved
        for (_, kind), s in sorted(kernel_samples(frame[frame["device"] == device], chip).items()):
            launch = resolved.moe(kind)[0].launch_s
            dram_s = s.dram_bytes / s.bandwidth
            mem = dram_s >= 3.0 * s.flops / s.peak
            fill = s.dram_bytes / np.maximum(s.cache_bytes, 1e-30)  # = resident bytes (with copies) / L2
            effective = dram_s / np.maximum(s.time_s - launch, 1e-7)
            bins = pd.cut(fill[mem], CACHE_STEP_BINS)
            for b, g in pd.DataFrame({"bin": bins, "eff": effective[mem]}).groupby("bin", observed=True):
                out.append({"device": device, "kind": kind, "resident_over_l2": str(b), "num_rows": len(g),
                            "effective_bw_over_dram": float(g["eff"].median())})
    return pd.DataFrame(out)


def mla_decode_holdout(directory: Path) -> pd.DataFrame:
    """Absorbed-MLA decode (vendors/ops_attention_h20.csv, FlashInfer MLA on H20): the 'mla' curve fitted on
    the rows of two thirds of the batch sizes, scored on the other batch sizes; and, for comparison, the curve a
    chip without MLA measurements uses (its prefill curve, here H20's own)."""
    from tokenfab.calibrate.measurements import load_vendor_ops
    from tokenfab.cost.chip_cost import chip_cost

    frame = load_vendor_ops(directory)
    mla = frame[(frame["op"] == "attention_decode") & (frame["variant"] == "mla")].copy()
    if mla.empty:
        return pd.DataFrame()
    batches = sorted(mla["batch"].unique())
    mla["test"] = mla["batch"].isin(batches[1::3])  # every third batch size held out (16, 128 of 1..512)
    rows = []
    for device, own in mla.groupby("device"):
        chip = load_chip(str(device))
        train = kernel_samples(own[~own["test"]], chip)[("attention_decode", "mla")]
        test = kernel_samples(own[own["test"]], chip)[("attention_decode", "mla")]
        params, _ = fit_kernel(train)
        rows += _rows("mla-decode:held-out", str(device), "mla", test, params.as_vector())
        prefill, _ = chip_cost(chip).resolved.attention("prefill", "bf16")
        rows += _rows("mla-decode:prefill-curve fallback", str(device), "mla", test, prefill.as_vector())
    return pd.DataFrame(rows)


def summarize(frame: pd.DataFrame, by: list[str]) -> list[dict]:
    out = []
    for key, g in frame.groupby(by, sort=True):
        ape = g["error_frac"].abs()
        label = key if isinstance(key, str) else "/".join(map(str, key))
        out.append({"group": label, "num_rows": len(g), "mape": float(ape.mean()), "median_ape": float(ape.median()),
                    "p90_ape": float(ape.quantile(0.9)), "bias": float(g["error_frac"].median())})
    return out


def _print(title: str, stats: list[dict]) -> None:
    print(f"\n## {title}")
    print(f"{'group':58s} {'rows':>6s} {'MAPE':>7s} {'median':>7s} {'p90':>7s} {'bias':>7s}")
    for s in stats:
        print(f"{s['group']:58s} {s['num_rows']:6d} {s['mape']*100:6.1f}% {s['median_ape']*100:6.1f}% "
              f"{s['p90_ape']*100:6.1f}% {s['bias']*100:+6.1f}%")


WORK_DOMINATED_S = 200e-6  # several times every chip's fitted fixed cost (21-51 us)


def run_moe_kernel_groups(directory: Path) -> pd.DataFrame:
    frame = moe_rows(directory)
    loco = kernel_loco(frame, loco_ops(directory))
    unseen = loco[(loco["group"] == "moe-layer:unseen-chip") & (loco["measured"] >= WORK_DOMINATED_S)]
    work = unseen.assign(group="moe-layer:unseen-chip, layers >= 200 us (work-dominated)")
    return pd.concat([kernel_holdout(frame), loco, work, kernel_unmeasured_format(frame)], ignore_index=True)


def run_moe_group(directory: Path, serving_limit: int | None = None, workers: int = 2) -> tuple[pd.DataFrame, list[str]]:
    """All MoE groups as one frame (group, device, kind, measured, predicted, error_frac) and the MoE rows
    not expressed, each with its reason (bench/accuracy.py's EXTERNAL_GROUPS entry 'moe')."""
    from accuracy_moe_serving import run_moe_serving

    kernel = run_moe_kernel_groups(directory)
    serving, failed = run_moe_serving(directory, serving_limit, workers)
    return pd.concat([kernel, mla_decode_holdout(directory), serving], ignore_index=True), failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-serving", action="store_true")
    ap.add_argument("--serving-limit", type=int, default=None, help="simulate at most N serving jobs (a spread sample)")
    ap.add_argument("--fixed-cost-form", action="store_true", help="only: is the fitted fixed cost additive or hidden?")
    ap.add_argument("--cache-steps", action="store_true", help="only: effective bandwidth by resident bytes over the L2")
    args = ap.parse_args()
    if args.cache_steps:
        print(cache_steps(moe_rows(shared_calibration_dir())).to_string(index=False))
        return
    if args.fixed_cost_form:
        for r in fixed_cost_form(moe_rows(shared_calibration_dir())):
            print(f"{r['device']:9s} {r['kind']:13s} additive {r['additive_mape']*100:5.1f}%  q-form {r['q_form_mape']*100:5.1f}%"
                  f"  q={r['q']:.2f}  fixed {r['launch_s']*1e6:.1f} us")
        return
    t0 = time.perf_counter()
    directory = shared_calibration_dir()
    if args.no_serving:
        frame, failed = pd.concat([run_moe_kernel_groups(directory), mla_decode_holdout(directory)], ignore_index=True), []
    else:
        frame, failed = run_moe_group(directory, args.serving_limit)
    report = {"by_device_kind": summarize(frame, ["group", "device", "kind"]) if "kind" in frame else [],
              "by_group": summarize(frame, ["group"])}
    _print("MoE groups by device and format", report["by_device_kind"])
    _print("MoE groups", report["by_group"])
    report["failed"] = failed
    print(f"\nMoE rows not expressed: {len(failed)}")
    for line in failed[:40]:
        print(f"  {line}")
    report["wall_s"] = time.perf_counter() - t0
    print(f"(wall time {report['wall_s']:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
