"""The one training loop: a `TrainTask` trained under a strategy, resumable, guarded.

`run(task, model_dir, strategy, train_steps)` serves every trainer of the package (the
nested transformer on token shards or in-memory clips, the image/video tokenizer). It
owns what they share; the task owns what differs (models, optimizers, the update, data).

State in `model_dir`:
  checkpoints/ckpt-<step>.*   the task's checkpoint items (tf.train.CheckpointManager,
                              `keep_checkpoints` kept); the step is `task.iterations`
  operative_config.gin        the gin configuration that ran
  tensorboard/                scalars, config text, hparams and the task's images
  train_summary.json          first and final step, last logs, steps/s of this run
  + whatever `task.export` writes at every checkpoint (e.g. the transformer's weights).

Resume: a restarted run restores the latest checkpoint, continues at its step and asks
the task for data starting at that step; tasks draw masks, dropout and data order as
functions of (seed, step), so a run killed with SIGKILL and restarted reaches the weights
of an uninterrupted run. A non-finite loss (checked every step) or non-finite weights
(checked before every save) stop the run without touching the last good checkpoint.

Steps per loop: `steps_per_loop` steps run inside one tf.function
(`distribute.make_train_function`) with their logs averaged on the device; the host
syncs, checks the loss and runs the callbacks (checkpoints, summaries, progress,
samples) only at loop boundaries, which are the multiples of steps_per_loop (and the
last step). checkpoint_every and log_every are rounded up to multiples of it.

Multi-worker: every worker restores the chief's latest checkpoint (model_dir must be
shared) and checks that all restored the same step; only the chief writes model_dir
(checkpoints, exports, TensorBoard, config, summary); the others save into temporary
directories that are removed (`distribute.WorkerTempCheckpoints`).

Extension points (each in one place): the loop function is built by
`distribute.make_train_function` (steps per loop, XLA); `_restore` decides what a
restart loads (fallbacks, config drift); `_check_finite` is the divergence guard; the
callbacks list is where host-side work at loop boundaries plugs in.
"""
import abc
import math
import os
import time

import gin
import keras
import tensorflow as tf
from absl import logging

from magnets_tf.training import callbacks as callbacks_lib
from magnets_tf.training import distribute
from magnets_tf.utils import files

OPERATIVE_CONFIG = "operative_config.gin"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "train_summary.json"

NonFiniteLossError = callbacks_lib.NonFiniteLossError


class TrainTask(abc.ABC):
    """What `run` trains. Attributes: `seed` (int: initial weights, masks, data order)
    and `global_batch_size` (int, or None when the data alone fixes it).

    `build` runs once under `strategy.scope()`; every other method after it.
    """

    seed = 0
    global_batch_size = None

    @abc.abstractmethod
    def build(self, strategy, train_steps):
        """Creates models and optimizers (schedules span `train_steps`)."""

    @property
    @abc.abstractmethod
    def iterations(self):
        """The int variable counting completed steps; it must be in `checkpoint_items`."""

    @abc.abstractmethod
    def checkpoint_items(self):
        """{name: list of variables (keyed by path) or a trackable} saved and restored."""

    @abc.abstractmethod
    def dataset(self, input_context, start_step):
        """This input pipeline's per-replica batches, starting with the batch that step
        `start_step` of an uninterrupted run consumes (a pure function of seed and step)."""

    @abc.abstractmethod
    def train_step(self, batch):
        """One update on this replica's batch (traced once); returns logs {name: scalar}
        identical on every replica, with "loss"."""

    @abc.abstractmethod
    def export(self, model_dir):
        """Writes the trained model for other tools (after every checkpoint)."""

    def guarded_variables(self):
        """Variables checked for NaN/Inf before every checkpoint."""
        return []

    def learning_rate(self, step):
        """The learning rate at `step` for TensorBoard, or None."""
        return None

    def hparams(self):
        """{name: bool/int/float/str} shown in TensorBoard's hparams plugin."""
        return {}

    def callbacks(self, writer, model_dir):
        """Extra periodic callbacks (sample grids, reconstruction images)."""
        return []


def variables_by_path(variables, owner):
    """{path: tf.Variable} so tf.train.Checkpoint tracks every (nested) variable.

    The leading path component (the object's auto-numbered name, e.g. "adam_w_2") is
    dropped so keys do not depend on how many objects a process created before.
    """
    table = {}
    for variable in variables:
        key = variable.path.split("/", 1)[-1]
        if key in table:
            raise ValueError(f"{owner} has two variables with path {key!r}")
        table[key] = variable.value if isinstance(variable, keras.Variable) else variable
    return table


def _checkpoint(task):
    items = {name: variables_by_path(item, name) if isinstance(item, (list, tuple)) else item
             for name, item in task.checkpoint_items().items()}
    return tf.train.Checkpoint(**items)


def _restore(checkpoint, manager, task):
    """Restores the latest checkpoint (if any) into the built task; returns its step."""
    latest = manager.latest_checkpoint
    if latest:
        try:
            checkpoint.restore(latest).assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            raise ValueError(f"checkpoint {latest} does not match this model/trainer "
                             f"configuration (changed preset, factors, codebook or data? use "
                             f"a new model_dir or the original config): {e}") from None
        print(f"Resumed from {latest} at step {int(task.iterations.numpy())}", flush=True)
    return int(task.iterations.numpy())


def _check_finite(logs, step, manager, first_step=None):
    """Stops the run on a non-finite loss, naming the checkpoint left untouched. With
    steps per loop, `logs` are the means over steps first_step..step."""
    if not math.isfinite(logs["loss"]):
        where = (f"at step {step}" if first_step in (None, step)
                 else f"in steps {first_step}-{step}")
        raise NonFiniteLossError(
            f"loss is {logs['loss']} {where}: training stopped. The last good "
            f"checkpoint ({manager.latest_checkpoint or 'none'}) was not overwritten; "
            f"lower the learning rate or check the data, then restart to resume")


def _write_config_summaries(writer, operative_config, hparams):
    from tensorboard.plugins.hparams import api as hp_api

    with writer.as_default(step=0):
        text = "\n".join("    " + line for line in operative_config.splitlines())
        tf.summary.text("config/operative_gin", text)
        hp_api.hparams(hparams)
    writer.flush()


def loop_period(every, steps_per_loop, name):
    """`every` rounded up to a multiple of steps_per_loop (periodic work runs at loop
    boundaries), with a message when it changes; 0 (never) stays 0."""
    every, steps_per_loop = int(every), int(steps_per_loop)
    if every < 0:
        raise ValueError(f"{name} must be >= 0, got {every}")
    rounded = -(-every // steps_per_loop) * steps_per_loop
    if rounded != every:
        message = (f"{name}={every} is not a multiple of steps_per_loop={steps_per_loop}: "
                   f"using {name}={rounded}")
        print(message, flush=True)
        logging.warning(message)
    return rounded


def loop_ends(start_step, train_steps, steps_per_loop):
    """The loop boundaries after start_step: the multiples of steps_per_loop, then
    train_steps (a resumed run realigns after a partial first loop)."""
    if start_step >= train_steps:
        return []
    first = (start_step // steps_per_loop + 1) * steps_per_loop
    return [*range(first, train_steps, steps_per_loop), train_steps]


def run(task, model_dir, strategy, train_steps, checkpoint_every=1000, keep_checkpoints=3,
        log_every=100, jit_compile="auto", progress=True, callbacks=(), steps_per_loop=1):
    """Trains `task` up to `train_steps` (resuming from `model_dir`); returns the summary.

    jit_compile: "auto" (`distribute.default_jit_compile`), True or False. Schedules span
    `train_steps`: keep it fixed across restarts of one run. steps_per_loop: steps per
    host sync (callbacks, the loss check and checkpoints at loop boundaries; the weights
    do not depend on it). `callbacks` are extra keras-style callbacks
    (`on_train_batch_end(step, logs)` at loop boundaries, with Python floats).
    """
    train_steps = int(train_steps)
    if train_steps <= 0:
        raise ValueError(f"train_steps must be positive, got {train_steps}")
    steps_per_loop = int(steps_per_loop)
    if steps_per_loop < 1:
        raise ValueError(f"steps_per_loop must be >= 1, got {steps_per_loop}")
    checkpoint_every = loop_period(checkpoint_every, steps_per_loop, "checkpoint_every")
    log_every = loop_period(log_every, steps_per_loop, "log_every")
    replicas = strategy.num_replicas_in_sync
    if task.global_batch_size is not None and task.global_batch_size % replicas:
        raise ValueError(f"batch_size={task.global_batch_size} is not divisible by the "
                         f"{replicas} replicas")
    chief = distribute.is_chief(strategy)
    if chief:
        os.makedirs(model_dir, exist_ok=True)
    if jit_compile == "auto":
        jit_compile = distribute.default_jit_compile(strategy)

    keras.utils.set_random_seed(task.seed)  # Same seed, same initial weights.
    with strategy.scope():
        task.build(strategy, train_steps)
    checkpoint = _checkpoint(task)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, CHECKPOINT_DIR),
                                         max_to_keep=int(keep_checkpoints))
    start_step = _restore(checkpoint, manager, task)
    distribute.check_workers_agree(strategy, start_step, "the restored step")
    saver = manager if chief else distribute.WorkerTempCheckpoints(
        checkpoint, manager, distribute.task_of(strategy)[1])

    operative = gin.operative_config_str()
    if chief:
        files.write_text(os.path.join(model_dir, OPERATIVE_CONFIG), operative)
    iterator = iter(distribute.distribute_dataset(
        strategy, lambda context: task.dataset(context, start_step)))
    train_function = distribute.make_train_function(task.train_step, strategy, jit_compile)

    writer = (tf.summary.create_file_writer(os.path.join(model_dir, TENSORBOARD_DIR))
              if chief else tf.summary.create_noop_writer())
    if start_step == 0 and chief:
        hparams = dict(task.hparams(), train_steps=train_steps, seed=task.seed,
                       strategy=type(strategy).__name__, jit_compile=bool(jit_compile),
                       steps_per_loop=steps_per_loop)
        _write_config_summaries(writer, operative, hparams)

    def export(step):
        if chief:
            task.export(model_dir)

    all_callbacks = [
        callbacks_lib.CheckpointSaver(saver, checkpoint_every, train_steps, export,
                                      task.guarded_variables()),
        callbacks_lib.ScalarSummaries(writer, log_every, task.learning_rate,
                                      task.global_batch_size),
        *(task.callbacks(writer, model_dir) if chief else []),
        callbacks_lib.ProgressLogger(train_steps, log_every, use_tqdm=progress and chief),
        *callbacks]
    for callback in all_callbacks:
        callback.on_train_begin({"start_step": start_step})
    logs = {}
    started = time.perf_counter()
    try:
        step = start_step
        for end in loop_ends(start_step, train_steps, steps_per_loop):
            logs = {k: float(v) for k, v in train_function(iterator, end - step).items()}
            _check_finite(logs, end, manager, first_step=step + 1)
            step = end
            for callback in all_callbacks:
                callback.on_train_batch_end(step, logs)
    finally:
        for callback in all_callbacks:
            callback.on_train_end(logs)
        writer.close()
    elapsed = time.perf_counter() - started
    if start_step >= train_steps:
        export(start_step)
    steps_done = max(train_steps - start_step, 0)
    summary = dict(start_step=start_step, final_step=int(task.iterations.numpy()),
                   logs=logs, seconds=elapsed,
                   steps_per_second=steps_done / elapsed if elapsed else 0.0)
    if chief:
        files.write_json(os.path.join(model_dir, SUMMARY_FILE), summary)
    return summary
