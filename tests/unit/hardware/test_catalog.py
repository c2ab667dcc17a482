import pytest
import yaml
from pydantic import BaseModel

from tokenfab.errors import DataFileError, InvalidInputError, UnknownNameError
from tokenfab.hardware.catalog import CHIP_DIR, chip_names, load_chip, load_system, system_names
from tokenfab.hardware.spec import Sourced

pytestmark = pytest.mark.unit

# The stable catalog names of ../shared/DESIGN.md plus the list.
REQUIRED = ["a100-sxm", "h100-sxm", "h100-pcie", "h800-sxm", "h20", "h200-sxm", "l20", "l40s", "l4", "b200", "gb200",
            "mi300x", "mi325x", "ascend-910b", "ascend-910c", "gaudi3", "tpu-v5e", "tpu-v6e", "hanguang-800",
            "cpu-host", "npu-template", "mlu370-x8",
            # wave 2 (issue 12.5); mlu590 is absent on purpose: no sourced peak rate exists (CATALOG_NOTES)
            "kunlun-p800", "mi355x", "mi308x", "h20-3e", "hygon-k100-ai",
            # wave 8: the PCIe cards of the trtllm.csv / mlperf.csv rows (issues 9 and 10, every row expressible)
            "a100-pcie", "rtx-pro-6000-server"]


def _sourced_values(obj, path=""):
    if isinstance(obj, Sourced):
        yield path, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _sourced_values(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _sourced_values(v, f"{path}.{k}")


def test_required_chips_exist():
    assert set(REQUIRED) <= set(chip_names())


@pytest.mark.parametrize("name", chip_names())
def test_every_number_has_a_source(name):
    chip = load_chip(name)
    values = list(_sourced_values(chip))
    assert len(values) >= 5
    for path, value in values:
        assert value.source.strip() and value.source != "...", f"{name}{path} has no source"
        if value.basis == "assumption":
            assert value.note, f"{name}{path} is an assumption without a reason"


@pytest.mark.parametrize("name", chip_names())
def test_chip_sanity(name):
    chip = load_chip(name)
    assert chip.memory_bandwidth_bytes_per_s > 1e10
    assert chip.power.idle_w.value < chip.power.tdp_w.value
    assert all(v.value > 1e11 for v in chip.peak_flop_per_s.values())


@pytest.mark.parametrize("name", ["kunlun-p800", "mi355x", "mi308x", "h20-3e", "hygon-k100-ai", "ascend-910b", "a100-pcie",
                                  "rtx-pro-6000-server"])
def test_wave2_numbers_name_their_basis_and_assumptions_say_why(name):
    """Numbers that are not a vendor figure or a measurement must explain themselves in the note."""
    for path, value in _sourced_values(load_chip(name)):
        if value.basis in ("assumption", "derived", "press"):
            assert len(value.note) > 20, f"{name}{path} ({value.basis}) needs a note saying why/how"


def test_inheritance_targets_are_measured_chips():
    from tokenfab.cost.profile import load_profile

    for name in chip_names():
        ref = load_chip(name).efficiency_reference
        assert ref is None or load_profile(ref) is not None, f"{name} inherits from {ref}, which has no fitted profile"


@pytest.mark.parametrize("name", system_names())
def test_systems_load(name):
    system = load_system(name)
    assert system.num_devices >= 8


def test_unknown_chip_suggests_nearest():
    with pytest.raises(UnknownNameError) as exc:
        load_chip("h200")
    assert "h200-sxm" in str(exc.value)


def test_system_from_chip_fills_nodes():
    s = load_system("h100-sxm", 16)
    assert (s.chips_per_node, s.num_nodes) == (8, 2)
    with pytest.raises(InvalidInputError, match="whole nodes"):
        load_system("h100-sxm", 12)
    with pytest.raises(InvalidInputError, match="has 72"):
        load_system("gb200-nvl72", 144)


def test_user_yaml_path_works(tmp_path):
    data = yaml.safe_load((CHIP_DIR / "h100-sxm.yaml").read_text())
    data["name"] = "my-chip"
    data["memory"]["bandwidth_bytes_per_s"]["value"] = 6e12
    path = tmp_path / "my-chip.yaml"
    path.write_text(yaml.safe_dump(data))
    chip = load_chip(str(path))
    assert chip.name == "my-chip" and chip.memory_bandwidth_bytes_per_s == 6e12


@pytest.mark.parametrize("text, match", [
    ("name: [unclosed", "malformed YAML"),
    ("- just\n- a list\n", "mapping"),
    ("name: x\n", "invalid chip spec"),
])
def test_bad_yaml_is_one_clear_error(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataFileError, match=match) as exc:
        load_chip(str(path))
    assert "\n" not in str(exc.value)
