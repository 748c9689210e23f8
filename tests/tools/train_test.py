"""tools/train.py as a real subprocess: clear errors, SIGKILL + restart == uninterrupted."""
import subprocess

import numpy as np
import pytest

from magnets_tf.data import tokenized
from tests.resume_helpers import assert_resumes_after_sigkill
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
