"""The API boundary remembers argument lists that checked to themselves; remembering must change no answer."""

from __future__ import annotations

import pytest

from tokenfab.api.boundary import MEMO_SIZE, _memo_key, validated
from tokenfab.errors import InvalidInputError

pytestmark = pytest.mark.unit


def _counting(monkeypatch):
    """A validated function, the arguments it ran with, and the argument lists its check validated."""
    calls, checked = [], []

    @validated
    def f(model: str, tp: int = 1, rate: float | None = None, flag: bool = False) -> tuple:
        calls.append((model, tp, rate, flag))
        return model, tp, rate, flag

    model = f.arguments_model
    real = model.model_validate
    monkeypatch.setattr(model, "model_validate", lambda given: checked.append(dict(given)) or real(given))
    return f, calls, checked


def test_equal_values_of_another_type_are_other_keys():
    assert _memo_key((1,), {}) != _memo_key((True,), {}) != _memo_key((1.0,), {})
    assert _memo_key(("a",), {"tp": 2}) == _memo_key(("a",), {"tp": 2})
    assert _memo_key(([1],), {}) is None  # containers are not remembered
    assert _memo_key((), {"rate": 0.0}) is None and _memo_key((), {"rate": -0.0}) is None  # 0.0 == -0.0


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
