r"""A small real training run for the SIGKILL resume tests (run as a subprocess).

python tests/training/resume_worker.py {frame_prediction,tokenizer} MODEL_DIR STEPS

Trains a tiny frame-prediction transformer on random clip tokens, or a tiny VQGAN
(with PatchGAN from step 4 and dead-code restarts every 3 steps) on scikit-learn digits,
checkpointing every 5 steps. Each step sleeps 0.1 s after its update so the test can
kill the process between checkpoints; the sleep does not touch the weights.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magnets_tf.gin_setup import parse_gin  # noqa: E402

CHECKPOINT_EVERY = 5


class Throttle(keras.callbacks.Callback):
    def on_train_batch_end(self, step, logs=None):
        time.sleep(0.1)


def frame_prediction(model_dir, steps):
    from magnets_tf.training.frame_prediction import train_frame_prediction

    parse_gin([], ["build_transformer.preset = 'tiny'", "build_transformer.num_layers = 1",
                   "build_transformer.dropout = 0.1", "make_optimizer.learning_rate = 3e-3",
                   "make_optimizer.warmup_steps = 3"])
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 16, (24, 2 * 2 * 2))  # 24 clips of 2x2x2 tokens
    labels = rng.integers(0, 10, 24)
    return train_frame_prediction(model_dir, tokens, labels, codebook_size=16, num_classes=10,
                                  num_condition_tokens=4, batch_size=8, num_steps=steps,
                                  checkpoint_every=CHECKPOINT_EVERY, log_every=5,
                                  progress=False, callbacks=[Throttle()])


def digits(seed=0, batch_size=16):
    """scikit-learn's 8x8 digits cropped to 6x6 in [0, 1], shuffled with `seed`."""
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype(np.float32)[:, 1:7, 1:7, None]
    return (tf.data.Dataset.from_tensor_slices({"image": images})
            .shuffle(len(images), seed=seed).repeat().batch(batch_size, drop_remainder=True))


def tokenizer(model_dir, steps):
    from magnets_tf.models.vqgan import build_vqgan
    from magnets_tf.training.tokenizer_trainer import TokenizerTrainer

    keras.utils.set_random_seed(0)  # The initial tokenizer is the caller's.
    trainer = TokenizerTrainer(build_vqgan("tiny_test", image_shape=(6, 6, 1)), model_dir,
                               num_steps=steps, learning_rate=3e-3, warmup_steps=2,
                               use_gan=True, gan_start_step=4, restart_every=3,
                               restart_fraction=1.0, checkpoint_every=CHECKPOINT_EVERY,
                               log_every=5, image_every=10)
    return trainer.train(digits, progress=False, callbacks=[Throttle()])


if __name__ == "__main__":
    kind, directory, num_steps = sys.argv[1:]
    summary = {"frame_prediction": frame_prediction, "tokenizer": tokenizer}[kind](
        directory, int(num_steps))
    print(f"done: step={summary['final_step']}", flush=True)
