"""tools/train.py as a real subprocess: clear errors, SIGKILL + restart == uninterrupted."""
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from magnets_tf.data import tokenized
from tests.tool_runner import ROOT, tool_command, tool_env

GIN = ROOT / "gin" / "fashion_mnist" / "magnets_tiny.gin"


def _shards(path, num_examples=256):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 16, (num_examples, 2, 2))
    labels = rng.integers(0, 10, num_examples)
    tokenized.write_token_shards(str(path), [(tokens, labels)],
                                 dict(codebook_size=16, grid=[2, 2], num_classes=10,
                                      tokenizer=""), num_shards=2)
    return str(path)


def _command(tokens_dir, model_dir, steps, *bindings):
    bindings = [f"TOKENS_DIR='{tokens_dir}'", "build_transformer.num_layers=1",
                "train.batch_size=8", "train.checkpoint_every=5", "train.log_every=5",
                "train.sample_every=0", "make_optimizer.warmup_steps=5", *bindings]
    return tool_command("train", f"--gin_file={GIN}", f"--model_dir={model_dir}",
                        f"--train_steps={steps}", "--noprogress",
                        *[f"--gin_bindings={b}" for b in bindings])


def _env():
    return tool_env(TF_CPP_MIN_LOG_LEVEL="3")


def test_missing_token_shards_is_a_clear_error(tmp_path):
    result = subprocess.run(_command(tmp_path / "nope", tmp_path / "model", 5), env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "token shard directory" in result.stderr and "does not exist" in result.stderr


def test_bad_gin_binding_is_a_usage_error(tmp_path):
    result = subprocess.run(_command(tmp_path, tmp_path / "model", 5, "train.no_such=1"),
                            env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "bad gin configuration" in result.stderr


def _latest_step(model_dir):
    state = Path(model_dir) / "checkpoints" / "checkpoint"
    if not state.exists():
        return 0
    found = re.findall(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text())
    return int(found[0]) if found else 0


def _weights(model_dir):
    import h5py  # Installed with keras.
    values = {}
    with h5py.File(Path(model_dir) / "transformer.weights.h5") as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return values


@pytest.mark.slow
def test_sigkill_and_restart_matches_uninterrupted_run(tmp_path):
    tokens_dir = _shards(tmp_path / "tokens")
    steps = 40
    reference = tmp_path / "reference"
    result = subprocess.run(_command(tokens_dir, reference, steps), env=_env(),
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(tokens_dir, killed, steps), env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 1200
    while _latest_step(killed) < 10 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = _latest_step(killed)
    assert 10 <= killed_at < steps, f"run not killed mid-way (checkpoint {killed_at})"
    assert not (killed / "train_summary.json").exists()

    result = subprocess.run(_command(tokens_dir, killed, steps), env=_env(),
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = re.findall(r"Resumed from \S+ckpt-(\d+) at step (\d+)", result.stdout)
    assert resumed and int(resumed[0][1]) == _latest_step_at_restart(killed_at, resumed)
    assert f"done: step={steps}" in result.stdout
    expected, actual = _weights(reference), _weights(killed)
    assert expected.keys() == actual.keys() and expected
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6, err_msg=name)


def _latest_step_at_restart(killed_at, resumed):
    """The restart resumes at the checkpoint step that the kill left behind."""
    checkpoint_step, step = map(int, resumed[0])
    assert checkpoint_step == step == killed_at
    return killed_at
