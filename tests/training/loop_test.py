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


class Recorder(keras.callbacks.Callback):
    """Records the (step, loss) of every loop boundary the loop reports."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, step, logs=None):
        self.seen.append((step, logs["loss"]))


def test_loop_ends_are_multiples_then_the_last_step():
    assert loop.loop_ends(0, 8, 4) == [4, 8]
    assert loop.loop_ends(0, 9, 4) == [4, 8, 9]
    assert loop.loop_ends(5, 9, 4) == [8, 9]  # A resumed run realigns.
    assert loop.loop_ends(0, 3, 1) == [1, 2, 3]
    assert loop.loop_ends(9, 9, 4) == []


def test_periods_are_rounded_up_to_multiples_of_steps_per_loop(capsys):
    assert loop.loop_period(8, 4, "log_every") == 8
    assert loop.loop_period(0, 4, "checkpoint_every") == 0
    assert loop.loop_period(10, 4, "checkpoint_every") == 12
    assert "checkpoint_every=10 is not a multiple of steps_per_loop=4: using " \
           "checkpoint_every=12" in capsys.readouterr().out
    with pytest.raises(ValueError, match="log_every must be >= 0"):
        loop.loop_period(-1, 4, "log_every")


@pytest.mark.parametrize("steps_per_loop,boundaries", [(4, [4, 8]), (3, [3, 6, 8])])
def test_steps_per_loop_gives_the_weights_of_single_steps_and_syncs_at_boundaries(
        tmp_path, mirrored, steps_per_loop, boundaries):
    reference = LinearTask()
    recorder_1 = Recorder()
    loop.run(reference, str(tmp_path / "one"), mirrored, 8, checkpoint_every=2,
             progress=False, callbacks=[recorder_1])
    looped, recorder_n = LinearTask(), Recorder()
    loop.run(looped, str(tmp_path / "n"), mirrored, 8, checkpoint_every=2,
             progress=False, callbacks=[recorder_n], steps_per_loop=steps_per_loop)
    np.testing.assert_array_equal(looped.w.numpy(), reference.w.numpy())
    assert np.abs(looped.w.numpy()).min() > 0  # It trained (w starts at zeros).
    # Boundaries at the multiples of steps_per_loop and the last step; the logs are the
    # means over each loop.
    assert [step for step, _ in recorder_n.seen] == boundaries
    losses = [loss for _, loss in recorder_1.seen]
    expected = [np.mean(losses[start:end]) for start, end in zip([0] + boundaries, boundaries)]
    np.testing.assert_allclose([loss for _, loss in recorder_n.seen], expected, rtol=1e-6)
    # checkpoint_every=2 was rounded up to steps_per_loop: checkpoints at boundaries only.
    state = tf.train.get_checkpoint_state(str(tmp_path / "n" / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        f"ckpt-{step}" for step in boundaries][-3:]


def test_a_run_interrupted_at_a_boundary_resumes_with_another_steps_per_loop(tmp_path,
                                                                               mirrored):
    reference = LinearTask()
    loop.run(reference, str(tmp_path / "reference"), mirrored, 9, progress=False)
    options = dict(checkpoint_every=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        loop.run(LinearTask(), str(tmp_path / "resumed"), mirrored, 9, steps_per_loop=3,
                 callbacks=[StopAt(6)], **options)
    resumed, recorder = LinearTask(), Recorder()
    summary = loop.run(resumed, str(tmp_path / "resumed"), mirrored, 9, steps_per_loop=2,
                       callbacks=[recorder], checkpoint_every=2, progress=False)
    assert summary["start_step"] == 6 and summary["final_step"] == 9
    assert [step for step, _ in recorder.seen] == [8, 9]
    np.testing.assert_array_equal(resumed.w.numpy(), reference.w.numpy())


class PoisonedTask(LinearTask):
    """LinearTask whose loss is NaN at step `poison_step` only (1-based)."""

    poison_step = 6

    def train_step(self, batch):
        logs = super().train_step(batch)
        poisoned = tf.equal(self.optimizer.iterations, self.poison_step)
        return {"loss": tf.where(poisoned, float("nan"), logs["loss"])}


def test_a_nan_inside_a_loop_stops_the_run_at_its_boundary(tmp_path, mirrored):
    with pytest.raises(loop.NonFiniteLossError, match=r"loss is nan in steps 5-8.*ckpt-4"):
        loop.run(PoisonedTask(), str(tmp_path), mirrored, 12, checkpoint_every=4,
                 steps_per_loop=4, progress=False)
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-4"]


def test_steps_per_loop_must_be_positive(tmp_path, mirrored):
    with pytest.raises(ValueError, match="steps_per_loop must be >= 1"):
        loop.run(LinearTask(), str(tmp_path), mirrored, 2, steps_per_loop=0)
