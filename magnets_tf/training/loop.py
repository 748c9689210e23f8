"""The one training loop: a `TrainTask` trained under a strategy, resumable, guarded.

`run(task, model_dir, strategy, train_steps)` serves every trainer of the package (the
nested transformer on token shards or in-memory clips, the image/video tokenizer). It
owns what they share; the task owns what differs (models, optimizers, the update, data).

State in `model_dir`:
  checkpoints/ckpt-<step>.*   the task's checkpoint items (tf.train.CheckpointManager,
                              `keep_checkpoints` kept); the step is `task.iterations`
  checkpoints/corrupt/, checkpoints/diverged/
                              checkpoints set aside (unreadable; taken after a divergence)
  operative_config.gin        the gin configuration that ran
  config_history/             earlier configurations a resumed run changed (`run_config`)
  run.lock                    the pid and host of the run using model_dir (`run_lock`)
  train/, eval/               TensorBoard runs: `train` the training scalars, the config
                              text and the task's images; `eval` periodic evaluation (the
                              task's); the events file in model_dir itself holds the hparams
                              (an hparams session named after model_dir, whose metric
                              groups are "train" and "eval": docs/training.md, Monitoring)
  train_summary.json          first and final step, train_steps, whether the run is
                              complete, why a leg stopped early, last logs, steps/s of
                              this run, and the summaries of earlier runs ("history")
  training_status.json        the step of the exported model and train_steps
                              (`run_state.write_training_status`)
  + whatever `task.export` writes at every checkpoint (e.g. the transformer's weights).

Resume: a restarted run restores the newest complete checkpoint, continues at its step
and asks the task for data starting at that step; tasks draw masks, dropout and data order
as functions of (seed, step), so a run killed with SIGKILL and restarted reaches the weights
of an uninterrupted run. Before anything is written the loop takes the model_dir lock,
sweeps the debris of killed writes and checks that the stored model and gin configuration
match the new run's (docs/reliability.md).

Legs (`stopping`): a run may be trained in several processes that keep train_steps
fixed. `stop_at_step`, `max_wall_minutes` and SIGTERM/SIGINT end one early at a loop
boundary, after a checkpoint and an export of that step (training_status.json marks the
export unfinished); a signal then raises `stopping.TrainingInterrupted`, the others return
the summary with "stopped". Re-running continues exactly where the leg stopped.

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
restart loads (newest complete checkpoint, config drift); `_check_finite` is the
divergence guard (`guard.DivergenceGuard`: non-finite or spiking loss, exploding
weights, checked before any callback so a diverged step is never saved); the callbacks
list is where host-side work at loop boundaries plugs in.
"""
import abc
import os
import time

import gin
import keras
import tensorflow as tf
from absl import logging

from magnets_tf.training import callbacks as callbacks_lib
from magnets_tf.training import (checkpoint_files, distribute, run_config, run_lock,
                                 run_state, stopping)
from magnets_tf.training import guard as guard_lib
from magnets_tf.utils import errors, files

OPERATIVE_CONFIG = "operative_config.gin"
CHECKPOINT_DIR = "checkpoints"
TRAIN_RUN = "train"  # TensorBoard run directories inside model_dir.
EVAL_RUN = "eval"
SUMMARY_FILE = "train_summary.json"

NonFiniteLossError = callbacks_lib.NonFiniteLossError
DivergenceError = guard_lib.DivergenceError


class CheckpointError(ValueError):
    """No checkpoint of model_dir can be restored into this task."""


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

    # Logs the divergence guard watches for spikes (NaN/Inf in "loss" always stops).
    divergence_keys = ("loss", "grad_norm")

    def guarded_variables(self):
        """Variables whose norm the divergence guard checks after every step."""
        return []

    def model_config(self):
        """(file name in model_dir, config dict) of the model, compared on resume; or None."""
        return None

    def explain_data_error(self, error):
        """An exception naming the bad input file behind a tf.data `error`, or None."""
        return None

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


def _restore(checkpoint, checkpoint_dir, task):
    """Restores the newest complete checkpoint (if any) into the built task; returns its
    step. Newer ones that cannot be read (truncated, corrupt) are set aside into
    `checkpoints/corrupt/` with a warning naming each; one that reads but does not fit
    the task is a configuration error (no fallback: the older ones would not fit either)."""
    skipped = []
    for prefix in checkpoint_files.checkpoints(checkpoint_dir):
        status = None
        try:
            status = checkpoint.restore(prefix)
            status.assert_consumed()
        except Exception as error:  # noqa: BLE001 (sorted below: corrupt or mismatched)
            if status is not None:
                status.expect_partial()  # No "unrestored values" warnings at exit.
            reason = checkpoint_files.readable(prefix)
            if reason is None:
                raise CheckpointError(
                    f"checkpoint {prefix} does not match this model/trainer configuration "
                    f"({errors.first_line(' '.join(str(error).split()))}): use the "
                    f"configuration it was trained with or a new model_dir") from None
            skipped.append((prefix, reason))
            continue
        for bad, reason in skipped:
            moved_to = checkpoint_files.set_aside(bad, "corrupt")
            logging.warning("skipped checkpoint %s: it cannot be read (%s); its files were "
                            "moved to %s", bad, reason, moved_to)
        if skipped:
            checkpoint_files.write_state(checkpoint_dir,
                                         checkpoint_files.checkpoints(checkpoint_dir))
        print(f"Resumed from {prefix} at step {int(task.iterations.numpy())}", flush=True)
        return int(task.iterations.numpy())
    if skipped:
        listed = "; ".join(f"{p} ({reason})" for p, reason in skipped)
        raise CheckpointError(f"no checkpoint in {checkpoint_dir} can be read: {listed}. "
                              f"Move them away to train from scratch")
    return int(task.iterations.numpy())


def _check_finite(logs, step, guard, weight_norm):
    """The divergence guard of one step (see `guard.DivergenceGuard`)."""
    guard.check(step, logs, weight_norm() if weight_norm else None)


def _agreed_stop(reason, any_worker):
    """`reason` (this process's) if any worker stops at this boundary (multi-worker: one
    collective, so all stop together), else None."""
    if any_worker(reason is not None):
        return reason or stopping.ANOTHER_WORKER
    return None


def run_name(model_dir):
    """The name a run goes by in TensorBoard's hparams table: model_dir's base name."""
    return os.path.basename(os.path.normpath(model_dir)) or model_dir


def hparam_value(value):
    """`value` as the hparams plugin takes it: bool/int/float/str as is, None as "None",
    sequences as "1,2,4,8", anything else as its str."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _write_config_summaries(model_dir, train_writer, operative_config, hparams):
    """The operative gin config as text in the train run, and the hparams session in
    model_dir itself (so the train and eval runs are its metric groups)."""
    from tensorboard.plugins.hparams import api as hp_api

    with train_writer.as_default(step=0):
        text = "\n".join("    " + line for line in operative_config.splitlines())
        tf.summary.text("config/operative_gin", text)
    train_writer.flush()
    session_writer = tf.summary.create_file_writer(model_dir)
    with session_writer.as_default(step=0):
        hp_api.hparams({k: hparam_value(v) for k, v in hparams.items()},
                       trial_id=run_name(model_dir))
    session_writer.close()


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


def loop_ends(start_step, train_steps, steps_per_loop, stop_at_step=None):
    """The loop boundaries after start_step: the multiples of steps_per_loop, then
    train_steps (a resumed run realigns after a partial first loop). A stop_at_step
    below train_steps is the last boundary instead."""
    last = train_steps if stop_at_step is None else min(int(stop_at_step), train_steps)
    if start_step >= last:
        return []
    first = (start_step // steps_per_loop + 1) * steps_per_loop
    return [*range(first, last, steps_per_loop), last]


def run(task, model_dir, strategy, train_steps, checkpoint_every=1000, keep_checkpoints=3,
        log_every=100, jit_compile="auto", progress=True, callbacks=(), steps_per_loop=1,
        allow_config_change=False, guard=None, stop_at_step=None, max_wall_minutes=None,
        handle_signals=True):
    """Trains `task` up to `train_steps` (resuming from `model_dir`); returns the summary.

    jit_compile: "auto" (`distribute.default_jit_compile`), True or False. Schedules span
    `train_steps`: keep it fixed across restarts of one run. steps_per_loop: steps per
    host sync (callbacks, the divergence guard and checkpoints at loop boundaries; the
    weights do not depend on it). `callbacks` are extra keras-style callbacks
    (`on_train_batch_end(step, logs)` at loop boundaries, with Python floats).
    allow_config_change: resume even if the model or gin settings differ from the stored
    ones (`run_config`). guard: a `guard.DivergenceGuard` (default: gin-configured).
    stop_at_step / max_wall_minutes: end this leg early at that step / at the first loop
    boundary after that many minutes, with a checkpoint (`stopping`; the summary's
    "stopped" says why). handle_signals: SIGTERM/SIGINT stop at the next boundary after a
    checkpoint and raise `stopping.TrainingInterrupted` (a second signal aborts).
    """
    # The wall-clock budget counts from here: restoring and tracing are part of the leg.
    policy = stopping.StopPolicy(stop_at_step, max_wall_minutes)
    chief = distribute.is_chief(strategy)
    if chief:
        files.check_writable_dir(model_dir, "model_dir")
    with stopping.SignalWatcher(enabled=handle_signals) as signals, \
            run_lock.RunLock(model_dir, is_chief=chief):
        policy.signals = signals
        if chief:
            files.sweep_debris(model_dir, keep=None, log=logging.warning)
        summary = _run(task, model_dir, strategy, train_steps, checkpoint_every,
                       keep_checkpoints, log_every, jit_compile, progress, callbacks,
                       steps_per_loop, allow_config_change, chief,
                       guard or guard_lib.DivergenceGuard(), policy)
        if signals.received is not None:  # Also when the run completed meanwhile.
            raise stopping.TrainingInterrupted(summary["stopped"]["message"],
                                               summary["final_step"], signals.received)
    return summary


def _run(task, model_dir, strategy, train_steps, checkpoint_every, keep_checkpoints,
         log_every, jit_compile, progress, callbacks, steps_per_loop, allow_config_change,
         chief, guard, policy):
    """`run` with model_dir locked (by the chief) and swept; `policy` says when a leg
    stops early (`stopping.StopPolicy`)."""
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
    if jit_compile == "auto":
        jit_compile = distribute.default_jit_compile(strategy)

    keras.utils.set_random_seed(task.seed)  # Same seed, same initial weights.
    with strategy.scope():
        task.build(strategy, train_steps)
    checkpoint = _checkpoint(task)
    checkpoint_dir = os.path.join(model_dir, CHECKPOINT_DIR)
    operative = gin.operative_config_str()
    if chief or not allow_config_change:  # Only the chief keeps config history.
        newest = checkpoint_files.checkpoints(checkpoint_dir)
        run_config.check_resume(model_dir, operative, task.model_config(),
                                allow_config_change,
                                checkpoint_files.step_of(newest[0]) if newest else 0)
    start_step = _restore(checkpoint, checkpoint_dir, task)
    distribute.check_workers_agree(strategy, start_step, "the restored step")
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir,
                                         max_to_keep=int(keep_checkpoints))
    saver = manager if chief else distribute.WorkerTempCheckpoints(
        checkpoint, manager, distribute.task_of(strategy)[1])

    if chief:
        run_state.write_text_if_changed(os.path.join(model_dir, OPERATIVE_CONFIG), operative)
    iterator = iter(distribute.distribute_dataset(
        strategy, lambda context: task.dataset(context, start_step)))
    train_function = distribute.make_train_function(task.train_step, strategy, jit_compile)

    writer = (tf.summary.create_file_writer(os.path.join(model_dir, TRAIN_RUN))
              if chief else tf.summary.create_noop_writer())
    if start_step == 0 and chief:
        hparams = dict(task.hparams(), train_steps=train_steps, seed=task.seed,
                       strategy=type(strategy).__name__, jit_compile=bool(jit_compile),
                       steps_per_loop=steps_per_loop, log_every=log_every,
                       checkpoint_every=checkpoint_every)
        _write_config_summaries(model_dir, writer, operative, hparams)

    def export(step):
        if chief:
            task.export(model_dir)
            run_state.write_training_status(model_dir, step, train_steps)

    weight_norm = guard_lib.weight_norm_function(task.guarded_variables())
    guard.start(weight_norm() if weight_norm else None, task.divergence_keys)
    checkpoint_saver = callbacks_lib.CheckpointSaver(
        saver, checkpoint_every, train_steps, export,
        before_save=lambda step: guard.check_saved(step, weight_norm and weight_norm()))
    any_worker = distribute.make_any_worker(strategy)
    all_callbacks = [
        checkpoint_saver,
        callbacks_lib.ScalarSummaries(writer, log_every, train_steps, task.learning_rate,
                                      task.global_batch_size),
        *(task.callbacks(writer, model_dir) if chief else []),
        callbacks_lib.ProgressLogger(train_steps, log_every, use_tqdm=progress and chief),
        *callbacks]
    for callback in all_callbacks:
        callback.on_train_begin({"start_step": start_step})
    logs = {}
    started = time.perf_counter()
    step, reason = start_step, None
    try:
        for end in loop_ends(start_step, train_steps, steps_per_loop, policy.stop_at_step):
            try:
                logs = {k: float(v) for k, v in train_function(iterator, end - step).items()}
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
                raise (task.explain_data_error(error) or error) from None
            _check_finite(logs, end, guard, weight_norm)
            step = end
            for callback in all_callbacks:
                callback.on_train_batch_end(step, logs)
            if step < train_steps:
                reason = _agreed_stop(policy.reason(step), any_worker)
                if reason:
                    checkpoint_saver.save(step)
                    break
    except DivergenceError as error:
        def restore_and_export(prefix):
            checkpoint.restore(prefix).expect_partial()
            if chief:
                task.export(model_dir)
                run_state.write_training_status(
                    model_dir, checkpoint_files.step_of(prefix), train_steps)

        raise run_state.after_divergence(error, checkpoint_dir, restore_and_export) from None
    finally:
        for callback in all_callbacks:
            callback.on_train_end(logs)
        writer.close()
    elapsed = time.perf_counter() - started
    if step == start_step and start_step > 0:
        export(start_step)  # Nothing to train: the export matches the newest checkpoint.
    final_step = int(task.iterations.numpy())
    if reason is None and (final_step < train_steps or policy.signal_received() is not None):
        # A leg that began at or past its stop step, or a signal after the last boundary.
        reason = policy.reason(final_step)
    stopped = None
    if reason:
        why = policy.describe(reason)
        prefix = os.path.join(checkpoint_dir, f"ckpt-{final_step}")
        stopped = dict(reason=reason, step=final_step, message=stopping.stop_message(
            final_step, train_steps, why, prefix if final_step < train_steps else None))
        if policy.signal_received() is None:
            print(stopped["message"], flush=True)
    summary = dict(start_step=start_step, final_step=final_step, train_steps=train_steps,
                   complete=final_step >= train_steps, stopped=stopped, logs=logs,
                   seconds=elapsed,
                   steps_per_second=(final_step - start_step) / elapsed if elapsed else 0.0)
    if chief:
        summary_path = os.path.join(model_dir, SUMMARY_FILE)
        files.write_json(summary_path, run_state.summary_with_history(summary_path, summary))
    return summary
