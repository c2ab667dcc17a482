"""Prediction-regression gate: pinned predictions must not change unless the golden file changes too.

Update deliberately with `python -m pytest tests/regression --update-regression` and commit the
diff of tests/regression/predictions.json together with the change that caused it.
"""

import dataclasses
import json

import pytest
from pinned import GOLDEN, compare, current_predictions, write_golden

import tokenfab.cost.profile as profile_mod
from tokenfab.api.deployment import deployment
from tokenfab.cost.chip_cost import chip_cost

pytestmark = pytest.mark.regression


def _clear_caches() -> None:
    chip_cost.cache_clear()
    deployment.cache_clear()


def test_pinned_predictions_unchanged(update_regression):
    now = current_predictions()
    if update_regression:
        write_golden(now)
        pytest.skip(f"{GOLDEN.name} rewritten; commit its diff with the change that caused it")
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run pytest tests/regression --update-regression"
    diffs = compare(json.loads(GOLDEN.read_text()), now)
    assert not diffs, "predictions changed (update with --update-regression if intended):\n" + "\n".join(diffs)


def test_gate_fails_on_a_profile_change(monkeypatch):
    """A 1% change of one fitted curve (H100 bf16 GEMMs: compute and memory efficiency) must trip the gate."""
    frozen = json.loads(GOLDEN.read_text())
    real = profile_mod.load_profile
    h100 = real("h100-sxm")
    bf16 = h100.gemm["bf16"]
    changed = dataclasses.replace(h100, gemm={**h100.gemm, "bf16": dataclasses.replace(bf16, compute_eff=bf16.compute_eff * 0.99, memory_eff=bf16.memory_eff * 0.99)})
    monkeypatch.setattr(profile_mod, "load_profile", lambda name: changed if name == "h100-sxm" else real(name))
    _clear_caches()
    try:
        diffs = compare(frozen, current_predictions())
    finally:
        monkeypatch.undo()
        _clear_caches()
    changed_cases = {d.split(": ")[0].rsplit(".", 1)[0] for d in diffs}
    assert "op/gemm/h100-sxm/bf16-m16" in changed_cases, diffs
    assert "predict/llama-3.1-8b/h100-sxm" in changed_cases
    assert "op/gemm/h20/bf16-m512" in changed_cases  # H20 inherits H100's bf16 GEMM curve
    assert not any(c.startswith("op/gemm/mi300x") for c in changed_cases)  # generic curves untouched


def test_compare_reports_added_removed_and_changed():
    frozen = {"a": {"x": 1.0, "s": "fitted"}, "b": {"x": 2.0}}
    now = {"a": {"x": 1.0 + 1e-6, "s": "generic"}, "c": {"x": 3.0}}
    diffs = compare(frozen, now)
    assert any(d.startswith("a.x:") for d in diffs) and any(d.startswith("a.s:") for d in diffs)
    assert "b: case removed" in diffs and any(d.startswith("c: new case") for d in diffs)
    assert compare(frozen, json.loads(json.dumps(frozen))) == []
