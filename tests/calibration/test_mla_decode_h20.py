"""The rule for MLA decode on chips without MLA rows, scored on the one chip that has them (H20)."""

import numpy as np
import pytest

from tokenfab.calibrate.measurements import load_vendor_ops
from tokenfab.cost.attention import decode_attention_work, mla_curve_from_chip
from tokenfab.cost.chip_cost import chip_cost
from tokenfab.errors import DataFileError
from tokenfab.hardware.catalog import load_chip

pytestmark = pytest.mark.calibration


@pytest.fixture(scope="module")
def mla_rows():
    try:
        ops = load_vendor_ops()
    except (DataFileError, FileNotFoundError) as exc:
        pytest.skip(f"shared/calibration/vendors not available ({exc})")
    rows = ops[(ops["variant"] == "mla") & (ops["device"] == "h20")]
    if rows.empty:
        pytest.skip("no H20 MLA decode rows in shared/calibration/vendors")
    return rows


def _errors(cc, params, rows) -> np.ndarray:
    out = []
    for r in rows.itertuples():
        w = decode_attention_work(cc, int(r.batch), float(r.kv_len), int(r.num_heads), 1, int(r.head_dim),
                                  int(r.v_head_dim), r.kv_dtype, None, int(r.head_dim), "bf16")
        t = cc.run_kernel("mla", w.flops, w.dram_bytes, w.peak, params, w.work_units, "x", False,
                          w.onchip_bytes, w.shape).time_s
        out.append(t / r.time_s - 1.0)
    return np.array(out)


def test_rule_predicts_h20_flashinfer_mla_rows_it_never_saw(mla_rows):
    """H20's own GQA-decode and prefill fits, combined by the rule, against its 41 FlashInfer MLA decode rows
    (which fed only H20's own 'mla' fit, not the rule): measured 18.6% MAPE; the prefill curve alone, the
    previous fallback, 180%."""
    cc = chip_cost(load_chip("h20"))
    rule, _ = mla_curve_from_chip(cc, "bf16")
    prefill, _ = cc.resolved.attention("prefill", "bf16")
    rule_mape = float(np.mean(np.abs(_errors(cc, rule, mla_rows))))
    prefill_mape = float(np.mean(np.abs(_errors(cc, prefill, mla_rows))))
    assert rule_mape <= 0.25
    assert rule_mape < prefill_mape / 4
