"""The API boundary remembers argument lists that checked to themselves; remembering must change no answer."""

from __future__ import annotations

import math
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tokenfab.api import boundary
from tokenfab.api.boundary import MEMO_SIZE, _memo_key, _rememberable, validated
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def _counting(monkeypatch):
    """A validated function, the arguments it ran with, and the argument lists it checked."""
    calls, checked = [], []

    @validated
    def f(model: str, tp: int = 1, rate: float | None = None, flag: bool = False) -> tuple:
        calls.append((model, tp, rate, flag))
        return model, tp, rate, flag

    real = boundary._passes_plain  # the first step of every check that the memory does not answer
    monkeypatch.setattr(boundary, "_passes_plain", lambda given, rules: checked.append(dict(given)) or real(given, rules))
    return f, calls, checked


def test_equal_values_of_another_type_are_other_keys():
    assert _memo_key((1,), {}) != _memo_key((True,), {}) != _memo_key((1.0,), {})
    assert _memo_key(("a",), {"tp": 2}) == _memo_key(("a",), {"tp": 2})
    assert not _rememberable(_memo_key(([1],), {}))  # containers are not remembered
    assert not _rememberable(_memo_key((), {"rate": 0.0})) and not _rememberable(_memo_key((-0.0,), {}))  # 0.0 == -0.0
    assert _rememberable(_memo_key(("m", 2), {"rate": 1.5, "seed": 0}))


def test_remembered_calls_give_what_checked_calls_give(monkeypatch):
    f, calls, checked = _counting(monkeypatch)
    first = f("m", tp=2, rate=3.5)
    again = f("m", tp=2, rate=3.5)  # remembered: not checked again, passed on as given
    assert first == again == ("m", 2, 3.5, False)
    assert f(model="m", tp=2) == ("m", 2, None, False)  # another call form: checked
    assert len(calls) == 3 and len(checked) == 2


def test_converted_arguments_are_passed_as_checked_and_not_remembered(monkeypatch):
    f, _, checked = _counting(monkeypatch)
    # pydantic's lax mode turns the float 2.0 into the int 2: the function must see the int, every time
    for _ in range(2):
        out = f("m", tp=2.0)
        assert out == ("m", 2, None, False) and type(out[1]) is int
    assert len(checked) == 2


def test_bad_arguments_fail_every_time(monkeypatch):
    f, calls, _ = _counting(monkeypatch)
    for _ in range(3):
        with pytest.raises(InvalidInputError, match="tp must be >= 1"):
            f("m", tp=0)
        with pytest.raises(InvalidInputError, match="finite"):
            f("m", rate=float("nan"))
    assert calls == []
    f("m", tp=1)
    with pytest.raises(InvalidInputError, match="valid string"):
        f(["m"], tp=1)  # an unhashable argument: checked (and refused), not looked up
    with pytest.raises(InvalidInputError):
        f("m", tp=1, rate=-1.0)  # an accepted tp does not vouch for another argument list
    with pytest.raises(InvalidInputError):
        f("m", tp=-1, rate=1.0)


def test_the_memory_is_bounded(monkeypatch):
    f, _, checked = _counting(monkeypatch)
    f("m", tp=1)
    f("m", tp=1)
    assert len(checked) == 1
    for i in range(MEMO_SIZE):
        f("m", tp=2 + i)  # fills the memory, which is then cleared once
    del checked[:]
    f("m", tp=1)  # forgotten: checked again, same answer
    assert len(checked) == 1


_VALUES = st.one_of(st.integers(-5, 1 << 21), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
                    st.text(max_size=3), st.sampled_from([0.0, -0.0, 1.0, 1, True, 2.5, float("inf")]))


@pytest.mark.property
@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(["model", "tp", "rate", "flag", "memory_utilization_frac"]), value=_VALUES,
       other=st.sampled_from(["model", "tp", "rate", "flag", "memory_utilization_frac"]), value2=_VALUES)
def test_the_plain_check_agrees_with_pydantic(name, value, other, value2):
    """Without pydantic, an argument list passes exactly when pydantic passes it unchanged (same values, same
    types): one or two arguments of a valid list replaced by anything plain."""

    def f(model: str, tp: int = 1, rate: float | None = None, flag: bool = False,
          memory_utilization_frac: float = 0.9) -> None: ...

    given = {"model": "m", "tp": 2, "rate": 1.5, "flag": False, "memory_utilization_frac": 0.5} | {name: value}
    given[other] = value2 if other != name else given[other]
    rules = {n: boundary._plain_rule(a, boundary.BOUNDS.get(n)) for n, a in typing.get_type_hints(f).items() if n != "return"}
    try:
        checked = validated(f).arguments_model.model_validate(given)
        unchanged = all(type(getattr(checked, n)) is type(v) and getattr(checked, n) == v for n, v in given.items())
    except ValidationError:
        unchanged = False
    assert boundary._passes_plain(given, rules) == unchanged
