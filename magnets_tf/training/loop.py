"""The training loop behind tools/train.py: build under the strategy, resume, train, save.

State lives in `model_dir`:
  checkpoints/ckpt-<step>.*   model + optimizer variables (tf.train.CheckpointManager,
                              `keep_checkpoints` kept); the step counter is the
                              optimizer's iteration count
  transformer_config.json + transformer.weights.h5   the transformer for decoding/export
  operative_config.gin        the gin configuration that ran
  tensorboard/                scalars, sample grids, config text, hparams
  samples/                    PNG sample grids of every nested sub-model
A restarted run restores the latest checkpoint and continues at its step; masks, dropout
and data order are functions of (seed, step), so it reaches the weights of an
uninterrupted run.
"""
import math
import os
import time

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from magnets_tf.data import tokenized
from magnets_tf.models import saving
from magnets_tf.models.presets import build_transformer
from magnets_tf.training import callbacks as callbacks_lib
from magnets_tf.training import distribute, trainer as trainer_lib
from magnets_tf.training.optimizer import make_optimizer
from magnets_tf.utils import files


OPERATIVE_CONFIG = "operative_config.gin"
CHECKPOINT_DIR = "checkpoints"


NonFiniteLossError = callbacks_lib.NonFiniteLossError

def _variables_by_path(variables, owner):
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


def _tokenizer_decode_fn(tokenizer_dir):
    """decode(tokens [B, h, w]) -> images with the tokenizer of the shards, if loadable."""
    if not tokenizer_dir or not os.path.isdir(tokenizer_dir):
        logging.info("no tokenizer at %r: sample previews show token maps", tokenizer_dir)
        return None
    try:
        tokenizer = saving.load_tokenizer(tokenizer_dir)
    except saving.ModelFileError as e:
        logging.warning("cannot load tokenizer %s (%s): sample previews show token maps",
                        tokenizer_dir, e)
        return None
    return lambda tokens: tokenizer.decode(tf.constant(tokens, tf.int32)).numpy()


def _write_config_summaries(writer, operative_config, hparams):
    from tensorboard.plugins.hparams import api as hp_api

    with writer.as_default(step=0):
        text = "\n".join("    " + line for line in operative_config.splitlines())
        tf.summary.text("config/operative_gin", text)
        hp_api.hparams(hparams)
    writer.flush()


@gin.configurable(denylist=["model_dir", "strategy", "train_steps"])
def train(model_dir, strategy, train_steps, tokens_dir=gin.REQUIRED, batch_size=256, seed=0,
          checkpoint_every=1000, keep_checkpoints=3, log_every=100, sample_every=0,
          num_samples=8, sample_steps=8, jit_compile="auto", progress=True,
          extra_callbacks=()):
    """Trains the nested transformer on token shards; returns a summary dict.

    batch_size is the global batch (split over replicas). jit_compile: "auto" (XLA where
    it works, see distribute.default_jit_compile), True or False. Schedules (alpha, lr)
    span `train_steps`: keep it fixed across restarts of one run.
    """
    train_steps = int(train_steps)
    if train_steps <= 0:
        raise ValueError(f"train_steps must be positive, got {train_steps}")
    if batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"batch_size={batch_size} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas")
    os.makedirs(model_dir, exist_ok=True)
    metadata = tokenized.read_metadata(tokens_dir)
    grid = tuple(metadata["grid"])
    if jit_compile == "auto":
        jit_compile = distribute.default_jit_compile(strategy)

    keras.utils.set_random_seed(seed)  # Same seed, same initial weights.
    with strategy.scope():
        transformer = build_transformer(codebook_size=metadata["codebook_size"],
                                        num_classes=metadata["num_classes"],
                                        num_tokens=grid[0] * grid[1])
        optimizer = make_optimizer(total_steps=train_steps)
        trainer = trainer_lib.NestedMaskGitTrainer(transformer, global_batch_size=batch_size,
                                                   seed=seed, total_steps=train_steps)
        trainer.compile(optimizer=optimizer, jit_compile=False)
        optimizer.build(transformer.trainable_variables)
    checkpoint = tf.train.Checkpoint(
        model=_variables_by_path(transformer.weights, "transformer"),
        optimizer=_variables_by_path(optimizer.variables, "optimizer"))
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, CHECKPOINT_DIR),
                                         max_to_keep=int(keep_checkpoints))
    if manager.latest_checkpoint:
        try:
            checkpoint.restore(manager.latest_checkpoint).assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            raise ValueError(f"cannot restore {manager.latest_checkpoint} into this "
                             f"configuration (changed preset/factors/data?): {e}") from None
        print(f"Resumed from {manager.latest_checkpoint} at step "
              f"{int(optimizer.iterations.numpy())}", flush=True)
    start_step = int(optimizer.iterations.numpy())

    operative = gin.operative_config_str()
    files.write_text(os.path.join(model_dir, OPERATIVE_CONFIG), operative)

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(batch_size)
        replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        return tokenized.token_dataset(
            tokens_dir, per_replica, shuffle=True, repeat=True, seed=seed,
            expected_codebook_size=transformer.codebook_size, expected_grid=grid,
            input_context=context,
            skip_examples=start_step * per_replica * replicas_per_pipeline)

    iterator = iter(distribute.distribute_dataset(strategy, dataset_fn))
    train_function = trainer_lib.make_train_function(trainer, strategy, jit_compile)

    writer = tf.summary.create_file_writer(os.path.join(model_dir, "tensorboard"))
    hparams = dict(preset=transformer.name, batch_size=batch_size, train_steps=train_steps,
                   factors=",".join(map(str, trainer.factors)), loss_mode=trainer.loss_mode,
                   alpha_decay_steps=trainer.alpha_decay_steps,
                   label_smoothing=trainer.label_smoothing, seed=seed,
                   peak_learning_rate=optimizer.schedule.peak_learning_rate,
                   strategy=type(strategy).__name__, jit_compile=bool(jit_compile))
    if start_step == 0:
        _write_config_summaries(writer, operative, hparams)

    def export(step):
        saving.save_transformer(transformer, model_dir)

    scalars = callbacks_lib.ScalarSummaries(
        writer, log_every, optimizer.schedule, batch_size)
    callbacks = [callbacks_lib.CheckpointSaver(manager, checkpoint_every, train_steps, export,
                                               transformer.trainable_variables),
                 scalars]
    if sample_every:
        num_classes = transformer.num_classes
        class_ids = (np.arange(num_samples) % num_classes if num_classes
                     else np.full(num_samples, transformer.null_class_id))
        callbacks.append(callbacks_lib.SampleGrids(
            transformer, writer, sample_every, os.path.join(model_dir, "samples"),
            trainer.factors, class_ids, grid,
            num_steps=min(sample_steps, transformer.num_tokens),
            decode_fn=_tokenizer_decode_fn(metadata["tokenizer"]), seed=seed))
    callbacks.append(callbacks_lib.ProgressLogger(train_steps, log_every, use_tqdm=progress))
    callbacks.extend(extra_callbacks)

    begin = {"start_step": start_step}
    for callback in callbacks:
        callback.on_train_begin(begin)
    logs = {}
    started = time.perf_counter()
    try:
        for step in range(start_step + 1, train_steps + 1):
            logs = {k: float(v) for k, v in train_function(iterator).items()}
            if not math.isfinite(logs["loss"]):
                raise NonFiniteLossError(
                    f"loss is {logs['loss']} at step {step}: training stopped. The last good "
                    f"checkpoint ({manager.latest_checkpoint or 'none'}) was not overwritten; "
                    f"lower the learning rate or check the data, then restart to resume")
            for callback in callbacks:
                callback.on_train_batch_end(step, logs)
    finally:
        for callback in callbacks:
            callback.on_train_end(logs)
        writer.close()
    elapsed = time.perf_counter() - started
    if start_step >= train_steps:
        export(start_step)
    steps_done = max(train_steps - start_step, 0)
    summary = dict(start_step=start_step, final_step=int(optimizer.iterations.numpy()),
                   logs=logs, seconds=elapsed,
                   steps_per_second=steps_done / elapsed if elapsed else 0.0)
    files.write_json(os.path.join(model_dir, "train_summary.json"), summary)
    return summary
