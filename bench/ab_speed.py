"""Speed of two versions of tokenfab measured in one alternating run: the ratio the speed targets are stated in.

    git archive 38cb2f5 src | tar -x -C /tmp/old          # any earlier version's source tree
    python bench/ab_speed.py --old /tmp/old/src --rounds 5 -- bench/simulate_speed.py --sizes 100000
    python bench/ab_speed.py --old /tmp/old/src --rounds 3 -- bench/predict_speed.py

The bench script (taken from this tree, so both versions run the same measurement) runs `--rounds` times
under each version's `src` on PYTHONPATH, old and new alternating, so that load from other processes on a
shared machine falls on both alike. Every number in the JSON the script prints (its last JSON object or
lines of JSON objects, nested keys joined by '.') is collected; the report gives each one's median per
version and the ratio new / old of the medians. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

NEW_SRC = Path(__file__).resolve().parents[1] / "src"


def _numbers(obj, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON value, keyed by its dotted path."""
    if isinstance(obj, bool):
        return {}
    if isinstance(obj, (int, float)):
        return {prefix: float(obj)}
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def parse_output(stdout: str) -> dict[str, float]:
    """Numbers of the script's output: one JSON object (possibly indented) or one object per line."""
    text = stdout.strip()
    try:
        return _numbers(json.loads(text))
    except json.JSONDecodeError:
        pass
    found: dict[str, float] = {}
    for i, line in enumerate(text.splitlines()):
        if line.startswith("{"):
            rec = json.loads(line)
            tag = next((f"{k}={v}" for k, v in rec.items() if isinstance(v, (int, str)) and not isinstance(v, bool)), str(i))
            found.update(_numbers(rec, tag))
    if not found:
        raise SystemExit(f"no JSON in the bench output:\n{stdout[-2000:]}")
    return found


def run_once(src: Path, script: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, *script], capture_output=True, text=True, env=env, check=False)
    if out.returncode:
        raise SystemExit(f"{script} under {src} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return parse_output(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, required=True, help="the earlier version's src folder")
    ap.add_argument("--new", type=Path, default=NEW_SRC, help="this version's src folder (default: this tree)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("script", nargs=argparse.REMAINDER, help="-- bench script and its arguments")
    args = ap.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        raise SystemExit("give the bench script after --")
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for i in range(args.rounds):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")  # alternate who goes first
        for which in order:
            runs[which].append(run_once(args.old if which == "old" else args.new, script))
            print(json.dumps({"round": i, which: runs[which][-1]}), file=sys.stderr, flush=True)
    keys = [k for k in runs["new"][0] if all(k in r for r in runs["old"] + runs["new"])]
    report = {"script": script, "rounds": args.rounds, "old": str(args.old), "new": str(args.new), "median": {}}
    for k in keys:
        old = statistics.median(r[k] for r in runs["old"])
        new = statistics.median(r[k] for r in runs["new"])
        report["median"][k] = {"old": old, "new": new, "new_over_old": new / old if old else None}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
