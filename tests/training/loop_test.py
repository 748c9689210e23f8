"""The training loop in-process: what it writes, TensorBoard content, NaN handling."""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.data import tokenized
from magnets_tf.models import saving
from magnets_tf.training import loop, trainer as trainer_lib


@pytest.fixture
def tokens_dir(tmp_path):
    rng = np.random.default_rng(0)
    tokenized.write_token_shards(
        str(tmp_path / "tokens"), [(rng.integers(0, 16, (64, 2, 2)), rng.integers(0, 10, 64))],
        dict(codebook_size=16, grid=[2, 2], num_classes=10, tokenizer=""), num_shards=2)
    return str(tmp_path / "tokens")


@pytest.fixture(autouse=True)
def tiny_gin():
    gin.clear_config()
    gin.bind_parameter("build_transformer.preset", "tiny")
    gin.bind_parameter("build_transformer.num_layers", 1)
    gin.bind_parameter("make_optimizer.warmup_steps", 2)
    yield
    gin.clear_config()


def _tags(model_dir):
    tags = set()
    for root, _, files in os.walk(os.path.join(model_dir, "tensorboard")):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                tags.update(v.tag for v in event.summary.value)
    return tags


@pytest.mark.slow
def test_run_writes_state_and_tensorboard(tmp_path, tokens_dir):
    model_dir = str(tmp_path / "model")
    summary = loop.train(model_dir, tf.distribute.get_strategy(), 4, tokens_dir=tokens_dir,
                         batch_size=8, checkpoint_every=2, log_every=2, sample_every=4,
                         num_samples=4, sample_steps=2, progress=False)
    assert summary["final_step"] == 4 and np.isfinite(summary["logs"]["loss"])
    files = set(os.listdir(model_dir))
    assert {"checkpoints", "operative_config.gin", "transformer_config.json",
            "transformer.weights.h5", "tensorboard", "samples", "train_summary.json"} <= files
    assert "build_transformer.num_layers = 1" in open(os.path.join(model_dir,
                                                                   "operative_config.gin")).read()
    assert sorted(os.listdir(os.path.join(model_dir, "samples"))) == [
        f"step00000004_p{p}.png" for p in (1, 2, 4, 8)]
    tags = _tags(model_dir)
    for p in (1, 2, 4, 8):
        assert {f"loss/loss_p{p}", f"accuracy/accuracy_p{p}", f"sample_tokens/p{p}"} <= tags
    assert {"loss", "alpha", "learning_rate", "throughput/steps_per_second"} <= tags
    assert any(tag.startswith("config/operative_gin") for tag in tags), tags
    assert any(tag.startswith("_hparams_") for tag in tags)
    model = saving.load_transformer(model_dir)
    assert model.codebook_size == 16 and model.num_tokens == 4
    # Running again with the same step count resumes at the end and changes nothing.
    again = loop.train(model_dir, tf.distribute.get_strategy(), 4, tokens_dir=tokens_dir,
                       batch_size=8, progress=False)
    assert again["start_step"] == 4 and again["final_step"] == 4


@pytest.mark.slow
def test_non_finite_training_stops_and_keeps_last_good_checkpoint(tmp_path, tokens_dir):
    model_dir = str(tmp_path / "model")
    loop.train(model_dir, tf.distribute.get_strategy(), 2, tokens_dir=tokens_dir,
               batch_size=8, checkpoint_every=1, progress=False)
    good = saving.load_transformer(model_dir).get_weights()
    # Continue with a NaN learning rate: step 3 computes a finite loss but NaN weights,
    # step 4 would report a NaN loss; neither may reach the checkpoint or the export.
    gin.bind_parameter("make_optimizer.learning_rate", float("nan"))
    with pytest.raises(loop.NonFiniteLossError, match=r"step 3.*ckpt-2.*not overwritten"):
        loop.train(model_dir, tf.distribute.get_strategy(), 5, tokens_dir=tokens_dir,
                   batch_size=8, checkpoint_every=1, progress=False)
    state = open(os.path.join(model_dir, "checkpoints", "checkpoint")).read()
    assert 'model_checkpoint_path: "ckpt-2"' in state and "ckpt-3" not in state
    for a, b in zip(good, saving.load_transformer(model_dir).get_weights()):
        np.testing.assert_array_equal(a, b)
    # Without checkpoints in between, the NaN loss of step 2 itself stops the run.
    with pytest.raises(loop.NonFiniteLossError, match=r"loss is nan at step 2"):
        loop.train(str(tmp_path / "other"), tf.distribute.get_strategy(), 5,
                   tokens_dir=tokens_dir, batch_size=8, checkpoint_every=0, progress=False)


def test_bad_batch_and_missing_data(tmp_path, tokens_dir):
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with pytest.raises(ValueError, match="not divisible by the 2 replicas"):
        loop.train(str(tmp_path / "m"), mirrored, 2, tokens_dir=tokens_dir, batch_size=7)
    with pytest.raises(tokenized.TokenShardError, match="does not exist"):
        loop.train(str(tmp_path / "m"), tf.distribute.get_strategy(), 2,
                   tokens_dir=str(tmp_path / "none"))
