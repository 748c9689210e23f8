"""Tokenizer trainer: learning, resuming, metrics, the GAN branch."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from magnets_tf.models.vqgan import build_vqgan
from magnets_tf.training import tokenizer_trainer as tt


def _digits(batch_size=32, repeat=True):
    """Real 8x8 digit images (scikit-learn) in [0, 1], cropped to 6x6... padded to 8x8."""
    images = (load_digits().images / 16.0).astype(np.float32)[..., None]
    ds = tf.data.Dataset.from_tensor_slices({"image": images[:, 1:7, 1:7]})
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size, drop_remainder=True)


def _model():
    return build_vqgan("tiny_test", image_shape=(6, 6, 1))


def test_training_reduces_reconstruction_error(tmp_path):
    model = _model()
    data = _digits()
    before = tt.evaluate_tokenizer(model, _digits(repeat=False), max_batches=8)
    trainer = tt.TokenizerTrainer(model, str(tmp_path), num_steps=60, learning_rate=3e-3,
                                  warmup_steps=5, restart_every=20, log_every=20,
                                  image_every=60)
    trainer.train(data, progress=False)
    after = tt.evaluate_tokenizer(model, _digits(repeat=False), max_batches=8)
    assert after["mse"] < 0.7 * before["mse"]
    assert after["psnr_db"] > before["psnr_db"]
    assert os.listdir(tmp_path / "train")  # TensorBoard events written.


def test_resume_continues_from_checkpoint(tmp_path):
    model = _model()
    trainer = tt.TokenizerTrainer(model, str(tmp_path), num_steps=4, checkpoint_every=2,
                                  warmup_steps=0)
    trainer.train(_digits(), progress=False)
    weights = [w.numpy() for w in model.weights]
    # A new trainer over a fresh model restores step and weights, then trains on.
    model2 = _model()
    trainer2 = tt.TokenizerTrainer(model2, str(tmp_path), num_steps=6, warmup_steps=0)
    assert trainer2.restore() == 4
    for a, b in zip(weights, model2.weights):
        np.testing.assert_array_equal(a, b.numpy())
    trainer2.train(_digits(), progress=False)
    assert int(trainer2.step) == 6


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
    before = [w.numpy() for w in trainer.discriminator.trainable_weights]
    losses, _ = trainer._train_step(next(iter(_digits()))["image"])
    assert "discriminator_loss" in losses and "generator_loss" in losses
    after = trainer.discriminator.trainable_weights
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after))


def test_bad_trainer_arguments():
    with pytest.raises(ValueError, match="num_steps"):
        tt.TokenizerTrainer(_model(), "/tmp/unused", num_steps=0)
    with pytest.raises(ValueError, match="VQGAN"):
        tt.TokenizerTrainer(object(), "/tmp/unused")


def test_resuming_with_another_architecture_is_a_clear_error(tmp_path):
    trainer = tt.TokenizerTrainer(_model(), str(tmp_path), num_steps=1, warmup_steps=0)
    trainer.train(_digits(), progress=False)
    other = build_vqgan("tiny_test", image_shape=(6, 6, 1), codebook_size=32)
    with pytest.raises(ValueError, match="does not match this model"):
        tt.TokenizerTrainer(other, str(tmp_path), num_steps=2).restore()
