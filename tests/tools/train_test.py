"""tools/train.py as a real subprocess: clear errors, SIGKILL + restart == uninterrupted,
SIGTERM stops at a loop boundary with a checkpoint (a second one aborts) and the re-run
still ends with the uninterrupted weights."""
import json
import re
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from magnets_tf.data import tokenized
from tests.resume_helpers import assert_resumes_after_sigkill, h5_weights, latest_checkpoint_step
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


def test_steps_per_loop_below_one_is_a_usage_error(tmp_path):
    command = _command(tmp_path, tmp_path / "model", 5) + ["--steps_per_loop=0"]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--steps_per_loop must be >= 1, got 0" in result.stderr


@pytest.mark.slow
def test_steps_per_loop_and_jit_flags_reach_the_run(tmp_path):
    tokens_dir = _shards(tmp_path / "tokens")
    model_dir = tmp_path / "model"
    command = _command(tokens_dir, model_dir, 6) + ["--steps_per_loop=4", "--jit_compile"]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done: step=6" in result.stdout
    # checkpoint_every=5 became 8: no boundary (4, 6) reaches it, so only the last step
    # is saved.
    assert "checkpoint_every=5 is not a multiple of steps_per_loop=4: using " \
           "checkpoint_every=8" in result.stdout
    config = (model_dir / "operative_config.gin").read_text()
    assert "train.steps_per_loop = 4" in config and "train.jit_compile = True" in config
    assert sorted(p.name for p in (model_dir / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-6.index"]


@pytest.mark.slow
def test_sigkill_and_restart_matches_uninterrupted_run(tmp_path):
    tokens_dir = _shards(tmp_path / "tokens")
    assert_resumes_after_sigkill(lambda model_dir: _command(tokens_dir, model_dir, 40),
                                 tmp_path, 40, "transformer.weights.h5", _env(), atol=1e-6)


@pytest.mark.parametrize("flag, message", [
    ("--stop_at_step=0", "--stop_at_step must be >= 1, got 0"),
    ("--max_wall_minutes=0", "--max_wall_minutes must be > 0, got 0.0")])
def test_bad_leg_flags_are_usage_errors(tmp_path, flag, message):
    command = _command(tmp_path, tmp_path / "model", 5) + [flag]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and f"error: {message}" in result.stderr
    assert not (tmp_path / "model").exists()


class _Running:
    """A training subprocess whose stderr lines are collected as they come."""

    def __init__(self, command):
        self.process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr))
        self.reader.start()

    def wait_for(self, condition, timeout=600):
        deadline = time.time() + timeout
        while not condition() and self.process.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert condition(), "".join(self.lines)[-3000:]

    def finish(self, timeout=300):
        stdout = self.process.communicate(timeout=timeout)[0]
        self.reader.join()
        return self.process.returncode, stdout, "".join(self.lines)


def _assert_finishes_like(command, model_dir, reference, resumed_at):
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = model_dir / "checkpoints" / f"ckpt-{resumed_at}"
    assert f"Resumed from {checkpoint} at step {resumed_at}" in result.stdout, result.stdout
    expected, actual = (h5_weights(d / "transformer.weights.h5") for d in (reference,
                                                                            model_dir))
    assert expected.keys() == actual.keys() and expected
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-6, err_msg=name)


@pytest.mark.slow  # Four training processes (~2-3 min on the loaded 2-core machine).
def test_sigterm_checkpoints_at_the_next_boundary_and_a_second_one_aborts(tmp_path):
    tokens_dir = _shards(tmp_path / "tokens")
    steps = 100
    reference = tmp_path / "reference"
    result = subprocess.run(_command(tokens_dir, reference, steps), env=_env(),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    # One SIGTERM: the run finishes its loop, checkpoints there and exits 128 + 15.
    stopped = tmp_path / "stopped"
    run = _Running(_command(tokens_dir, stopped, steps))
    run.wait_for(lambda: latest_checkpoint_step(stopped) >= 10)
    periodic = latest_checkpoint_step(stopped)
    run.process.send_signal(signal.SIGTERM)
    code, _, stderr = run.finish()
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "SIGTERM received: training stops at the next loop boundary" in stderr
    last = stderr.strip().splitlines()[-1]
    match = re.fullmatch(r"stopped at step (\d+) of 100 \(on SIGTERM\); its checkpoint is "
                         r"(\S+); re-run the same command \(without or with a later "
                         r"--stop_at_step\) to continue", last)
    assert match, last
    step = int(match.group(1))
    assert periodic <= step < steps and match.group(2) == str(
        stopped / "checkpoints" / f"ckpt-{step}")
    assert latest_checkpoint_step(stopped) == step
    assert json.loads((stopped / "training_status.json").read_text()) == dict(
        step=step, train_steps=steps, complete=False)
    _assert_finishes_like(_command(tokens_dir, stopped, steps), stopped, reference, step)

    # A second SIGTERM while the first waits for the end of a loop (50 steps long here):
    # out at once, no new checkpoint; what was written stays whole and the re-run still
    # ends with the same weights (they do not depend on steps_per_loop).
    aborted = tmp_path / "aborted"
    command = _command(tokens_dir, aborted, steps) + ["--steps_per_loop=50"]
    run = _Running(command)
    run.wait_for(lambda: latest_checkpoint_step(aborted) >= 50)
    run.process.send_signal(signal.SIGTERM)
    run.wait_for(lambda: any("SIGTERM received:" in line for line in run.lines))
    run.process.send_signal(signal.SIGTERM)
    code, _, stderr = run.finish(timeout=60)
    assert code == 128 + signal.SIGTERM, stderr[-3000:]
    assert "SIGTERM received again: aborting now, without a checkpoint" in stderr
    assert "stopped at step" not in stderr
    assert latest_checkpoint_step(aborted) == 50
    _assert_finishes_like(command, aborted, reference, 50)


VIDEO_GIN = ROOT / "gin" / "moving_mnist" / "magnets_frame_prediction.gin"


@pytest.mark.slow
def test_sigkill_of_a_video_frame_prediction_run_matches_uninterrupted_run(tmp_path):
    """tools/train.py on frame-prediction video shards ([2, 2, 2] grids, the first latent
    frame given), killed mid-run and restarted, ends with the uninterrupted run's weights."""
    rng = np.random.default_rng(0)
    tokens_dir = str(tmp_path / "clips")
    tokenized.write_token_shards(
        tokens_dir, [(rng.integers(0, 16, (128, 2, 2, 2)), rng.integers(0, 10, 128))],
        dict(codebook_size=16, grid=[2, 2, 2], num_classes=10, tokenizer="",
             num_condition_frames=4, num_condition_tokens=4), num_shards=3)

    def command(model_dir):
        bindings = [f"TOKENS_DIR='{tokens_dir}'", "build_transformer.num_layers=1",
                    "build_transformer.hidden_size=64", "build_transformer.num_heads=2",
                    "build_transformer.mlp_dim=256", "build_transformer.dropout=0.1",
                    "train.batch_size=8", "train.checkpoint_every=5", "train.log_every=5",
                    "train.sample_every=0", "make_optimizer.warmup_steps=5"]
        return tool_command("train", f"--gin_file={VIDEO_GIN}", f"--model_dir={model_dir}",
                            "--train_steps=40", "--noprogress",
                            *[f"--gin_bindings={b}" for b in bindings])

    assert_resumes_after_sigkill(command, tmp_path, 40, "transformer.weights.h5", _env(),
                                 atol=1e-6)
    config = json.loads((tmp_path / "killed" / "transformer_config.json").read_text())
    assert config["num_condition_tokens"] == 4 and config["num_tokens"] == 8


TRAIN_GINS = ["moving_mnist/magnets_frame_prediction.gin",
              "moving_mnist/magnets_class_conditional.gin", "ucf101/magnets.gin",
              "kinetics600/magnets_frame_prediction.gin"]


@pytest.mark.parametrize("name", TRAIN_GINS)
def test_video_gin_files_start_with_their_command_and_parse(name):
    import gin

    from magnets_tf.gin_setup import parse_gin

    path = ROOT / "gin" / name
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "python tools/train.py" in first
    assert f"--gin_file=gin/{name}" in first and "--train_steps=" in first
    gin.clear_config()
    try:
        parse_gin([str(path)], [])
        preset = gin.query_parameter("build_transformer.preset")
        assert preset == ("L" if name.split("/")[0] != "moving_mnist" else "tiny")
        assert gin.query_parameter("train.tokens_dir") is not None
    finally:
        gin.clear_config()


def test_reference_gin_is_magnets_small_without_dropout_and_names_its_command():
    import gin

    from magnets_tf.gin_setup import parse_gin

    path = ROOT / "gin" / "fashion_mnist" / "magnets_reference.gin"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "scripts/reference_run.sh" in first
    assert "GIN_FILE=gin/fashion_mnist/magnets_reference.gin" in first
    gin.clear_config()
    try:
        parse_gin([str(path)], [])
        assert gin.query_parameter("build_transformer.dropout") == 0.0
        assert gin.query_parameter("build_transformer.attention_dropout") == 0.0
        assert gin.query_parameter("build_transformer.num_layers") == 6
        assert gin.query_parameter("build_transformer.hidden_size") == 128
        assert gin.query_parameter("build_transformer.factors") == (1, 2, 4, 8)
    finally:
        gin.clear_config()
