"""The nested transformer as a `loop.TrainTask`, and `train`: tools/train.py's entry.

`TransformerTask` builds a `MaskGitTransformer` for its token source (`token_data`:
vocabulary, grid, condition tokens), the optimizer of `make_optimizer` and the
`NestedMaskGitTrainer` whose `train_step` is paper eq. 3 (masks and dropout are functions
of (seed, step)). It exports the transformer (`models.saving`) at every checkpoint and
can show sample grids of every nested sub-model. Image generation, class-conditional
video generation and frame prediction are all this task: the token source's grid ([h, w]
or [t, h, w]) and num_condition_tokens (video shards record theirs) decide which.
Video previews are strips of real clips and the clips generated for (or continuing) them.
"""
import math
import os

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from magnets_tf.models import presets, saving
from magnets_tf.models.presets import build_transformer
from magnets_tf.training import callbacks as callbacks_lib
from magnets_tf.training import held_out, loop, run_config, token_data, trainer as trainer_lib
from magnets_tf.training.optimizer import make_optimizer

DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def _tokenizer_decode_fn(tokenizer_dir):
    """decode(tokens [B, *grid]) -> images or clips with the tokenizer of the shards, if
    loadable."""
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


class TransformerTask(loop.TrainTask):
    """Trains a nested MaskGIT transformer on `tokens` (`TokenShards` or `TokenArrays`).

    global_batch_size is split over replicas. sample_every > 0 writes sample grids of
    every nested sub-model (`num_samples` class-conditional samples, `sample_steps`
    decoding steps) to TensorBoard and model_dir/samples. eval_every > 0 scores every
    sub-model on `eval_tokens` (a held-out token source; `eval_batches` batches of
    `eval_batch_size`) into the `eval` run (`held_out.HeldOutEvaluation`). dtype_policy: the
    transformer's Keras dtype policy (`DTYPE_POLICIES`; variables stay float32, losses
    and logits float32; mixed_float16 adds dynamic loss scaling).
    """

    def __init__(self, tokens, global_batch_size, seed=0, sample_every=0, num_samples=8,
                 sample_steps=8, dtype_policy="float32", eval_tokens=None, eval_every=0,
                 eval_batch_size=64, eval_batches=2):
        if dtype_policy not in DTYPE_POLICIES:
            raise ValueError(f"unknown dtype_policy {dtype_policy!r}; known: {DTYPE_POLICIES}")
        self.dtype_policy = dtype_policy
        self.tokens = tokens
        self.global_batch_size = run_config.require_int("batch_size", global_batch_size, 1)
        self.seed = run_config.require_int("seed", seed)
        self.sample_every = run_config.require_int("sample_every", sample_every, 0)
        self.num_samples = run_config.require_int("num_samples", num_samples, 1)
        self.sample_steps = run_config.require_int("sample_steps", sample_steps, 1)
        self.eval_tokens = eval_tokens
        self.eval_every = run_config.require_int("eval_every", eval_every, 0)
        self.eval_batch_size = run_config.require_int("eval_batch_size", eval_batch_size, 1)
        self.eval_batches = run_config.require_int("eval_batches", eval_batches, 1)
        if self.eval_every and eval_tokens is None:
            raise ValueError(f"eval_every={eval_every} needs held-out tokens (eval_tokens_dir)")
        if eval_tokens is not None and eval_tokens.layout() != tokens.layout():
            raise ValueError(f"the held-out tokens {eval_tokens.layout()} do not match the "
                             f"training tokens {tokens.layout()}: tokenize both splits with "
                             f"the same tokenizer and settings")

    def build(self, strategy, train_steps):
        self.train_steps = int(train_steps)
        self.transformer = build_transformer(
            codebook_size=self.tokens.codebook_size, num_classes=self.tokens.num_classes,
            num_tokens=math.prod(self.tokens.grid),
            num_condition_tokens=self.tokens.num_condition_tokens, dtype=self.dtype_policy)
        self.optimizer = make_optimizer(total_steps=train_steps)
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range.
        update_optimizer = (keras.optimizers.LossScaleOptimizer(self.optimizer)
                            if self.dtype_policy == "mixed_float16" else self.optimizer)
        self.trainer = trainer_lib.NestedMaskGitTrainer(
            self.transformer, global_batch_size=self.global_batch_size, seed=self.seed,
            total_steps=train_steps)
        self.trainer.compile(optimizer=update_optimizer, jit_compile=False)
        update_optimizer.build(self.transformer.trainable_variables)

    @property
    def iterations(self):
        return self.optimizer.iterations

    def checkpoint_items(self):
        return dict(model=self.transformer.weights, optimizer=self.optimizer.variables)

    def dataset(self, input_context, start_step):
        return token_data.replica_batches(self.tokens, self.global_batch_size, self.seed,
                                          input_context, start_step)

    def train_step(self, batch):
        return self.trainer.train_step(batch)

    def export(self, model_dir):
        saving.save_transformer(self.transformer, model_dir)

    @property
    def divergence_keys(self):
        # Under mixed_float16 an overflowing gradient is routine (the loss scale halves
        # and the update is skipped): its Inf grad_norm is no divergence.
        return ("loss",) if self.dtype_policy == "mixed_float16" else ("loss", "grad_norm")

    def guarded_variables(self):
        return self.transformer.trainable_variables

    def model_config(self):
        return saving.TRANSFORMER_CONFIG, self.transformer.get_config()

    def explain_data_error(self, error):
        explain = getattr(self.tokens, "explain_data_error", None)
        return explain(error) if explain else None

    def learning_rate(self, step):
        return self.optimizer.schedule(step)

    def hparams(self):
        """The run's true settings: the preset as configured (its architecture fields
        beside it, so overrides show), "maskgit++" for the baseline (only the full model,
        ground-truth loss), alpha_decay_steps as configured ("None": the whole run)."""
        trainer, config = self.trainer, self.transformer.get_config()
        schedule = self.optimizer.schedule
        return dict(model="maskgit++" if trainer.is_baseline else "magnets",
                    preset=presets.preset_of(self.transformer),
                    **{key: config[key] for key in ("num_layers", "hidden_size", "num_heads",
                                                    "mlp_dim", "dropout")},
                    batch_size=self.global_batch_size, dtype_policy=self.dtype_policy,
                    factors=trainer.factors, loss_mode=trainer.effective_loss_mode,
                    alpha_decay_steps=("unused" if trainer.is_baseline
                                       else trainer.alpha_decay_steps_setting),
                    label_smoothing=trainer.label_smoothing,
                    peak_learning_rate=schedule.peak_learning_rate,
                    warmup_steps=schedule.warmup_steps, decay=schedule.decay,
                    weight_decay=float(self.optimizer.weight_decay or 0.0))

    def callbacks(self, writer, model_dir):
        found = []
        if self.eval_every:
            eval_writer = tf.summary.create_file_writer(os.path.join(model_dir, loop.EVAL_RUN))
            found.append(held_out.HeldOutEvaluation(
                self.transformer, self.trainer.factors, self.eval_tokens, eval_writer,
                self.eval_every, self.train_steps, self.eval_batch_size,
                self.eval_batches, seed=self.seed))
        if not self.sample_every:
            return found
        transformer = self.transformer
        num_classes = transformer.num_classes
        class_ids = (np.arange(self.num_samples) % num_classes if num_classes
                     else np.full(self.num_samples, transformer.null_class_id))
        real_tokens = None
        if len(self.tokens.grid) == 3 or transformer.num_condition_tokens:
            # Video: real clips beside the samples (their conditions, their classes).
            real = next(iter(self.tokens.dataset(self.num_samples, self.seed)))
            real_tokens = real["tokens"].numpy()
            if num_classes:
                class_ids = real["label"].numpy()
        return [*found, callbacks_lib.SampleGrids(
            transformer, writer, self.sample_every, os.path.join(model_dir, "samples"),
            self.trainer.factors, class_ids, self.tokens.grid,
            num_steps=min(self.sample_steps,
                          transformer.num_tokens - transformer.num_condition_tokens),
            decode_fn=_tokenizer_decode_fn(self.tokens.tokenizer_dir), seed=self.seed,
            real_tokens=real_tokens)]


@gin.configurable(denylist=["model_dir", "strategy", "train_steps"])
def train(model_dir, strategy, train_steps, tokens_dir=gin.REQUIRED, batch_size=256, seed=0,
          checkpoint_every=1000, keep_checkpoints=3, log_every=100, sample_every=0,
          num_samples=8, sample_steps=8, jit_compile="auto", steps_per_loop=1, progress=True,
          extra_callbacks=(), dtype_policy="float32", allow_config_change=False,
          eval_tokens_dir=None, eval_every=0, eval_batch_size=64, eval_batches=2,
          stop_at_step=None, max_wall_minutes=None):
    """Trains the nested transformer on the token shards in `tokens_dir` (`loop.run`):
    image or video shards; video shards written for frame prediction train a
    frame-prediction transformer (their metadata's num_condition_tokens).

    batch_size is the global batch (split over replicas). steps_per_loop steps run per
    host sync (checkpoint_every, log_every and eval_every are rounded up to multiples of
    it). jit_compile: "auto", True or False (XLA for the per-replica step). dtype_policy:
    "float32", "mixed_bfloat16" or "mixed_float16" (see `TransformerTask`; recorded in the
    exported transformer_config.json). eval_every > 0: every eval_every steps (and at the
    last) the held-out token shards in `eval_tokens_dir` (e.g. the test split of
    tools/tokenize_dataset.py) are scored into the `eval` TensorBoard run
    (`held_out.HeldOutEvaluation`: eval_batches x eval_batch_size examples).
    allow_config_change: resume a model_dir whose stored model or gin settings differ
    (`run_config`). stop_at_step / max_wall_minutes end this leg of the run early, with a
    checkpoint (`loop.run`, `stopping`; train_steps stays the run's length). Returns the
    run's summary.
    """
    settings = {name: run_config.require_int(f"train.{name}", value, minimum)
                for name, value, minimum in (
                    ("batch_size", batch_size, 1), ("seed", seed, None),
                    ("checkpoint_every", checkpoint_every, 0),
                    ("keep_checkpoints", keep_checkpoints, 1), ("log_every", log_every, 1),
                    ("sample_every", sample_every, 0), ("num_samples", num_samples, 1),
                    ("sample_steps", sample_steps, 1), ("steps_per_loop", steps_per_loop, 1),
                    ("eval_every", eval_every, 0), ("eval_batch_size", eval_batch_size, 1),
                    ("eval_batches", eval_batches, 1))}
    if stop_at_step is not None:
        stop_at_step = run_config.require_int("train.stop_at_step", stop_at_step, 1)
    if settings["eval_every"] and not eval_tokens_dir:
        raise ValueError(f"train.eval_every={eval_every} needs train.eval_tokens_dir (held-out "
                         f"token shards, e.g. the test split of tools/tokenize_dataset.py)")
    eval_tokens = token_data.TokenShards(eval_tokens_dir) if settings["eval_every"] else None
    task = TransformerTask(token_data.TokenShards(tokens_dir), settings["batch_size"],
                           seed=settings["seed"], sample_every=settings["sample_every"],
                           num_samples=settings["num_samples"],
                           sample_steps=settings["sample_steps"], dtype_policy=dtype_policy,
                           eval_tokens=eval_tokens,
                           eval_every=loop.loop_period(settings["eval_every"],
                                                       settings["steps_per_loop"],
                                                       "eval_every"),
                           eval_batch_size=settings["eval_batch_size"],
                           eval_batches=settings["eval_batches"])
    return loop.run(task, model_dir, strategy, train_steps,
                    checkpoint_every=settings["checkpoint_every"],
                    keep_checkpoints=settings["keep_checkpoints"],
                    log_every=settings["log_every"], jit_compile=jit_compile,
                    progress=progress, callbacks=extra_callbacks,
                    steps_per_loop=settings["steps_per_loop"],
                    allow_config_change=bool(allow_config_change), stop_at_step=stop_at_step,
                    max_wall_minutes=max_wall_minutes)
