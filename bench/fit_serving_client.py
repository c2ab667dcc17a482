"""Fit how the benchmark client of the measured serving runs behaved, per framework and per measurement
campaign, and write it as data.

    python bench/fit_serving_client.py [--variation 0,0.005,0.01,0.02,0.05] [--latency-ms 0,5,10,20,40] [--write]
        [--campaign-variation ...] [--campaign-latency-ms ...] [--frameworks-from-file] [--only CAMPAIGN]

(the stored fit: its provenance `command`; `--frameworks-from-file` keeps the frameworks' clients of the file it
replaces and fits only the campaigns, about half the time; `--only` restricts the rows to iterate, without --write)

A closed-loop client at fixed concurrency C starts all C requests at t=0. Whether that first wave is in
the mean (aiperf / genai-perf count every request unless --warmup-request-count is given) and whether the
clients stay in step afterwards (exact output lengths keep every wave's prompts arriving together, so they
prefill together; lengths that vary, e.g. generations that stop at EOS because the client does not send
ignore_eos, spread the clients over the decode cycle) decide TTFT far more than the engine does. The
calibration rows do not say which client ran them, so per framework both are fitted on measured runs:
the warm-up (none, or one wave of C requests left out), the output-length variation (each output drawn
uniformly within +-f of the stated length; 0 = exact lengths) and the latency between client and engine
that no engine step accounts for (network and HTTP round trip, a front-end or router hop: it matters most
where prefills are short, at high TP). Rows: the fixed-concurrency runs of
../shared/calibration/e2e_aiconfigurator_silicon.csv that bench/accuracy_serving.py expresses, split by a
hash of the run key; the fit half chooses the setting minimising the mean of TTFT and TPOT MAPE, the other
half reports the figures. `--write` stores the fit with provenance in bench/data/serving_clients.yaml,
which bench/accuracy_serving.py reads.

Then, per measurement campaign (chip, framework release, source file of the rows' notes; `--min-runs` fit-half
runs at least): the client setting of the same grid minimising the same score on the campaign's own fit half
(one campaign is one benchmark setup, which a framework's campaigns need not share), kept only where it beats
the framework's client on that fit half; and under the campaign's client, how many of the C sequence slots the
deployment did not give to requests (`--held-slots`, default 0 or 1; at most C - held run at once, so one
request always waits for a slot), the choice minimising the same score on the campaign's fit half. Both client
fits run with the campaigns' held slots and deployment recipes of the file they replace (run the fit twice after
changing the grid). Last, per campaign that a deployment recipe of bench/accuracy_serving.py names (how a published
benchmark suite launched server and client: `RECIPES`), no recipe or the recipe, whichever scores better on the
campaign's fit half under its client and held slots (`--recipes-only`: that choice alone, under the stored clients).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import subprocess
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import yaml

from accuracy_serving import (
    CLIENTS_PATH,
    EXACT_CLIENT,
    RECIPES,
    _concurrency_job,
    apply_client,
    apply_recipe,
    concurrency_jobs,
    fitted_campaign_clients,
    fitted_campaigns,
    fitted_clients,
    fitted_recipes,
    job_half,
    recipe_applies,
)
from tokenfab.calibrate.measurements import shared_calibration_dir

METRICS = ("ttft_ms", "tpot_ms")



def _run(jobs: list[dict], client: dict | dict[str, dict], held: dict[str, int],
         recipes: dict[str, str] | None = None) -> list[dict]:
    """Results of `jobs` under `client` (one setting, or one per campaign), each with its campaign's held slots
    from `held` and its campaign's deployment recipe from `recipes` (default: the stored ones)."""
    per_campaign = not set(client) <= set(EXACT_CLIENT)
    recipes = fitted_recipes() if recipes is None else recipes

    def kwargs(j: dict) -> dict:
        name = j["meta"]["campaign"]
        kw = apply_client(j["kwargs"], {**(client[name] if per_campaign else client), "held_slots": held.get(name, 0)})
        recipe = recipes.get(name)
        return apply_recipe(kw, recipe) if recipe and recipe_applies(recipe, j["meta"]) else kw
    jobs = [{**j, "kwargs": kwargs(j)} for j in jobs]
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_concurrency_job, jobs, chunksize=4))


def _mape(jobs: list[dict], results: list[dict], metric: str) -> tuple[float, int]:
    errs = [abs(r[metric] / j["measured"][metric][0] - 1.0) for j, r in zip(jobs, results)
            if not r["error"] and metric in j["measured"]]
    return (float(np.mean(errs)) if errs else float("nan")), len(errs)


def _score(jobs: list[dict], results: list[dict]) -> float:
    return float(np.mean([_mape(jobs, results, m)[0] for m in METRICS]))


EXACT = EXACT_CLIENT


def _campaign_halves(jobs: list[dict], min_runs: int):
    """(campaign, fit half, held-out half) of every campaign, in name order, whose fit half has at least
    `min_runs` runs and whose held-out half is not empty: the campaigns both per-campaign fits choose over."""
    for name in sorted({j["meta"]["campaign"] for j in jobs}):
        mine = [j for j in jobs if j["meta"]["campaign"] == name]
        fit, test = [j for j in mine if job_half(j) == 0], [j for j in mine if job_half(j) == 1]
        if len(fit) >= min_runs and test:
            yield name, fit, test


def _fit_campaign_clients(jobs: list[dict], best: dict[str, dict], grid: list[dict], held: dict[str, int],
                          min_runs: int) -> dict[str, dict]:
    """Per campaign with `min_runs` fit-half runs: the grid client scoring best on its fit half (with the held
    slots `held`), kept where it beats its framework's client `best` there."""
    out = {}
    for name, fit, test in _campaign_halves(jobs, min_runs):
        framework = best[fit[0]["meta"]["framework"]]
        scores = [(_score(fit, _run(fit, c, held)), i) for i, c in enumerate(grid)]
        own = grid[min(scores)[1]]
        base = _score(fit, _run(fit, framework, held))
        if min(scores)[0] < base:
            test_ttft = {label: round(_mape(test, _run(test, c, held), "ttft_ms")[0], 4)
                         for label, c in (("framework_client", framework), ("own_client", own))}
            out[name] = {"client": dict(own), "client_fit_half_score": {"framework_client": round(base, 4),
                                                                  "own_client": round(min(scores)[0], 4)},
                         "client_held_out_ttft_ms_mape": test_ttft}
        print(f"campaign {name}: own client {own} fit-half score {min(scores)[0]:.4f} against the framework's {base:.4f}")
    return out


def _fit_campaigns(jobs: list[dict], client_of: dict[str, dict], choices: list[int], min_runs: int) -> dict[str, dict]:
    """Per campaign with `min_runs` fit-half runs: the held slots (of `choices`) scoring best on its fit half under
    its client `client_of[campaign]`, with fit-half and held-out scores of every choice."""
    out = {}
    for name, fit, test in _campaign_halves(jobs, min_runs):
        client = client_of[name]
        fit_s = {h: _score(fit, _run(fit, client, {name: h})) for h in choices}
        test_ttft = {h: _mape(test, _run(test, client, {name: h}), "ttft_ms")[0] for h in choices}
        h = min(fit_s, key=fit_s.get)
        out[name] = {"held_slots": h, "fit_runs": len(fit), "held_out_runs": len(test),
                     "fit_half_score": {k: round(v, 4) for k, v in fit_s.items()},
                     "held_out_ttft_ms_mape": {k: round(v, 4) for k, v in test_ttft.items()}}
        print(f"campaign {name}: held_slots {h}; fit-half score {fit_s}; held-out TTFT MAPE {test_ttft}")
    return out


def _fit_recipes(jobs: list[dict], client_of: dict[str, dict], held: dict[str, int], min_runs: int) -> dict[str, dict]:
    """Per campaign with `min_runs` fit-half runs that a deployment recipe (`RECIPES`) names: no recipe or one of
    those, whichever scores best on its fit half (under its client and held slots), with fit-half and held-out
    figures of every choice."""
    out = {}
    for name, fit, test in _campaign_halves(jobs, min_runs):
        choices = ["none", *(r for r in RECIPES if recipe_applies(r, fit[0]["meta"]))]
        if len(choices) == 1:
            continue
        runs = {c: {name: c} if c != "none" else {} for c in choices}
        fit_s = {c: _score(fit, _run(fit, client_of, held, runs[c])) for c in choices}
        test_r = {c: _run(test, client_of, held, runs[c]) for c in choices}
        best = min(fit_s, key=fit_s.get)
        out[name] = {"recipe": None if best == "none" else best,
                     "recipe_fit_half_score": {c: round(v, 4) for c, v in fit_s.items()},
                     **{f"recipe_held_out_{m}_mape": {c: round(_mape(test, r, m)[0], 4) for c, r in test_r.items()}
                        for m in METRICS}}
        print(f"campaign {name}: recipe {best}; fit-half score {fit_s}; held-out {out[name]}")
    return out


def _recipes_only(min_runs: int, write: bool) -> None:
    """Choose the campaigns' deployment recipes under the stored clients and held slots, and store the choice in the
    file's campaign entries (the rest of the file unchanged)."""
    jobs = [j for j in concurrency_jobs(shared_calibration_dir(), clients={}, campaigns={}, campaign_clients={},
                                        recipes={})[0] if not j["meta"].get("disaggregated")]
    frameworks, own = fitted_clients(), fitted_campaign_clients()
    client_of = {j["meta"]["campaign"]: {**EXACT_CLIENT, **(own.get(j["meta"]["campaign"])
                                                             or frameworks.get(j["meta"]["framework"], EXACT_CLIENT))}
                 for j in jobs}
    chosen = _fit_recipes(jobs, client_of, fitted_campaigns(), min_runs)
    if not write:
        return
    data = yaml.safe_load(CLIENTS_PATH.read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data["provenance"]["recipes"] = {
        "method": "per campaign with at least min_runs fit-half runs that a deployment recipe of bench/accuracy_serving.py "
                  "RECIPES names (its framework, chip and model): no recipe or the recipe, whichever gives the lower "
                  "mean of TTFT and TPOT MAPE on the campaign's fit half under its stored client and held slots; "
                  "held-out figures of both on the other half",
        "min_runs": min_runs, "commit": commit, "date": dt.date.today().isoformat(),
        "command": f"python bench/fit_serving_client.py --recipes-only --min-runs {min_runs} --write"}
    for name, row in chosen.items():
        data["campaigns"].setdefault(name, {}).update(row)
    CLIENTS_PATH.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {CLIENTS_PATH}")


def _framework_report(jobs: list[dict], client_of: dict[str, dict], held: dict[str, int]) -> dict:
    """Held-out figures of one framework's jobs: the exact client (no held slots) against the fitted settings
    (`client_of`: per campaign)."""
    test = [j for j in jobs if job_half(j) == 1]
    before, after = _run(test, EXACT, {}), _run(test, client_of, held)
    row = {}
    for metric in METRICS:
        (b, n), (a, _) = _mape(test, before, metric), _mape(test, after, metric)
        row[f"held_out_{metric}_mape_exact_client"], row[f"held_out_{metric}_mape"] = round(b, 4), round(a, 4)
        row["held_out_rows"] = n
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variation", default="0,0.005,0.01,0.02,0.05")
    ap.add_argument("--latency-ms", default="0,5,10,20,40")
    ap.add_argument("--warmup-waves", default="0,1")
    ap.add_argument("--held-slots", default="0,1")
    ap.add_argument("--min-runs", type=int, default=10)
    ap.add_argument("--campaign-clients", action=argparse.BooleanOptionalAction, default=True,
                    help="fit a client per campaign too (kept where it beats the framework's on the campaign's fit half)")
    ap.add_argument("--campaign-variation", default=None, help="the campaigns' output-variation grid (default --variation)")
    ap.add_argument("--campaign-latency-ms", default=None, help="the campaigns' latency grid (default --latency-ms)")
    ap.add_argument("--frameworks-from-file", action=argparse.BooleanOptionalAction, default=False,
                    help="keep the frameworks' clients of the file it replaces (fit only the campaigns)")
    ap.add_argument("--only", default="", help="only the campaigns whose name contains this (to iterate; no --write)")
    ap.add_argument("--recipes-only", action="store_true",
                    help="choose only the campaigns' deployment recipes, under the stored clients and held slots")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.recipes_only:
        return _recipes_only(args.min_runs, args.write)
    if args.only and args.write:
        ap.error("--only fits part of the rows: it cannot --write the file every row is read under")
    grid = [{"warmup_waves": int(w), "output_variation_frac": float(v), "request_latency_ms": float(lat)}
            for w, v, lat in itertools.product(args.warmup_waves.split(","), args.variation.split(","), args.latency_ms.split(","))]
    jobs = [j for j in concurrency_jobs(shared_calibration_dir(), clients={}, campaigns={}, campaign_clients={},
                                        recipes={})[0]
            if not j["meta"].get("disaggregated") and args.only in j["meta"]["campaign"]]
    names = sorted({j["meta"]["framework"] for j in jobs})
    held_before, best = fitted_campaigns(), fitted_clients() if args.frameworks_from_file else {}
    for name in (n for n in names if n not in best):
        fit = [j for j in jobs if j["meta"]["framework"] == name and job_half(j) == 0]
        scores = [(_score(fit, _run(fit, c, held_before)), i) for i, c in enumerate(grid)]
        for (s, i) in scores:
            print(f"{name} {grid[i]}: fit-half mean MAPE {s * 100:.1f}%")
        best[name] = grid[min(scores)[1]]
    campaign_grid = [{"warmup_waves": int(w), "output_variation_frac": float(v), "request_latency_ms": float(lat)}
                     for w, v, lat in itertools.product(args.warmup_waves.split(","),
                                                        (args.campaign_variation or args.variation).split(","),
                                                        (args.campaign_latency_ms or args.latency_ms).split(","))]
    own = _fit_campaign_clients(jobs, best, campaign_grid, held_before, args.min_runs) if args.campaign_clients else {}
    client_of = {j["meta"]["campaign"]: own[j["meta"]["campaign"]]["client"] if j["meta"]["campaign"] in own
                 else best[j["meta"]["framework"]] for j in jobs}
    campaigns = _fit_campaigns(jobs, client_of, [int(h) for h in args.held_slots.split(",")], args.min_runs)
    for name, row in own.items():
        campaigns[name].update(row)
    held = {k: v["held_slots"] for k, v in campaigns.items() if v["held_slots"]}
    for name, row in _fit_recipes(jobs, client_of, held, args.min_runs).items():  # last: under the clients just fitted
        campaigns[name].update(row)
    report = {}
    for name in names:
        row = report[name] = {**best[name], **_framework_report([j for j in jobs if j["meta"]["framework"] == name],
                                                                client_of, held)}
        print(f"{name}: {best[name]}; held-out TTFT {row['held_out_ttft_ms_mape_exact_client'] * 100:.1f}% -> "
              f"{row['held_out_ttft_ms_mape'] * 100:.1f}%, TPOT {row['held_out_tpot_ms_mape_exact_client'] * 100:.1f}% -> "
              f"{row['held_out_tpot_ms_mape'] * 100:.1f}% ({row['held_out_rows']} rows)")
    if args.write:
        _write(args, grid, campaign_grid, report, campaigns)


def _write(args: argparse.Namespace, grid: list[dict], campaign_grid: list[dict], report: dict, campaigns: dict) -> None:
    if args.frameworks_from_file:  # the frameworks' clients (and their grid) come from the replaced file's fit
        old = yaml.safe_load(CLIENTS_PATH.read_text()).get("provenance", {})
        grid = {"frameworks_fitted_by": {k: old.get(k) for k in ("commit", "date", "command")}, "grid": old.get("grid", grid)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    data = {"provenance": {
        "method": "per framework, the grid setting minimising the mean of TTFT and TPOT MAPE on the fit half (sha256 of "
                  "the run key, even) of the aggregated fixed-concurrency rows of shared/calibration/"
                  "e2e_aiconfigurator_silicon.csv (NVIDIA aiconfigurator-core 0.12.0 silicon samples); held-out figures "
                  "on the odd half, against the exact client (no warm-up, exact lengths, no held slots). Then per "
                  "campaign (chip, framework release, notes' source_file) under its framework's client, the held slots "
                  "minimising the same score on the campaign's fit half; with --campaign-clients, first the "
                  "campaign's own grid client (`client`), kept where it beats the framework's on that fit half, and "
                  "the held slots under it; the frameworks' held-out figures use the campaigns' own clients. With "
                  "--frameworks-from-file the frameworks' clients are those of the file this one replaced (same "
                  "method, an earlier commit)",
        "grid": grid, "campaign_grid": campaign_grid, "held_slots_choices": [int(h) for h in args.held_slots.split(",")], "min_runs": args.min_runs,
        "commit": commit, "date": dt.date.today().isoformat(),
        "command": "python bench/fit_serving_client.py " + " ".join(
            (f"--{'' if v else 'no-'}{k.replace('_', '-')}" if isinstance(v, bool) else f"--{k.replace('_', '-')} {v}")
            for k, v in vars(args).items() if k not in ("write", "only") and v is not None) + " --write"},
        "frameworks": report, "campaigns": campaigns}
    CLIENTS_PATH.parent.mkdir(exist_ok=True)
    CLIENTS_PATH.write_text(yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {CLIENTS_PATH}")


if __name__ == "__main__":
    main()
