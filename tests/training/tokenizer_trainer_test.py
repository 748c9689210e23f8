"""Tokenizer trainer: learning, resuming (exactly, also after SIGKILL), metrics, the GAN
branch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from magnets_tf.models.saving import load_tokenizer
from magnets_tf.models.vqgan import build_vqgan
from magnets_tf.training import tokenizer_trainer as tt
from magnets_tf.utils import event_files
from tests.resume_helpers import StopAt, assert_resumes_after_sigkill

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "resume_worker.py"


def _digits(batch_size=32, repeat=True, shuffle=False):
    """Real 8x8 digit images (scikit-learn) in [0, 1], cropped to 6x6... padded to 8x8."""
    images = (load_digits().images / 16.0).astype(np.float32)[..., None]
    ds = tf.data.Dataset.from_tensor_slices({"image": images[:, 1:7, 1:7]})
    if shuffle:
        ds = ds.shuffle(len(images), seed=0)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=True)


def _tags(log_dir):
    tags = set()
    for path in Path(log_dir).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    return tags


def _model():
    return build_vqgan("tiny_test", image_shape=(6, 6, 1))


class WeightsAtStart(keras.callbacks.Callback):
    """Records the tokenizer's weights when the loop starts (after any restore)."""

    def __init__(self, variables_fn):
        super().__init__()
        self.variables_fn = variables_fn
        self.values = None

    def on_train_begin(self, logs=None):
        self.values = [v.numpy() for v in self.variables_fn()]


def test_training_reduces_reconstruction_error(tmp_path):
    model = _model()
    data = _digits()
    before = tt.evaluate_tokenizer(model, _digits(repeat=False), max_batches=8)
    trainer = tt.TokenizerTrainer(model, str(tmp_path), num_steps=60, learning_rate=3e-3,
                                  warmup_steps=5, restart_every=20, log_every=20,
                                  image_every=60)
    summary = trainer.train(data, progress=False)
    after = tt.evaluate_tokenizer(model, _digits(repeat=False), max_batches=8)
    assert after["mse"] < 0.7 * before["mse"]
    assert after["psnr_db"] > before["psnr_db"]
    assert summary["final_step"] == 60
    assert {"loss", "l2_loss", "codebook_alive_fraction", "restarted_codes"} <= set(
        summary["logs"])
    tags = _tags(tmp_path / "train")  # TensorBoard events written.
    assert {"loss", "l2_loss", "learning_rate", "inputs_over_reconstructions"} <= tags
    assert any(tag.startswith("_hparams_") for tag in _tags(tmp_path))
    loaded = load_tokenizer(str(tmp_path))  # Exported at the final checkpoint.
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_resume_continues_from_checkpoint(tmp_path):
    model = _model()
    trainer = tt.TokenizerTrainer(model, str(tmp_path), num_steps=4, checkpoint_every=2,
                                  warmup_steps=0)
    trainer.train(_digits(), progress=False)
    weights = [w.numpy() for w in model.weights]
    # A new trainer over a fresh model restores step and weights, then trains on.
    model2 = _model()
    trainer2 = tt.TokenizerTrainer(model2, str(tmp_path), num_steps=6, warmup_steps=0)
    at_start = WeightsAtStart(lambda: model2.weights)
    summary = trainer2.train(_digits(), progress=False, callbacks=[at_start])
    assert summary["start_step"] == 4
    for a, b in zip(weights, at_start.values):
        np.testing.assert_array_equal(a, b)
    assert int(trainer2.iterations) == 6 and summary["final_step"] == 6


def test_stop_at_step_ends_the_leg_with_a_checkpoint_there(tmp_path):
    trainer = tt.TokenizerTrainer(_model(), str(tmp_path), num_steps=6, checkpoint_every=4,
                                  warmup_steps=0, stop_at_step=3)
    summary = trainer.train(_digits(), progress=False)
    assert (summary["final_step"], summary["complete"], summary["stopped"]["reason"]) == (
        3, False, "stop_at_step")
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == [
        "ckpt-3.index"]
    assert json.loads((tmp_path / "training_status.json").read_text()) == dict(
        step=3, train_steps=6, complete=False)
    with pytest.raises(ValueError, match=r"TokenizerTrainer\.stop_at_step must be an "
                                         r"integer >= 1, got 0"):
        tt.TokenizerTrainer(_model(), str(tmp_path), stop_at_step=0)


@pytest.mark.slow  # Three GAN runs.
def test_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path):
    """GAN from step 2 and dead-code restarts every 2 steps on shuffled data: the
    discriminator, both optimizers, the restart generator and the data position resume."""
    def trainer(model_dir):
        keras.utils.set_random_seed(0)  # Initial weights are the caller's.
        return tt.TokenizerTrainer(_model(), str(model_dir), num_steps=7, learning_rate=3e-3,
                                   warmup_steps=1, use_gan=True, gan_start_step=2,
                                   restart_every=2, restart_fraction=1.0, checkpoint_every=3)

    def shuffled():
        return _digits(shuffle=True)

    reference = trainer(tmp_path / "reference")
    summary = reference.train(shuffled, progress=False)
    assert summary["logs"]["restarted_codes"] >= 0 and "discriminator_loss" in summary["logs"]
    interrupted = trainer(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        interrupted.train(shuffled, progress=False, callbacks=[StopAt(5)])  # ckpt-3 left
    resumed = trainer(tmp_path / "interrupted")
    summary = resumed.train(shuffled, progress=False)
    assert summary["start_step"] == 3 and summary["final_step"] == 7
    pairs = [(reference.model.weights, resumed.model.weights),
             (reference.discriminator.weights, resumed.discriminator.weights)]
    for expected, actual in pairs:
        for a, b in zip(expected, actual):
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # The interrupted process had moved past the checkpoint: its weights differ.
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(interrupted.model.weights, resumed.model.weights))


@pytest.mark.slow
def test_sigkill_and_restart_matches_uninterrupted_run(tmp_path):
    def command(model_dir):
        return [sys.executable, str(WORKER), "tokenizer", str(model_dir), "30"]

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    assert_resumes_after_sigkill(command, tmp_path, 30, "tokenizer.weights.h5", env)


def test_psnr_and_metrics_file(tmp_path):
    images = np.zeros([2, 4, 4, 1])
    recon = np.full([2, 4, 4, 1], 0.1)
    np.testing.assert_allclose(tt.psnr_per_image(images, recon), [20.0, 20.0])
    path = tt.write_metrics(str(tmp_path), {"psnr_db": 20.0})
    assert json.load(open(path)) == {"psnr_db": 20.0}


def test_gan_branch_trains_discriminator(tmp_path):
    model = _model()
    trainer = tt.TokenizerTrainer(model, str(tmp_path), num_steps=2, use_gan=True,
                                  warmup_steps=0, gan_start_step=0)
    at_start = WeightsAtStart(lambda: trainer.discriminator.trainable_weights)
    summary = trainer.train(_digits(), progress=False, callbacks=[at_start])
    assert "discriminator_loss" in summary["logs"] and "generator_loss" in summary["logs"]
    after = trainer.discriminator.trainable_weights
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(at_start.values, after))


def test_bad_trainer_arguments(tmp_path, mirrored):
    with pytest.raises(ValueError, match="num_steps"):
        tt.TokenizerTrainer(_model(), "/tmp/unused", num_steps=0)
    with pytest.raises(ValueError, match="VQGAN"):
        tt.TokenizerTrainer(object(), "/tmp/unused")
    with pytest.raises(ValueError, match="one replica"):
        tt.TokenizerTrainer(_model(), str(tmp_path), num_steps=1).train(
            _digits(), progress=False, strategy=mirrored)


def test_resuming_with_another_architecture_is_a_clear_error(tmp_path):
    trainer = tt.TokenizerTrainer(_model(), str(tmp_path), num_steps=1, warmup_steps=0)
    trainer.train(_digits(), progress=False)
    other = build_vqgan("tiny_test", image_shape=(6, 6, 1), codebook_size=32)
    with pytest.raises(ValueError, match=r"trained with another configuration .*"
                                         r"codebook_size: 16 -> 32"):
        tt.TokenizerTrainer(other, str(tmp_path), num_steps=2).train(_digits(),
                                                                     progress=False)


TOKENIZER_SCALARS = {"loss", "l2_loss", "l1_loss", "codebook_loss", "commitment_loss",
                     "batch_codebook_usage", "batch_codebook_perplexity",
                     "codebook_alive_fraction", "restarted_codes", "grad_norm",
                     "learning_rate"}


def test_tensorboard_of_a_short_and_a_resumed_run(tmp_path):
    """Shorter than log_every: scalars at the first and last step; a resumed run starts
    its curve at its first boundary; images at image_every multiples and the end (at
    loop boundaries with steps_per_loop); hparams and the gin text."""
    model_dir = tmp_path / "tokenizer"

    def trainer(num_steps, **kwargs):
        return tt.TokenizerTrainer(_model(), str(model_dir), num_steps=num_steps,
                                   warmup_steps=0, log_every=50, image_every=3,
                                   checkpoint_every=2, **kwargs)

    trainer(3).train(_digits(), progress=False)
    trainer(6, steps_per_loop=2).train(_digits(), progress=False)  # Resumes at step 3.
    train = event_files.scalar_steps(model_dir / "train")
    assert TOKENIZER_SCALARS <= set(train)
    assert all(train[tag] == [1, 3, 4, 6] for tag in TOKENIZER_SCALARS), train
    assert train["throughput/steps_per_second"] == [3, 6]
    images = event_files.load(model_dir / "train").Tensors("inputs_over_reconstructions")
    assert [event.step for event in images] == [3, 6]  # The 2nd run: boundaries 4, 6.
    assert event_files.plugin_tags(model_dir / "train", "text") == ["config/operative_gin"]
    name, hparams = event_files.session_hparams(model_dir)
    assert name == "tokenizer" and hparams["tokenizer"] == "vqgan_tiny_test"
    assert hparams["codebook_size"] == 16 and hparams["use_gan"] is False


def _trained_in_loops(model_dir, steps_per_loop, use_gan=True):
    """Weights after 4 steps with dead-code restarts every 2 steps (and the GAN from
    step 1): the tokenizer's, then the discriminator's."""
    keras.utils.set_random_seed(0)
    trainer = tt.TokenizerTrainer(_model(), str(model_dir), num_steps=4, learning_rate=3e-3,
                                  warmup_steps=1, use_gan=use_gan, gan_start_step=1,
                                  restart_every=2, restart_fraction=1.0,
                                  steps_per_loop=steps_per_loop)
    trainer.train(lambda: _digits(shuffle=True), progress=False)
    return [v.numpy() for v in trainer.model.weights
            + (trainer.discriminator.weights if use_gan else [])]


@pytest.mark.slow  # ~50 s on a loaded 2-core machine (two traced loops of a VQGAN).
def test_steps_per_loop_gives_the_weights_of_single_steps(tmp_path):
    """4 steps in loops of 2 reach the weights of 4 single steps: to float32 rounding
    here, bit for bit without oneDNN, also with the GAN (the slow test below). oneDNN
    (TF's default on x86) rewrites the convolutions inside the loop's while body
    differently from those of a single step: ~1 ulp, which Adam can grow to ~1e-6 on a
    weight whose gradient is near 0 (lr 3e-3: a step moves weights by ~3e-3)."""
    single = _trained_in_loops(tmp_path / "single", 1, use_gan=False)
    looped = _trained_in_loops(tmp_path / "looped", 2, use_gan=False)
    for a, b in zip(single, looped):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    keras.utils.set_random_seed(0)
    fresh = _model()
    assert max(float(np.abs(a.numpy() - b).max())
               for a, b in zip(fresh.weights, looped)) > 1e-3  # It trained.


@pytest.mark.slow
def test_steps_per_loop_is_bit_exact_without_onednn(tmp_path):
    script = (f"import sys, numpy as np; sys.path.insert(0, {str(ROOT)!r})\n"
              f"from tests.training.tokenizer_trainer_test import _trained_in_loops\n"
              f"a = _trained_in_loops({str(tmp_path / 'single')!r}, 1)\n"
              f"b = _trained_in_loops({str(tmp_path / 'looped')!r}, 2)\n"
              f"print('differ', sum(not np.array_equal(x, y) for x, y in zip(a, b)))\n")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "differ 0" in out.stdout, out.stdout
