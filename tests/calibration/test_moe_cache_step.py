"""Where warm fused-MoE layers stop running from L2, against ops_moe.csv (the reason for
`ChipSpec.num_onchip_sram_partitions`): with one copy of the working set per cache partition counted, the
step sits at the whole L2 on A100 (two partitions) as on L40S (one), so a pooled cache term transfers."""

import sys
from pathlib import Path

import pandas as pd
import pytest

from tokenfab.calibrate.measurements import shared_calibration_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

pytestmark = pytest.mark.calibration


@pytest.fixture(scope="module")
def steps() -> pd.DataFrame:
    from accuracy_moe import cache_steps, moe_rows

    try:
        frame = moe_rows(shared_calibration_dir())
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"shared/calibration/ops_moe.csv not available ({exc})")
    keep = ((frame["device"] == "a100-sxm") | ((frame["device"] == "l40s") & (frame["variant"].fillna("") == "")
                                                & (frame["dtype"] == "bf16")))
    return cache_steps(frame[keep])


@pytest.mark.parametrize("device", ["a100-sxm", "l40s"])
def test_layers_run_from_cache_up_to_the_partition_counted_l2_and_from_dram_beyond(steps, device):
    own = steps[(steps["device"] == device) & (steps["kind"] == "bf16")].set_index("resident_over_l2")
    # Measured medians (effective bandwidth over DRAM bandwidth): A100 88x at 0.75-1.0 of L2 (those layers are
    # fixed-cost bound, so the figure is large and noisy), 0.33x at 1.0-1.25; L40S 4.4x and 0.75x.
    assert own.loc["(0.75, 1.0]", "effective_bw_over_dram"] > 1.5
    assert own.loc["(1.0, 1.25]", "effective_bw_over_dram"] < 1.0
    assert own.loc["(8.0, inf]", "effective_bw_over_dram"] < 1.0
