"""The loop with a small real task: resume (mirrored, exact), checkpoints kept, exports,
argument checks. The transformer task's runs (TensorBoard content, NaN handling) are in
transformer_task_test.py."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.training import loop
from magnets_tf.utils import files
from tests.resume_helpers import StopAt


class LinearTask(loop.TrainTask):
    """Fits w of y = x . w_true by SGD on an endless stream of stateless random examples
    (example i drawn from the seed (seed, i)); exports w as weights.npy."""

    def __init__(self, global_batch_size=4, seed=0):
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.w_true = tf.constant([1.0, -2.0, 3.0])

    def build(self, strategy, train_steps):
        self.w = keras.Variable(tf.zeros([3]), name="w")
        self.optimizer = keras.optimizers.SGD(0.1)
        self.optimizer.build([self.w])

    @property
    def iterations(self):
        return self.optimizer.iterations

    def checkpoint_items(self):
        return dict(model=[self.w], optimizer=self.optimizer.variables)

    def dataset(self, input_context, start_step):
        per_replica = input_context.get_per_replica_batch_size(self.global_batch_size)
        first = start_step * self.global_batch_size

        def example(i):
            x = tf.random.stateless_normal([3], tf.stack([tf.constant(self.seed, tf.int64),
                                                          i]))
            return {"x": x, "y": tf.tensordot(x, self.w_true, 1)}

        return tf.data.Dataset.range(first, 2 ** 62).map(example).batch(per_replica)

    def train_step(self, batch):
        with tf.GradientTape() as tape:
            error = tf.linalg.matvec(batch["x"], self.w) - batch["y"]
            loss = tf.nn.compute_average_loss(error ** 2,
                                              global_batch_size=self.global_batch_size)
        self.optimizer.apply_gradients([(tape.gradient(loss, self.w), self.w)])
        context = tf.distribute.get_replica_context()
        return {"loss": context.all_reduce(tf.distribute.ReduceOp.SUM, loss)}

    def export(self, model_dir):
        files.write_npy(os.path.join(model_dir, "weights.npy"), self.w.numpy())

    def guarded_variables(self):
        return [self.w]


def test_interrupted_mirrored_run_resumes_to_the_uninterrupted_weights(tmp_path, mirrored):
    options = dict(checkpoint_every=2, keep_checkpoints=2, progress=False)
    reference = LinearTask()
    summary = loop.run(reference, str(tmp_path / "reference"), mirrored, 9, **options)
    assert summary["start_step"] == 0 and summary["final_step"] == 9
    assert summary["logs"]["loss"] < 1.0  # It learned (so a wrong resume would show).
    with pytest.raises(KeyboardInterrupt):
        loop.run(LinearTask(), str(tmp_path / "resumed"), mirrored, 9,
                 callbacks=[StopAt(5)], **options)
    checkpoints = tf.train.get_checkpoint_state(str(tmp_path / "resumed" / "checkpoints"))
    assert [os.path.basename(p) for p in checkpoints.all_model_checkpoint_paths] == [
        "ckpt-2", "ckpt-4"]
    reader = tf.train.load_checkpoint(checkpoints.model_checkpoint_path)
    (key,) = [k for k in reader.get_variable_to_shape_map() if k.startswith("model/")]
    np.testing.assert_array_equal(  # Exported at the last checkpoint, not at step 5.
        np.load(tmp_path / "resumed" / "weights.npy"), reader.get_tensor(key))
    resumed = LinearTask()
    summary = loop.run(resumed, str(tmp_path / "resumed"), mirrored, 9, **options)
    assert summary["start_step"] == 4 and summary["final_step"] == 9
    np.testing.assert_array_equal(resumed.w.numpy(), reference.w.numpy())
    np.testing.assert_array_equal(np.load(tmp_path / "resumed" / "weights.npy"),
                                  reference.w.numpy())
    assert json.load(open(tmp_path / "resumed" / "train_summary.json"))["start_step"] == 4
    checkpoints = tf.train.get_checkpoint_state(str(tmp_path / "resumed" / "checkpoints"))
    assert len(checkpoints.all_model_checkpoint_paths) == 2


def test_loop_arguments_are_checked(tmp_path, mirrored):
    with pytest.raises(ValueError, match="train_steps must be positive"):
        loop.run(LinearTask(), str(tmp_path), mirrored, 0)
    with pytest.raises(ValueError, match="batch_size=3 is not divisible by the 2 replicas"):
        loop.run(LinearTask(global_batch_size=3), str(tmp_path), mirrored, 2)
