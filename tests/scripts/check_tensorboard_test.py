"""scripts/check_tensorboard.sh end to end (slow: trains three tiny runs, starts
TensorBoard, headless Chromium): every check passes and the screenshots are PNGs; a
missing tag makes it fail."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_tensorboard.sh"


def _run(*args, **env):
    environment = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **env)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=3600)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None and os.geteuid() != 0,
                    reason="needs Debian chromium (or root to install it)")
def test_tiny_runs_pass_the_browser_check_and_a_missing_tag_fails(tmp_path):
    out = _run(OUT=str(tmp_path / "check"), STEPS="6", TOKENIZER_STEPS="3")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " 0 failed" in out.stdout and "FAIL" not in out.stdout
    for tab in ("timeseries", "images", "text", "hparams"):
        png = tmp_path / "check" / "screenshots" / f"{tab}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", tab
    assert "ok   scalar magnets/eval:accuracy/accuracy_p1 served at steps [2, 4, 6]" in out.stdout
    # A transformer run that logged only its loss lacks the tags a user expects: the
    # check names them and fails.
    import tensorflow as tf
    writer = tf.summary.create_file_writer(str(tmp_path / "check" / "runs" / "bare" / "train"))
    with writer.as_default():
        tf.summary.scalar("loss", 1.0, step=1)
    writer.close()
    broken = _run(str(tmp_path / "check" / "runs"), SHOTS=str(tmp_path / "shots2"))
    assert broken.returncode == 1, broken.stdout[-3000:]
    assert "FAIL transformer bare/train has scalars tag grad_norm" in broken.stdout
