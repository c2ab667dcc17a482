import pytest

from tokenfab.errors import UnknownNameError, nearest_names
from tokenfab.units import GB, GiB, bytes_per_element, gbit_to_bytes_per_s, tbs_to_bytes_per_s

pytestmark = pytest.mark.unit


def test_bytes_per_element_of_every_format():
    assert [bytes_per_element(d) for d in ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")] == [4, 2, 2, 1, 1, 0.5, 0.5]


def test_unknown_dtype_names_nearest():
    with pytest.raises(UnknownNameError, match="did you mean bf16"):
        bytes_per_element("bf61")


def test_gb_and_gib_are_distinct():
    assert GB == 1e9 and GiB == 2**30


def test_conversions():
    assert tbs_to_bytes_per_s(3.35) == pytest.approx(3.35e12)
    assert gbit_to_bytes_per_s(400) == pytest.approx(50e9)


def test_nearest_names_substring_and_fuzzy():
    assert nearest_names("h100", ["h100-sxm", "h100-pcie", "a100-sxm"])[:2] == ["h100-sxm", "h100-pcie"]
    assert nearest_names("zzz", ["h100-sxm"]) == []
