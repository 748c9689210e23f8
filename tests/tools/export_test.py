"""tools/export.py end to end: a fresh-clone style run from outside the repo."""
import os
import subprocess
import sys

import pytest

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "export.py")


def _run(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, TOOL, *args], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=1200)


def test_bad_flags_fail_clearly(tmp_path):
    proc = _run(tmp_path, "--random_init", f"--export_base={tmp_path}", "--batch_sizes=1,x")
    assert proc.returncode != 0
    assert "--batch_sizes must be integers" in proc.stderr
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_random_init_export_prints_version_dir(tmp_path):
    base = tmp_path / "base"
    (base / "1").mkdir(parents=True)
    (base / "1" / "keep.txt").write_text("existing version")
    proc = _run(tmp_path, "--preset=tiny", "--random_init", f"--export_base={base}",
                "--batch_sizes=1,4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == str(base / "2")
    assert "RANDOM-INIT VQGAN" in proc.stdout
    assert (base / "1" / "keep.txt").read_text() == "existing version"
    assert sorted(os.listdir(base)) == ["1", "2"]
    names = os.listdir(base / "2")
    assert {"saved_model.pb", "assets", "assets.extra", "batching_parameters.txt"} <= set(names)
