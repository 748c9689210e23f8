"""MultiWorkerMirroredStrategy with real processes on localhost: two workers (one CPU
each, TF_CONFIG on free ports) train the tiny transformer like one process over two
logical CPUs, only the chief writes, a SIGKILLed cluster resumes exactly, and a SIGTERM
to one worker stops the whole cluster at one loop boundary with a checkpoint."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.resume_helpers import latest_checkpoint_step

PROCESS = Path(__file__).resolve().parent / "multi_worker_process.py"
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(**extra):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=path, **extra)


def _command(strategy, model_dir, tokens_dir, steps, weights):
    return [sys.executable, str(PROCESS), strategy, str(model_dir), tokens_dir, str(steps),
            str(weights)]


def _start_workers(tmp_path, model_dirs, tokens_dir, steps, name, throttle=0.0):
    """Starts worker 0 (the chief) and worker 1; returns [(process, weights path)]."""
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    workers = []
    for index, model_dir in enumerate(model_dirs):
        temp = tmp_path / f"{name}_tmp{index}"  # Where the worker's temporary saves go.
        temp.mkdir()
        weights = tmp_path / f"{name}_worker{index}.npz"
        env = _env(TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}),
                   THROTTLE=str(throttle), TMPDIR=str(temp))
        process = subprocess.Popen(_command("multi_worker", model_dir, tokens_dir, steps,
                                            weights),
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        workers.append((process, weights))
    return workers


def _finish(workers):
    """Waits for the workers; returns their stdouts (asserting success)."""
    outputs = []
    try:
        for process, _ in workers:
            out, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


def _mirrored_run(tmp_path, tokens_dir, steps):
    """One process, MirroredStrategy over two logical CPUs, the same global batch of 8:
    the reference the clusters must match; returns its weights file."""
    weights = tmp_path / "mirrored.npz"
    result = subprocess.run(_command("mirrored", tmp_path / "mirrored", tokens_dir, steps,
                                     weights),
                            env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"done: step={steps} replicas=2 chief=True" in result.stdout
    return weights


def _weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_weights_equal(actual, expected, atol=0.0):
    assert actual.keys() == expected.keys() and expected
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=0, atol=atol,
                                   err_msg=key)


def _checkpoints(model_dir):
    return sorted(p.name.split(".")[0] for p in (Path(model_dir) / "checkpoints").glob(
        "ckpt-*.index"))


def _assert_only_the_chief_wrote(tmp_path, name, worker_dir=None):
    for index in range(2):  # The non-chief's temporary checkpoint dirs are removed.
        assert not list((tmp_path / f"{name}_tmp{index}").iterdir())
    if worker_dir is not None:
        assert not Path(worker_dir).exists() or not list(Path(worker_dir).iterdir())


@pytest.mark.slow
def test_two_worker_processes_take_one_step_and_only_the_chief_writes(tmp_path, tokens_dir):
    """One step of a real 2-process cluster. It took 2 min on the shared 2-core machine
    (load 9), too long for the default suite, which checks the write-path logic in
    distribute_test.py instead."""
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"
    workers = _start_workers(tmp_path, [chief_dir, worker_dir], tokens_dir, 1, "smoke")
    outputs = _finish(workers)
    assert "done: step=1 replicas=2 chief=True" in outputs[0]
    assert "done: step=1 replicas=2 chief=False" in outputs[1]
    _assert_weights_equal(_weights(workers[1][1]), _weights(workers[0][1]))
    assert _checkpoints(chief_dir) == ["ckpt-1"]
    assert (chief_dir / "train_summary.json").exists()
    _assert_only_the_chief_wrote(tmp_path, "smoke", worker_dir)


@pytest.mark.slow
def test_multi_worker_equals_mirrored_and_resumes_after_a_worker_is_killed(tmp_path,
                                                                          tokens_dir):
    steps = 6
    mirrored = _weights(_mirrored_run(tmp_path, tokens_dir, steps))

    # Two workers, uninterrupted; the non-chief is given a model_dir of its own, which it
    # must leave untouched.
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"
    workers = _start_workers(tmp_path, [chief_dir, worker_dir], tokens_dir, steps, "whole")
    _finish(workers)
    chief, worker = _weights(workers[0][1]), _weights(workers[1][1])
    _assert_weights_equal(worker, chief)
    _assert_weights_equal(chief, mirrored, atol=1e-5)
    assert _checkpoints(chief_dir) == ["ckpt-2", "ckpt-4", "ckpt-6"]
    _assert_only_the_chief_wrote(tmp_path, "whole", worker_dir)

    # A cluster on a shared model_dir: SIGKILL worker 1 after the first checkpoint, then the
    # chief (stuck in a collective or erroring), restart both: they resume from the
    # chief's last checkpoint and end with the uninterrupted run's weights.
    shared = tmp_path / "shared"
    workers = _start_workers(tmp_path, [shared, shared], tokens_dir, steps, "killed",
                             throttle=1.0)
    deadline = time.time() + TIMEOUT
    while (latest_checkpoint_step(shared) < 2 and workers[1][0].poll() is None
           and time.time() < deadline):
        time.sleep(0.05)
    workers[1][0].send_signal(signal.SIGKILL)
    workers[1][0].wait()
    assert workers[1][0].returncode == -signal.SIGKILL, "worker 1 ended before it was killed"
    time.sleep(2)  # The chief notices or hangs; either way it is stopped next.
    workers[0][0].kill()
    workers[0][0].communicate()
    killed_at = latest_checkpoint_step(shared)
    assert 2 <= killed_at < steps, f"not killed mid-way (checkpoint {killed_at})"
    assert not (shared / "train_summary.json").exists()

    workers = _start_workers(tmp_path, [shared, shared], tokens_dir, steps, "restarted")
    outputs = _finish(workers)
    for out in outputs:
        assert f"Resumed from {shared / 'checkpoints' / f'ckpt-{killed_at}'} at step " \
               f"{killed_at}" in out, out
    assert f"done: step={steps} replicas=2 chief=True" in outputs[0]
    _assert_weights_equal(_weights(workers[0][1]), chief)
    _assert_weights_equal(_weights(workers[1][1]), chief)
    _assert_only_the_chief_wrote(tmp_path, "restarted")


@pytest.mark.slow
def test_a_sigterm_to_one_worker_stops_the_cluster_at_one_boundary(tmp_path, tokens_dir):
    """Only worker 1 (not the chief) is signalled: the stop is shared at the next
    boundary (one all-reduce per boundary), both workers save there, the chief returns
    normally and worker 1 exits 143; the restarted cluster ends with the weights of the
    one-process mirrored run."""
    steps = 6
    mirrored_weights = _mirrored_run(tmp_path, tokens_dir, steps)

    shared = tmp_path / "shared"
    workers = _start_workers(tmp_path, [shared, shared], tokens_dir, steps, "signalled",
                             throttle=1.0)
    try:
        deadline = time.time() + TIMEOUT
        while (latest_checkpoint_step(shared) < 2 and workers[1][0].poll() is None
               and time.time() < deadline):
            time.sleep(0.05)
        workers[1][0].send_signal(signal.SIGTERM)
        (chief_out, chief_err), (worker_out, worker_err) = (
            process.communicate(timeout=TIMEOUT) for process, _ in workers)
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert workers[1][0].returncode == 128 + signal.SIGTERM, worker_err[-3000:]
    assert "SIGTERM received" in worker_err
    stopped_at = int(worker_out.split("interrupted: step=")[1].split()[0])
    assert 2 <= stopped_at < steps
    assert workers[0][0].returncode == 0, chief_err[-3000:]
    assert f"stopped at step {stopped_at} of {steps} (another worker asked to stop)" \
        in chief_out
    assert f"done: step={stopped_at} replicas=2 chief=True" in chief_out
    assert latest_checkpoint_step(shared) == stopped_at

    workers = _start_workers(tmp_path, [shared, shared], tokens_dir, steps, "continued")
    outputs = _finish(workers)
    for out in outputs:
        assert f"at step {stopped_at}" in out, out
    _assert_weights_equal(_weights(workers[0][1]), _weights(mirrored_weights), atol=1e-5)
