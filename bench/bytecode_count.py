"""Python bytecodes executed per simulated request and per `predict` call: a deterministic proxy of interpreter work.

    python bench/bytecode_count.py [--requests 20000] [--predicts 300]
    python bench/ab_speed.py --old /tmp/old/src --rounds 1 -- bench/bytecode_count.py   # both versions, one run

On a machine shared by many processes, wall and even CPU times of one run swing by 10-30% (bench/ab_speed.py
alternates rounds to share the load fairly, and still needs many of them); the number of bytecodes the
interpreter executes does not change from run to run. It is a proxy, not a time: a C-level call (numpy, dict,
struct) counts as one bytecode whatever it costs, and a Python call's frame set-up is not counted, so report
timed ratios (bench/ab_speed.py) beside it. Counted by `sys.settrace` with opcode events (about 30x slower than
untraced) over the second of two identical runs, so the step model's memos are warm as in a long simulation:
the simulate_speed.py scenario (Llama-3.1-8B on one A100, 11 req/s, 1024/128 tokens) and predict_speed.py's
varied shapes (Llama-3.1-70B TP8 on H100, batch 1-256, input 128-8192, output 1-512, seeded).
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from tokenfab import api

SCENARIO = dict(model="llama-3.1-8b", hardware="a100-sxm", rate=11.0, input_len=1024, output_len=128, seed=0,
                max_num_seqs=128)


class _Counter:
    """A trace function counting opcode events (line events off)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, frame, event, arg):
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._local

    def _local(self, frame, event, arg):
        if event == "opcode":
            self.count += 1
        return self._local


def counted(fn) -> int:
    """Bytecodes executed by `fn()`."""
    counter = _Counter()
    sys.settrace(counter)
    try:
        fn()
    finally:
        sys.settrace(None)
    return counter.count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--predicts", type=int, default=300)
    args = ap.parse_args()
    sim = dict(SCENARIO, num_requests=args.requests)
    api.simulate(**sim)  # warm the deployment and its memos
    per_request = counted(lambda: api.simulate(**sim)) / args.requests
    rng = random.Random(0)
    shapes = [(rng.randint(1, 256), rng.randint(128, 8192), rng.randint(1, 512)) for _ in range(args.predicts)]

    def predicts() -> None:
        for b, i, o in shapes:
            api.predict(model="llama-3.1-70b", hardware="h100-sxm", tp=8, batch=b, input_len=i, output_len=o)

    api.predict(model="llama-3.1-70b", hardware="h100-sxm", tp=8, batch=8, input_len=2048, output_len=256)
    per_predict = counted(predicts) / args.predicts
    print(json.dumps({"simulate_bytecodes_per_request": round(per_request, 1),
                      "predict_varied_bytecodes_per_call": round(per_predict, 1)}))


if __name__ == "__main__":
    main()
