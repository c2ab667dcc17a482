"""Hand-checkable test fixtures: tiny chips and profiles with known efficiencies.

Kept in a module of its own (not conftest) so tests import it unambiguously.
"""

from __future__ import annotations

from tokenfab.cost.chip_cost import ChipCost
from tokenfab.cost.kernel import KernelParams
from tokenfab.cost.profile import CollectiveParams, EfficiencyProfile, ResolvedProfile
from tokenfab.hardware.spec import ChipSpec


def sourced(value: float) -> dict:
    return {"value": value, "source": "test fixture", "basis": "assumption"}


def make_chip(*, peak_bf16=100e12, peak_fp8=200e12, bandwidth=1e12, capacity=80e9, link=100e9, units=100,
              sram=0.0, tdp=500.0, idle=100.0, name="tiny-chip") -> ChipSpec:
    data = {
        "name": name, "display_name": "Tiny test chip", "vendor": "test", "kind": "npu", "arch_family": "test",
        "num_compute_units": sourced(units),
        "peak_flop_per_s": {"bf16": sourced(peak_bf16), "fp16": sourced(peak_bf16), "fp8": sourced(peak_fp8),
                            "int8": sourced(peak_fp8)},
        "vector_flop_per_s": sourced(peak_bf16 / 10),
        "memory": {"kind": "HBM", "capacity_bytes": sourced(capacity), "bandwidth_bytes_per_s": sourced(bandwidth)},
        "scale_up": {"name": "test-link", "bandwidth_bytes_per_s": sourced(link), "topology": "switch", "domain_size": 8},
        "scale_out": {"name": "test-nic", "bandwidth_bytes_per_s": sourced(link / 8), "topology": "switch", "domain_size": 1},
        "power": {"tdp_w": sourced(tdp), "idle_w": sourced(idle)},
    }
    if sram:
        data["onchip_sram_bytes"] = sourced(sram)
    return ChipSpec.model_validate(data)


IDEAL = KernelParams(launch_s=0.0, compute_eff=1.0, memory_eff=1.0, overlap_exp=20.0, half_occupancy_per_unit=0.0)


def make_profile(kernel: KernelParams = IDEAL, coll: CollectiveParams | None = None, units: float = 100) -> EfficiencyProfile:
    coll = coll or CollectiveParams(small_latency_s=0.0, small_bus_eff=1.0, latency_s=0.0, bus_eff=1.0, per_step_latency_s=0.0)
    tables = {k: kernel for k in ("bf16", "fp8", "int8", "w8a16", "w4a16", "fp4")}
    return EfficiencyProfile(
        name="test", provenance_note="test", compute_units=units, peak_bf16_flop_per_s=100e12,
        gemm=dict(tables), attention_prefill={"bf16": kernel, "fp8": kernel}, attention_decode={"bf16": kernel, "fp8": kernel},
        elementwise=kernel, moe={**tables, "w4a8": kernel},
        collectives={n: {2: coll, 8: coll} for n in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")},
    )


def make_cost(chip: ChipSpec | None = None, kernel: KernelParams = IDEAL, coll: CollectiveParams | None = None) -> ChipCost:
    chip = chip or make_chip()
    profile = make_profile(kernel, coll, chip.num_compute_units.value)
    return ChipCost(chip, ResolvedProfile(profile, profile, "fitted", chip.num_compute_units.value, "test profile"))


def check_golden(path, current: dict, update: bool) -> None:
    """Compare `current` with the frozen JSON at `path` (rel 1e-6), or rewrite it with --update-golden."""
    import json

    import pytest

    if update or not path.exists():
        path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        pytest.skip("golden file written; review the diff")
    frozen = json.loads(path.read_text())
    assert set(frozen) == set(current)
    for key, values in frozen.items():
        for field, value in values.items():
            assert current[key][field] == pytest.approx(value, rel=1e-6), f"{key}.{field} changed"


def run_cli(args, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `tokenfab ARGS`, run in-process as the entry point runs it."""
    import pytest

    from tokenfab.cli.main import run

    with pytest.raises(SystemExit) as exc:
        run(args)
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code or 0, captured.out, captured.err
