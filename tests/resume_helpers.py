"""SIGKILL-and-restart helpers shared by the resume tests of training and tools."""
import re
import signal
import subprocess
import time
from pathlib import Path

import keras
import numpy as np


def latest_checkpoint_step(model_dir):
    """Step of the newest checkpoint `loop.run` recorded in model_dir (0 if none)."""
    state = Path(model_dir) / "checkpoints" / "checkpoint"
    if not state.exists():
        return 0
    found = re.findall(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text())
    return int(found[0]) if found else 0


def kill_after_checkpoint(command, model_dir, min_step, env, timeout=1200):
    """Starts `command`, SIGKILLs it once model_dir holds a checkpoint of step >= min_step;
    returns the newest checkpoint step left behind."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while (latest_checkpoint_step(model_dir) < min_step and process.poll() is None
           and time.time() < deadline):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it was killed"
    return latest_checkpoint_step(model_dir)


def h5_weights(path):
    """{dataset name: array} of a Keras .weights.h5 file."""
    import h5py  # Installed with keras.
    values = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: values.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return values


def assert_resumes_after_sigkill(command, tmp_path, steps, weights_file, env, atol=None):
    """Runs `command(model_dir)` (a training process printing "done: step=N") once
    uninterrupted and once SIGKILLed after a checkpoint of step >= 10 then restarted;
    asserts the restart resumed at that checkpoint and ended with the uninterrupted
    run's `weights_file` (exactly, or within `atol`)."""
    reference, killed = Path(tmp_path) / "reference", Path(tmp_path) / "killed"
    result = subprocess.run(command(reference), env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    killed_at = kill_after_checkpoint(command(killed), killed, 10, env)
    assert 10 <= killed_at < steps, f"run not killed mid-way (checkpoint {killed_at})"
    assert not (killed / "train_summary.json").exists()
    result = subprocess.run(command(killed), env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = killed / "checkpoints" / f"ckpt-{killed_at}"
    assert f"Resumed from {checkpoint} at step {killed_at}" in result.stdout, result.stdout
    assert f"done: step={steps}" in result.stdout
    expected = h5_weights(reference / weights_file)
    actual = h5_weights(killed / weights_file)
    assert expected.keys() == actual.keys() and expected
    for name in expected:
        if atol is None:
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)
        else:
            np.testing.assert_allclose(actual[name], expected[name], atol=atol, err_msg=name)


class StopAt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt after step `step`: an interrupted in-process run."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, step, logs=None):
        if step == self.step:
            raise KeyboardInterrupt
