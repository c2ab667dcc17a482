"""How fast does the fleet planner solve a big instance? Prints one JSON object.

Instance (default): 30 chip options x 20 scenarios x 12 quarters x 10 models, random but
seeded (numpy default_rng(0)), capacity from the plan's `capacity:` table, a total budget
that binds in some scenarios, supply limits, lead times, and import cut-offs, plus shared
components: HBM stacks, advanced packaging and wafer starts consumed through bills of
materials, each scenario scaling some component supplies. With `--components` (default on)
three of the options are manufactured (silicon cost model, wafer component) with an NRE,
i.e. a build-or-not binary each: that instance is a MILP. `--no-nre` drops the binaries (an
LP). HiGHS runs on one thread. Targets: LP under 10 s, MILP under 60 s on one core.

    python bench/plan_speed.py [--options 30 --scenarios 20 --periods 12 --models 10]
                               [--plan-kind robust|two-stage|both] [--integer] [--presolve on|off]
                               [--no-components] [--no-nre]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from tokenfab.fleet import PlanSpec, plan_fleet


def synthetic_plan(
    num_options: int,
    num_scenarios: int,
    num_periods: int,
    num_models: int,
    *,
    plan_kind: str,
    integer: bool,
    seed: int,
    presolve: str = "on",
    components: bool = True,
    nre: bool = True,
) -> PlanSpec:
    """A random but plausible plan: prices 5k-40k USD, 200-5000 tokens/s per chip, demand growing 3x."""
    rng = np.random.default_rng(seed)
    periods = [f"q{t + 1:02d}" for t in range(num_periods)]
    models = [f"model-{m}" for m in range(num_models)]
    options = [f"chip-{i}" for i in range(num_options)]
    growth = np.linspace(1.0, 3.0, num_periods)
    model_specs = [
        {
            "name": name,
            "slo": {"ttft_ms": 2000, "tpot_ms": 50},
            "tokens_per_s": {p: float(rng.uniform(2e5, 1e6) * g) for p, g in zip(periods, growth, strict=True)},
        }
        for name in models
    ]
    option_specs = [
        {
            "name": name,
            "price": float(rng.uniform(5e3, 4e4)),
            "supply": float(rng.uniform(500, 5000)),
            "lead_time_periods": int(rng.integers(0, 3)),
            "integer": integer,
        }
        for name in options
    ]
    capacity = _capacity(rng, options, models)
    scenarios = _scenarios(rng, options, periods, num_scenarios)
    extra = _shared_components(rng, option_specs, scenarios, periods, nre=nre) if components else {}
    return PlanSpec.model_validate(
        {
            **extra,
            "name": "bench",
            "periods": periods,
            "period_years": 0.25,
            "models": model_specs,
            "options": option_specs,
            "scenarios": scenarios,
            "capacity": capacity,
            "budget": {"total": 6e9},
            "limits": {"facility_power_w": 2.5e8},
            "plan_kind": plan_kind,
            "first_stage_periods": 2,
            "solver": {"threads": 1, "time_limit_s": 120, "mip_rel_gap": 1e-3, "presolve": presolve},
        }
    )


def _shared_components(
    rng: np.random.Generator, option_specs: list[dict], scenarios: list[dict], periods: list[str], *, nre: bool
) -> dict:
    """Components for the plan; bills of materials on the options; per-scenario supply factors."""
    _attach_bills(rng, option_specs, nre=nre)
    for scenario in scenarios:
        scenario["component_supply_multiplier"] = {
            name: float(rng.uniform(0.5, 1.2)) for name in ("hbm", "packaging", "wafers")
        }
    return {"components": _components(periods)}


def _components(periods: list[str]) -> list[dict]:
    """HBM stacks, packages and wafer starts per quarter, growing 2x over the horizon."""
    growth = np.linspace(1.0, 2.0, len(periods))
    base = {"hbm": ("hbm", "stacks", 6_000), "packaging": ("packaging", "packages", 900), "wafers": ("wafers", "wafers", 15)}
    return [
        {
            "name": name,
            "kind": kind,
            "unit": unit,
            "supply": {p: float(amount * g) for p, g in zip(periods, growth, strict=True)},
            "source": "synthetic",
        }
        for name, (kind, unit, amount) in base.items()
    ]


def _attach_bills(rng: np.random.Generator, option_specs: list[dict], *, nre: bool) -> None:
    """Half the options carry HBM and a package; the first three are manufactured on the shared wafers."""
    for k, option in enumerate(option_specs):
        if k % 2 == 0:
            option["bill_of_materials"] = {
                "hbm": "hbm",
                "hbm_stacks_per_chip": int(rng.integers(4, 9)),
                "packaging": "packaging",
            }
    for option in option_specs[:3]:
        option.pop("price")
        option["manufactured"] = {
            "chip_cost": {"node": "tsmc-n7", "die_area_mm2": float(rng.uniform(300, 800)), "packaging": "cowos-s-class"},
            **({"nre": {"design": float(rng.uniform(2e6, 2e7)), "source": "synthetic"}} if nre else {}),
        }
        option["bill_of_materials"] = {**option.get("bill_of_materials", {}), "wafers": "wafers"}


def _capacity(rng: np.random.Generator, options: list[str], models: list[str]) -> list[dict]:
    """200-5000 tokens/s per chip; one option-model pair in five cannot run (0 tokens/s)."""
    return [
        {
            "chip": o,
            "model": m,
            "tokens_per_s_per_chip": float(rng.uniform(200, 5000)) * (rng.random() > 0.2),
            "avg_power_w_per_chip": float(rng.uniform(300, 1000)),
            "source": "synthetic",
        }
        for o in options
        for m in models
    ]


def _scenarios(rng: np.random.Generator, options: list[str], periods: list[str], count: int) -> list[dict]:
    """Each scenario cuts off up to a quarter of the options from a random quarter and reprices three."""
    scenarios = []
    for s in range(count):
        cut = rng.choice(options, size=int(rng.integers(0, max(1, len(options) // 4))), replace=False).tolist()
        scenario = {"name": f"scenario-{s}", "demand_multiplier": float(rng.uniform(0.8, 1.2))}
        if cut:
            scenario["unavailable"] = [{"options": cut, "from_period": periods[int(rng.integers(0, len(periods)))]}]
        scenario["price_multiplier"] = {o: float(rng.uniform(0.9, 1.3)) for o in rng.choice(options, 3).tolist()}
        scenarios.append(scenario)
    return scenarios


def run_one(args: argparse.Namespace, plan_kind: str) -> dict:
    started = time.perf_counter()
    spec = synthetic_plan(
        args.options,
        args.scenarios,
        args.periods,
        args.models,
        plan_kind=plan_kind,
        integer=args.integer,
        seed=args.seed,
        presolve=args.presolve,
        components=args.components,
        nre=args.nre,
    )
    validated = time.perf_counter()
    cpu_started = time.process_time()
    result = plan_fleet(spec)
    cpu_s = time.process_time() - cpu_started
    finished = time.perf_counter()
    stats = result.stats
    return {
        "plan_kind": plan_kind,
        "integer": args.integer,
        "presolve": args.presolve,
        "status": result.status,
        "solver_status": stats["solver_status"],
        "num_variables": stats["num_variables"],
        "num_constraints": stats["num_constraints"],
        "num_nonzeros": stats["num_nonzeros"],
        "num_integer_variables": stats["num_integer_variables"],
        "validate_s": round(validated - started, 3),
        "build_s": round(stats["build_time_s"], 3),
        "solve_s": round(stats["solve_time_s"], 3),
        "total_s": round(finished - started, 3),
        "plan_cpu_s": round(cpu_s, 3),  # CPU time of plan_fleet: what the targets mean on a shared machine
        "objective": result.objective,
        "num_unmet_items": len(result.unmet_demand),
        "components": args.components,
        "num_binding_components": sum(1 for row in result.binding_constraints if row["kind"] == "component"),
        "built": [row["chip"] for row in result.build_decisions if row["built"]],
        "target_s": 60.0 if stats["is_mip"] else 10.0,
        "under_target": finished - validated < (60.0 if stats["is_mip"] else 10.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--options", type=int, default=30)
    parser.add_argument("--scenarios", type=int, default=20)
    parser.add_argument("--periods", type=int, default=12)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--plan-kind", choices=["robust", "two-stage", "both"], default="both")
    parser.add_argument("--integer", action="store_true", help="whole chips (MILP)")
    parser.add_argument("--presolve", choices=["on", "off"], default="on", help="HiGHS presolve")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-components", dest="components", action="store_false", help="no shared components")
    parser.add_argument("--no-nre", dest="nre", action="store_false", help="no build-or-not binaries (an LP)")
    parser.add_argument(
        "--branch-and-bound", action="store_true", help="HiGHS's MIP even for a few binaries (no enumeration)"
    )
    args = parser.parse_args()
    if args.branch_and_bound:
        import tokenfab.fleet.solve as solve

        solve.MAX_ENUMERATED_BINARIES = 0
    kinds = ["robust", "two-stage"] if args.plan_kind == "both" else [args.plan_kind]
    runs = [run_one(args, kind) for kind in kinds]
    print(
        json.dumps(
            {
                "benchmark": "plan_speed",
                "size": {
                    "options": args.options,
                    "scenarios": args.scenarios,
                    "periods": args.periods,
                    "models": args.models,
                },
                "cpu_count": os.cpu_count(),
                "threads": 1,
                "branch_and_bound": args.branch_and_bound,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
