"""The loop with a small real task: resume (mirrored, exact), checkpoints kept, exports,
argument checks; the reliability hooks: lock, debris sweep, config drift, fallback from a
truncated checkpoint, the divergence guard; legs that stop at a step, after a wall-clock
budget or on a real SIGTERM/SIGINT and end with the uninterrupted weights. The transformer
task's runs (TensorBoard content, NaN handling) are in transformer_task_test.py."""
import itertools
import json
import os
import signal
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.training import loop, stopping
from magnets_tf.utils import files
from magnets_tf.utils import event_files
from tests.resume_helpers import StopAt


class LinearTask(loop.TrainTask):
    """Fits w of y = x . w_true by SGD on an endless stream of stateless random examples
    (example i drawn from the seed (seed, i)); exports w as weights.npy."""

    def __init__(self, global_batch_size=4, seed=0, learning_rate=0.1, config=None):
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.w_true = tf.constant([1.0, -2.0, 3.0])
        self.rate = learning_rate  # A float or a function of the step.
        self.config = config

    def build(self, strategy, train_steps):
        self.w = keras.Variable(tf.zeros([3]), name="w")
        rate = self.rate if callable(self.rate) else (lambda step: self.rate)
        self.optimizer = keras.optimizers.SGD(
            lambda: tf.cast(rate(self.optimizer.iterations + 1), tf.float32))
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
        if self.config is not None:
            files.write_json(os.path.join(model_dir, "linear_config.json"), self.config)

    def guarded_variables(self):
        return [self.w]

    def model_config(self):
        return None if self.config is None else ("linear_config.json", self.config)


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
    # A leg's stop step is its last boundary; one past train_steps changes nothing.
    assert loop.loop_ends(0, 20, 4, stop_at_step=10) == [4, 8, 10]
    assert loop.loop_ends(10, 20, 4, stop_at_step=16) == [12, 16]
    assert loop.loop_ends(0, 9, 4, stop_at_step=50) == [4, 8, 9]
    assert loop.loop_ends(10, 20, 4, stop_at_step=10) == []


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
    with pytest.raises(loop.DivergenceError, match=r"step 8: loss is nan.*ckpt-4"):
        loop.run(PoisonedTask(), str(tmp_path), mirrored, 12, checkpoint_every=4,
                 steps_per_loop=4, progress=False)
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-4"]


def test_steps_per_loop_must_be_positive(tmp_path, mirrored):
    with pytest.raises(ValueError, match="steps_per_loop must be >= 1"):
        loop.run(LinearTask(), str(tmp_path), mirrored, 2, steps_per_loop=0)


def _checkpoint_steps(model_dir):
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]


def _checkpoint_weights(model_dir, step):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints", f"ckpt-{step}"))
    (key,) = [k for k in reader.get_variable_to_shape_map() if k.startswith("model/")]
    return reader.get_tensor(key)


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    options = dict(checkpoint_every=2, keep_checkpoints=3, progress=False)
    reference = LinearTask()
    loop.run(reference, str(tmp_path / "reference"), tf.distribute.get_strategy(), 8,
             **options)
    model_dir = str(tmp_path / "model")
    loop.run(LinearTask(), model_dir, tf.distribute.get_strategy(), 6, **options)
    data = os.path.join(model_dir, "checkpoints", "ckpt-6.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    resumed = LinearTask()
    summary = loop.run(resumed, model_dir, tf.distribute.get_strategy(), 8, **options)
    assert summary["start_step"] == 4
    assert any("skipped checkpoint" in r.getMessage() and "ckpt-6" in r.getMessage()
               for r in caplog.records)
    corrupt = os.path.join(model_dir, "checkpoints", "corrupt")
    assert sorted(os.listdir(corrupt)) == ["ckpt-6.data-00000-of-00001", "ckpt-6.index"]
    np.testing.assert_array_equal(resumed.w.numpy(), reference.w.numpy())
    assert _checkpoint_steps(model_dir) == [4, 6, 8]


def test_exploding_update_is_never_saved_and_the_last_good_checkpoint_is_named(tmp_path):
    """lr=1e30 from step 5 with a checkpoint every step: the weights of step 5 are finite
    (about 1e30) but must never reach a checkpoint or the export."""
    model_dir = str(tmp_path / "model")
    exploding = LinearTask(learning_rate=lambda step: tf.where(step >= 5, 1e30, 0.1))
    with pytest.raises(loop.DivergenceError, match=r"diverged at step 5: the weight norm "
                       r"jumped .* the last checkpoint before the divergence is "
                       r".*ckpt-4 \(a restart resumes there\)") as caught:
        loop.run(exploding, model_dir, tf.distribute.get_strategy(), 8, checkpoint_every=1,
                 keep_checkpoints=3, progress=False)
    assert caught.value.last_good_step == 4
    assert float(np.abs(exploding.w.numpy()).max()) > 1e20  # It did explode in memory.
    assert _checkpoint_steps(model_dir) == [2, 3, 4]
    np.testing.assert_array_equal(np.load(os.path.join(model_dir, "weights.npy")),
                                  _checkpoint_weights(model_dir, 4))
    sane = LinearTask()  # A restart with a sane rate resumes from the good weights.
    summary = loop.run(sane, model_dir, tf.distribute.get_strategy(), 8, checkpoint_every=1,
                       keep_checkpoints=3, progress=False)
    assert summary["start_step"] == 4 and summary["logs"]["loss"] < 10


def test_later_checkpoints_of_a_diverged_run_are_set_aside(tmp_path):
    """A NaN loss at step 6 means the weights after update 5 are bad: ckpt-5 goes to
    checkpoints/diverged/ and the export is rewritten from ckpt-4."""
    model_dir = str(tmp_path / "model")
    task = LinearTask(learning_rate=lambda step: tf.where(step == 5, float("nan"), 0.1))
    task.guarded_variables = lambda: []  # Only the loss shows it (a task without norms).
    with pytest.raises(loop.DivergenceError, match=r"step 6: loss is nan.*ckpt-4.*ckpt-5"):
        loop.run(task, model_dir, tf.distribute.get_strategy(), 8, checkpoint_every=1,
                 keep_checkpoints=5, progress=False)
    assert _checkpoint_steps(model_dir) == [1, 2, 3, 4]
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints", "diverged"))) == [
        "ckpt-5.data-00000-of-00001", "ckpt-5.index"]
    np.testing.assert_array_equal(np.load(os.path.join(model_dir, "weights.npy")),
                                  _checkpoint_weights(model_dir, 4))


def test_config_change_on_resume_is_refused_and_nothing_is_rewritten(tmp_path):
    model_dir = str(tmp_path / "model")
    options = dict(checkpoint_every=2, progress=False)
    loop.run(LinearTask(config=dict(size=3)), model_dir, tf.distribute.get_strategy(), 2,
             **options)
    stored = {name: open(os.path.join(model_dir, name), "rb").read()
              for name in ("linear_config.json", "operative_config.gin", "train_summary.json")}
    with pytest.raises(loop.run_config.ConfigDriftError,
                       match=r"linear_config.json:size: 3 -> 4.*--allow_config_change"):
        loop.run(LinearTask(config=dict(size=4)), model_dir, tf.distribute.get_strategy(), 4,
                 **options)
    for name, content in stored.items():
        assert open(os.path.join(model_dir, name), "rb").read() == content, name
    summary = loop.run(LinearTask(config=dict(size=4)), model_dir,
                       tf.distribute.get_strategy(), 4, allow_config_change=True, **options)
    assert summary["start_step"] == 2
    assert os.listdir(os.path.join(model_dir, "config_history")) == [
        "linear_config-step2.json"]
    history = json.load(open(os.path.join(model_dir, "train_summary.json")))["history"]
    assert [run["final_step"] for run in history] == [2]


def test_a_locked_model_dir_is_refused_and_debris_is_swept(tmp_path):
    model_dir = tmp_path / "model"
    debris = [model_dir / ".weights.npy.tmp-abc.npy", model_dir / "checkpoints" / "ckpt-3_temp"]
    debris[1].mkdir(parents=True)
    debris[0].write_bytes(b"half")
    with loop.run_lock.RunLock(str(model_dir)):
        with pytest.raises(loop.run_lock.RunLockError, match="is in use by pid"):
            loop.run(LinearTask(), str(model_dir), tf.distribute.get_strategy(), 2,
                     progress=False)
    assert all(path.exists() for path in debris)  # A refused run touches nothing.
    loop.run(LinearTask(), str(model_dir), tf.distribute.get_strategy(), 2, progress=False)
    assert not any(path.exists() for path in debris)


def test_scalars_at_first_boundary_every_log_every_and_last_step(tmp_path):
    """A run shorter than log_every still has points; with steps_per_loop the scalars sit
    at loop boundaries; a resumed run starts its curve at its first boundary."""
    default = tf.distribute.get_strategy()
    short = tmp_path / "short"
    loop.run(LinearTask(), str(short), default, 5, log_every=100, progress=False)
    steps = event_files.scalar_steps(short / loop.TRAIN_RUN)
    assert steps["loss"] == [1, 5] and steps["throughput/steps_per_second"] == [5]
    assert steps["throughput/examples_per_second"] == [5]

    looped = tmp_path / "looped"
    loop.run(LinearTask(), str(looped), default, 9, log_every=3, steps_per_loop=2,
             progress=False)  # log_every rounded up to 4: boundaries 2, 4, 6, 8, 9.
    assert event_files.scalar_steps(looped / loop.TRAIN_RUN)["loss"] == [2, 4, 8, 9]

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        loop.run(LinearTask(), str(resumed), default, 10, log_every=4, checkpoint_every=3,
                 progress=False, callbacks=[StopAt(5)])
    loop.run(LinearTask(), str(resumed), default, 10, log_every=4, progress=False)
    # First run: 1, 4 (stopped after 5, checkpoint 3); resumed at 3: 4, 8, 10.
    assert event_files.scalar_steps(resumed / loop.TRAIN_RUN)["loss"] == [1, 4, 4, 8, 10]


def test_hparams_session_named_after_the_run_with_train_as_a_metric_group(tmp_path):
    model_dir = tmp_path / "linear_run"
    loop.run(LinearTask(), str(model_dir), tf.distribute.get_strategy(), 2, progress=False)
    assert event_files.run_dirs(model_dir) == [".", loop.TRAIN_RUN]
    name, hparams = event_files.session_hparams(model_dir)
    assert name == "linear_run"
    assert hparams["train_steps"] == 2 and hparams["steps_per_loop"] == 1
    assert event_files.plugin_tags(model_dir / loop.TRAIN_RUN, "text") == [
        "config/operative_gin"]
    assert not event_files.plugin_tags(model_dir, "scalars")  # Metrics live in train/.


class ScheduledTask(LinearTask):
    """LinearTask whose learning rate decays linearly to 0 over train_steps: a schedule
    spanning the run, like the real optimizers' (a leg that rebuilt it over its own length
    would end with other weights)."""

    def build(self, strategy, train_steps):
        self.rate = lambda step: 0.2 * (1.0 - tf.cast(step, tf.float32) / train_steps)
        super().build(strategy, train_steps)


def _status(model_dir):
    return json.load(open(os.path.join(model_dir, "training_status.json")))


def test_legs_stopped_at_steps_end_with_the_uninterrupted_weights(tmp_path, capsys):
    default = tf.distribute.get_strategy()
    reference = ScheduledTask()
    loop.run(reference, str(tmp_path / "reference"), default, 10, progress=False)
    model_dir = str(tmp_path / "legs")
    options = dict(checkpoint_every=4, steps_per_loop=2, progress=False)

    first = loop.run(ScheduledTask(), model_dir, default, 10, stop_at_step=3, **options)
    assert (first["final_step"], first["complete"], first["stopped"]["reason"]) == (
        3, False, "stop_at_step")
    checkpoint = os.path.join(model_dir, "checkpoints", "ckpt-3")
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"stopped at step 3 of 10 (--stop_at_step=3); its checkpoint is {checkpoint}; "
        f"re-run the same command (without or with a later --stop_at_step) to continue")
    assert _checkpoint_steps(model_dir) == [3]  # The stop, before the first periodic one.
    np.testing.assert_array_equal(np.load(os.path.join(model_dir, "weights.npy")),
                                  _checkpoint_weights(model_dir, 3))
    assert _status(model_dir) == dict(step=3, train_steps=10, complete=False)
    assert loop.run_state.unfinished_note(model_dir).startswith(
        f"{model_dir} holds the model after step 3 of 10: its training is unfinished")

    again = loop.run(ScheduledTask(), model_dir, default, 10, stop_at_step=3, **options)
    assert again["start_step"] == again["final_step"] == 3 and again["stopped"]

    second = loop.run(ScheduledTask(), model_dir, default, 10, stop_at_step=8, **options)
    assert (second["start_step"], second["final_step"]) == (3, 8)
    assert _checkpoint_steps(model_dir) == [3, 4, 8]  # ckpt-8: periodic and stop, once.

    last_task = ScheduledTask()
    last = loop.run(last_task, model_dir, default, 10, **options)
    assert (last["start_step"], last["final_step"], last["complete"], last["stopped"]) == (
        8, 10, True, None)
    np.testing.assert_array_equal(last_task.w.numpy(), reference.w.numpy())
    assert np.abs(reference.w.numpy()).min() > 0.1  # It trained.
    assert _status(model_dir) == dict(step=10, train_steps=10, complete=True)
    assert loop.run_state.unfinished_note(model_dir) is None
    history = json.load(open(os.path.join(model_dir, "train_summary.json")))["history"]
    assert [(run["final_step"], run["complete"]) for run in history] == [
        (3, False), (3, False), (8, False)]


def test_max_wall_minutes_stops_at_the_first_boundary_after_the_budget(tmp_path,
                                                                       monkeypatch):
    default = tf.distribute.get_strategy()
    reference = ScheduledTask()
    loop.run(reference, str(tmp_path / "reference"), default, 8, progress=False)
    minutes = itertools.count(0.0, 60.0)  # Every reading of the clock is a minute later.
    monkeypatch.setattr(stopping, "now", lambda: next(minutes))
    model_dir = str(tmp_path / "model")
    summary = loop.run(ScheduledTask(), model_dir, default, 8, max_wall_minutes=2.5,
                       checkpoint_every=100, progress=False)
    # Boundaries 1, 2, 3 read 1, 2, 3 minutes: the budget is over at step 3.
    assert (summary["final_step"], summary["stopped"]["reason"]) == (3, "max_wall_minutes")
    assert "(--max_wall_minutes=2.5 reached after" in summary["stopped"]["message"]
    assert _checkpoint_steps(model_dir) == [3]
    monkeypatch.undo()
    resumed = ScheduledTask()
    summary = loop.run(resumed, model_dir, default, 8, max_wall_minutes=60,
                       checkpoint_every=100, progress=False)
    assert (summary["start_step"], summary["final_step"], summary["stopped"]) == (3, 8, None)
    np.testing.assert_array_equal(resumed.w.numpy(), reference.w.numpy())


class SignalAt(keras.callbacks.Callback):
    """Sends `signum` to this process at boundary `step` (the loop must handle it)."""

    def __init__(self, step, signum):
        super().__init__()
        self.step, self.signum = step, signum

    def on_train_batch_end(self, step, logs=None):
        if step == self.step:
            handler = signal.getsignal(self.signum)
            assert handler not in (signal.SIG_DFL, signal.default_int_handler), \
                "the loop installed no handler: the signal would end the test process"
            os.kill(os.getpid(), self.signum)
            time.sleep(0.2)  # Time for the watcher thread to record it.


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_the_next_boundary_with_a_checkpoint(tmp_path, signum):
    """In process, with a real signal: the stop checkpoint is past the last periodic one,
    the run raises TrainingInterrupted, and a restart ends with the uninterrupted
    weights. (tests/tools/train_test.py does it to a training subprocess.)"""
    default = tf.distribute.get_strategy()
    reference = ScheduledTask()
    loop.run(reference, str(tmp_path / "reference"), default, 40, progress=False)
    model_dir = str(tmp_path / "model")
    options = dict(checkpoint_every=4, keep_checkpoints=2, progress=False)
    handler = signal.getsignal(signum)
    with pytest.raises(stopping.TrainingInterrupted) as caught:
        loop.run(ScheduledTask(), model_dir, default, 40, callbacks=[SignalAt(5, signum)],
                 **options)
    step, name = caught.value.step, signal.Signals(signum).name
    assert 5 <= step < 40 and caught.value.exit_code == 128 + signum
    assert str(caught.value).startswith(f"stopped at step {step} of 40 (on {name}); its "
                                        f"checkpoint is ")
    assert _checkpoint_steps(model_dir)[-1] == step  # Written at the stop boundary.
    summary = json.load(open(os.path.join(model_dir, "train_summary.json")))
    assert (summary["final_step"], summary["complete"], summary["stopped"]["reason"]) == (
        step, False, name)
    assert signal.getsignal(signum) is handler  # Restored.
    resumed = ScheduledTask()
    summary = loop.run(resumed, model_dir, default, 40, **options)
    assert (summary["start_step"], summary["final_step"]) == (step, 40)
    np.testing.assert_array_equal(resumed.w.numpy(), reference.w.numpy())
