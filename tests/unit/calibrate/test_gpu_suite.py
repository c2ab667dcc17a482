import pytest

pytestmark = pytest.mark.gpu


def test_suite_runs_on_a_cuda_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from tokenfab.calibrate.suite import SuiteConfig, run_suite

    rows = run_suite(SuiteConfig(device="cuda", tiny=True, budget_s=30, repeats=5), "gpu")
    assert {"gemm", "elementwise", "attention_decode", "h2d"} <= {r["op"] for r in rows}
