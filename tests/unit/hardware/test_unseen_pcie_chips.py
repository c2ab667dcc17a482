"""The A100 80GB PCIe and RTX PRO 6000 Blackwell Server Edition entries: their datasheet figures load as SI values,
memory as the device reports it, PCIe-only links, and efficiencies inherited from a measured chip of their
generation rather than fitted on anything of their own."""

import pytest

from tokenfab.cost.profile import load_profile, resolve_profile
from tokenfab.errors import InvalidInputError
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.unit

MIB = 2**20


def test_a100_pcie_datasheet_values():
    """A100 80GB PCIe: SXM4 compute (312 TFLOPS dense BF16, no FP8), HBM2e at 1,935 GB/s, 300 W, PCIe Gen4 64 GB/s
    bidirectional = 32 GB/s each way; nvidia-smi reports 81,920 MiB as the SXM4 80GB does."""
    chip = load_chip("a100-pcie")
    sxm = load_chip("a100-sxm")
    assert chip.arch_family == sxm.arch_family == "nvidia-ampere"
    assert {d: chip.peak(d) for d in chip.peak_flop_per_s} == {d: sxm.peak(d) for d in sxm.peak_flop_per_s}
    assert chip.peak("bf16") == 312e12 and not chip.supports("fp8")
    assert chip.memory_bandwidth_bytes_per_s == 1.935e12 < sxm.memory_bandwidth_bytes_per_s
    assert chip.device_memory_bytes == 81920 * MIB
    assert chip.power.tdp_w.value == 300 and chip.power.idle_w.basis == "measured"
    assert chip.scale_up.topology == "pcie" and chip.scale_up.bandwidth_bytes_per_s.value == 32e9
    assert chip.scale_out is None
    assert chip.sram_partitions == 2


def test_rtx_pro_6000_server_values():
    """RTX PRO 6000 Server Edition: 188 SMs, dense rates at its 120 TFLOPS FP32 clock (BF16 480, FP8 960, FP4 1,920
    TFLOPS: the Workstation's 1,024 BF16 FLOP per SM per clock at 2,493 MHz), 1,597 GB/s GDDR7, 97,887 MiB reported,
    600 W, PCIe Gen5 at 64 GB/s each way."""
    chip = load_chip("rtx-pro-6000-server")
    assert chip.arch_family == "nvidia-blackwell" and chip.memory.kind == "GDDR7"
    assert chip.num_compute_units.value == 188
    clock_hz = chip.vector_flop_per_s.value / (188 * 128 * 2)
    assert chip.peak("bf16") == pytest.approx(188 * 1024 * clock_hz, rel=1e-3)
    assert chip.peak("fp8") == 2 * chip.peak("bf16") and chip.peak("fp4") == 4 * chip.peak("bf16")
    assert chip.peak("tf32") == chip.peak("bf16") / 2
    assert chip.memory_bandwidth_bytes_per_s == 1.597e12
    assert chip.device_memory_bytes == 97887 * MIB > chip.memory_capacity_bytes
    assert chip.power.tdp_w.value == 600
    assert chip.scale_up.topology == "pcie" and chip.scale_up.bandwidth_bytes_per_s.value == 64e9
    assert all(p.basis == "derived" and "120" in p.note for d, p in chip.peak_flop_per_s.items())


def test_fp4_is_refused_on_the_a100_and_accepted_on_the_blackwell_card():
    with pytest.raises(InvalidInputError, match="a100-pcie has no fp4 rate"):
        load_chip("a100-pcie").check_compute_dtype("fp4")
    load_chip("rtx-pro-6000-server").check_compute_dtype("fp4")


@pytest.mark.parametrize("name, reference", [("a100-pcie", "a100-sxm"), ("rtx-pro-6000-server", "b200")])
def test_unseen_chips_inherit_their_generations_profile(name, reference):
    """No profile of their own (nothing of these cards is fitted): every kernel class comes from the reference, and
    the reference's FP4 GEMM class reaches the Blackwell card."""
    assert load_profile(name) is None
    resolved = resolve_profile(load_chip(name))
    assert resolved.provenance == "inherited" and reference in resolved.note
    assert resolved.profile.name == reference and resolved.reference is None
    assert ("fp4" in resolved.profile.gemm) == (reference == "b200")


def test_a100_pcie_sustains_its_tdp_clock_not_its_boost():
    """The 300 W card holds its 1,065 MHz base (TDP) clock under tensor-core load, the SXM module its boost: the
    matrix and vector rates the cost model uses are 1065/1410 of the datasheet's, the SXM module's are unchanged."""
    from tokenfab.cost.chip_cost import sustained_peaks

    chip, sxm = load_chip("a100-pcie"), load_chip("a100-sxm")
    assert chip.clock == sxm.clock == 1.41e9
    assert chip.sustained_clock_hz.value == 1.065e9 and chip.sustained_clock_hz.source
    assert chip.compute_clock_frac == pytest.approx(1065 / 1410)
    assert sustained_peaks(chip)["bf16"] == pytest.approx(312e12 * 1065 / 1410)
    assert sxm.compute_clock_frac == 1.0 and sustained_peaks(sxm)["bf16"] == 312e12
