"""The accuracy HTML report: breakdown statistics, band coverage or its placeholder, one self-contained file."""

import numpy as np
import pandas as pd
import pytest

from tokenfab.report.accuracy_report import NO_BANDS, GroupRows, band_coverage, breakdown, render_accuracy_html, write_accuracy_report

pytestmark = pytest.mark.unit


def _rows(with_bands: bool) -> pd.DataFrame:
    measured = np.array([1.0, 2.0, 4.0, 8.0])
    predicted = np.array([1.1, 1.8, 4.0, 12.0])  # errors +10%, -10%, 0%, +50%
    rows = pd.DataFrame({"group": "GEMM", "device": ["a", "a", "b", "b"], "vendor": ["V", "V", "W", "W"],
                         "op_family": "GEMM", "measured": measured, "predicted": predicted})
    rows["error_frac"] = rows["predicted"] / rows["measured"] - 1
    if with_bands:  # +/-20% band: covers the first three, not the +50% miss
        rows["predicted_lo"], rows["predicted_hi"] = predicted / 1.2, predicted * 1.2
    return rows


def test_breakdown_by_chip_and_vendor():
    stats = breakdown([GroupRows("ops", _rows(False))], ["group", "device"])
    by = {s["device"]: s for s in stats}
    assert by["a"]["mape"] == pytest.approx(0.1) and by["b"]["mape"] == pytest.approx(0.25)
    assert by["a"]["coverage"] is None
    assert {s["vendor"] for s in breakdown([GroupRows("ops", _rows(False))], ["vendor"])} == {"V", "W"}
    assert breakdown([GroupRows("ops", _rows(False))], ["engine"]) == []  # no such column: no rows


def test_band_coverage_counts_measured_inside_band():
    cov = band_coverage(_rows(True))
    assert cov["coverage"] == pytest.approx(0.75)
    assert cov["median_width"] == pytest.approx(1.2 - 1 / 1.2)


def test_report_is_self_contained_and_says_when_there_are_no_bands(tmp_path):
    html_text = render_accuracy_html([GroupRows("ops", _rows(False), "test rows")], {"commit": "abc123"})
    assert NO_BANDS in html_text and "abc123" in html_text and "data:image/png;base64," in html_text
    assert "<script" not in html_text and "http" not in html_text.split("</style>")[0]
    with_bands = render_accuracy_html([GroupRows("ops", _rows(True))], {"commit": "abc123"})
    assert "75.0%" in with_bands
    path = write_accuracy_report([GroupRows("ops", _rows(True))], {"commit": "x"}, tmp_path / "a.html")
    assert path.read_text().startswith("<!doctype html>") and not (tmp_path / "a.html.tmp").exists()


def test_markdown_summary_states_commit_and_per_chip_rows():
    from tokenfab.report.accuracy_report import render_accuracy_markdown

    md = render_accuracy_markdown([GroupRows("ops", _rows(False))], {"commit": "abc123"})
    assert "`abc123`" in md and "| GEMM | a | 2 | 10.0% |" in md
