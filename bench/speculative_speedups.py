"""Predicted speculative-decoding speedups against published figures (run by hand).

    python bench/speculative_speedups.py

Published figures compared:
  DeepSeek-V3 technical report (arXiv:2412.19437, sec. 5.4.3): MTP with one extra token, acceptance
      of the 2nd token 85-90%, "1.8 times TPS".
  SGLang DeepSeek-V3 docs (docs.sglang.ai, DeepSeek usage, "Multi-token Prediction"): MTP decoding
      1.8x faster at batch size 1 and 1.5x at batch size 32 on H200 TP8 (SGLang's EAGLE-style chain,
      its draft settings are tuned per batch size and not all stated: k is a free choice here).
Speedup = TPOT without speculation / TPOT with it, static batch, 1024 prompt / 512 output tokens.
"""

from __future__ import annotations

from tokenfab import api

BASE = dict(model="deepseek-v3", hardware="h200-sxm", tp=8, dtype="fp8", input_len=1024, output_len=512)


def speedup(batch: int, k: int, acceptance: float | None) -> float:
    plain = api.predict(**BASE, batch=batch).tpot_s
    spec = api.predict(**BASE, batch=batch, spec_method="mtp", spec_tokens=k, spec_acceptance=acceptance).tpot_s
    return plain / spec


def main() -> None:
    print(f"{'case':58s} {'predicted':>9s} {'published':>9s}")
    for a in (0.85, 0.90):
        print(f"{'DeepSeek-V3 report, MTP k=1, A=%.2f, batch 1' % a:58s} {speedup(1, 1, a):8.2f}x {'1.8x':>9s}")
    for batch, published in ((1, "1.8x"), (32, "1.5x")):
        for k in (1, 2, 3):
            label = f"SGLang H200 TP8, batch {batch}, MTP k={k}, A=0.85 (default)"
            print(f"{label:58s} {speedup(batch, k, None):8.2f}x {published:>9s}")
    print("\nbatching (k=2, A=0.85): " + ", ".join(f"batch {b}: {speedup(b, 2, None):.2f}x" for b in (1, 8, 32, 128, 256)))


if __name__ == "__main__":
    main()
