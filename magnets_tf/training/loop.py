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

Extension points (each in one place): the per-step function is built by
`distribute.make_train_function` (steps per loop, XLA); `_restore` decides what a
restart loads (fallbacks, config drift); `_check_finite` is the divergence guard; the
callbacks list is where host-side work at step boundaries plugs in.
"""
import abc
import math
import os
import time

import gin
import keras
import tensorflow as tf

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


def _check_finite(logs, step, manager):
    """Stops the run on a non-finite loss, naming the checkpoint left untouched."""
    if not math.isfinite(logs["loss"]):
        raise NonFiniteLossError(
            f"loss is {logs['loss']} at step {step}: training stopped. The last good "
            f"checkpoint ({manager.latest_checkpoint or 'none'}) was not overwritten; "
            f"lower the learning rate or check the data, then restart to resume")


def _write_config_summaries(writer, operative_config, hparams):
    from tensorboard.plugins.hparams import api as hp_api

    with writer.as_default(step=0):
        text = "\n".join("    " + line for line in operative_config.splitlines())
        tf.summary.text("config/operative_gin", text)
        hp_api.hparams(hparams)
    writer.flush()


def run(task, model_dir, strategy, train_steps, checkpoint_every=1000, keep_checkpoints=3,
        log_every=100, jit_compile="auto", progress=True, callbacks=()):
    """Trains `task` up to `train_steps` (resuming from `model_dir`); returns the summary.

    jit_compile: "auto" (`distribute.default_jit_compile`), True or False. Schedules span
    `train_steps`: keep it fixed across restarts of one run. `callbacks` are extra
    keras-style callbacks (`on_train_batch_end(step, logs)` with Python floats).
    """
    train_steps = int(train_steps)
    if train_steps <= 0:
        raise ValueError(f"train_steps must be positive, got {train_steps}")
    replicas = strategy.num_replicas_in_sync
    if task.global_batch_size is not None and task.global_batch_size % replicas:
        raise ValueError(f"batch_size={task.global_batch_size} is not divisible by the "
                         f"{replicas} replicas")
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

    operative = gin.operative_config_str()
    files.write_text(os.path.join(model_dir, OPERATIVE_CONFIG), operative)
    iterator = iter(distribute.distribute_dataset(
        strategy, lambda context: task.dataset(context, start_step)))
    train_function = distribute.make_train_function(task.train_step, strategy, jit_compile)

    writer = tf.summary.create_file_writer(os.path.join(model_dir, TENSORBOARD_DIR))
    if start_step == 0:
        hparams = dict(task.hparams(), train_steps=train_steps, seed=task.seed,
                       strategy=type(strategy).__name__, jit_compile=bool(jit_compile))
        _write_config_summaries(writer, operative, hparams)

    def export(step):
        task.export(model_dir)

    all_callbacks = [
        callbacks_lib.CheckpointSaver(manager, checkpoint_every, train_steps, export,
                                      task.guarded_variables()),
        callbacks_lib.ScalarSummaries(writer, log_every, task.learning_rate,
                                      task.global_batch_size),
        *task.callbacks(writer, model_dir),
        callbacks_lib.ProgressLogger(train_steps, log_every, use_tqdm=progress),
        *callbacks]
    for callback in all_callbacks:
        callback.on_train_begin({"start_step": start_step})
    logs = {}
    started = time.perf_counter()
    try:
        for step in range(start_step + 1, train_steps + 1):
            logs = {k: float(v) for k, v in train_function(iterator).items()}
            _check_finite(logs, step, manager)
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
    files.write_json(os.path.join(model_dir, SUMMARY_FILE), summary)
    return summary
