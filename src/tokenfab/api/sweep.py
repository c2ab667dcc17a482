"""`sweep` in the API: chip designs around a base chip, scored by serving and silicon cost."""

from __future__ import annotations

from collections.abc import Callable

from tokenfab.api.boundary import validated
from tokenfab.api.deployment import _positive
from tokenfab.fleet.capacity import SLOSpec
from tokenfab.sweep.run import SweepResult, run_sweep
from tokenfab.units import ms_to_s


@validated
def sweep(
    base: str = "npu-template", vary: list[str] | tuple[str, ...] = (), model: str | list[str] = "llama-3.1-8b",
    slo_ttft_ms: float = 2000.0, slo_tpot_ms: float = 50.0, input_len: int = 1024, output_len: int = 256,
    sample: str = "grid", points: int | None = None, seed: int = 0,
    progress: Callable[[int, int], None] | None = None, workers: int = 1, ray: str | None = None,
) -> SweepResult:
    """Vary chip-spec fields (`vary`: 'FIELD=LO:HI:N' dotted paths, or 'process_node=KEY,...') of `base`
    and score every design for each model at the SLO, in this process, in `workers` local processes or on
    the Ray cluster `ray` (an address, or 'local'; needs tokenfab[ray]); `to_dict()` equals `tokenfab sweep --json`."""
    _positive(input_len=input_len, output_len=output_len, points=points, workers=workers)
    from tokenfab.errors import InvalidInputError

    if slo_ttft_ms <= 0 or slo_tpot_ms <= 0:
        raise InvalidInputError(f"SLO targets must be > 0 ms (got TTFT {slo_ttft_ms}, TPOT {slo_tpot_ms})")
    models = [model] if isinstance(model, str) else list(model)
    models = [m.strip() for name in models for m in name.split(",") if m.strip()]
    slo = SLOSpec(ttft_s=ms_to_s(slo_ttft_ms), tpot_s=ms_to_s(slo_tpot_ms), input_tokens=input_len,
                  output_tokens=output_len)
    return run_sweep(base, list(vary), models, slo, sample=sample, num_points=points, seed=seed,  # type: ignore[arg-type]
                     progress=progress, workers=workers, ray_address=ray)
