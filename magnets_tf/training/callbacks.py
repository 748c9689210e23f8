"""Training callbacks (keras.callbacks.Callback API, driven by `loop.run`).

The loop calls `on_train_batch_end(step, logs)` at loop boundaries: after every
`steps_per_loop` steps (and after the last step), with the number of completed steps and
the global (replica-reduced) logs as Python floats: the means over the loop's steps.
Periodic work (`LoopCallback.due`) happens at the first boundary at or after each
multiple of its period, which is the multiple itself when the period is a multiple of
steps_per_loop (the loop rounds its own periods so).
"""
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from magnets_tf.training import preview
from magnets_tf.utils import images as images_lib


_PER_MODEL = re.compile(r"(.+)_p\d+$")  # "loss_p4" -> group "loss"


class NonFiniteLossError(RuntimeError):
    """Training diverged (NaN/Inf or exploding loss or weights); nothing of the diverged
    step was saved."""


class LoopCallback(keras.callbacks.Callback):
    """A callback called at loop boundaries. Subclasses implement
    `on_loop_end(step, logs)`; `previous_step` is the previous boundary (or the start
    step) and `due(step, every)` tells whether a multiple of `every` was reached since."""

    previous_step = 0

    def on_train_begin(self, logs=None):
        self.previous_step = int((logs or {}).get("start_step", 0))

    def due(self, step, every):
        return bool(every) and step // every > self.previous_step // every

    def on_train_batch_end(self, step, logs=None):
        try:
            self.on_loop_end(step, logs or {})
        finally:
            self.previous_step = step

    def on_loop_end(self, step, logs):
        """Work at the boundary after `step` completed steps."""


class ProgressLogger(LoopCallback):
    """tqdm progress bar plus an absl log line every `log_every` steps."""

    def __init__(self, total_steps, log_every=100, use_tqdm=True):
        super().__init__()
        self.total_steps = int(total_steps)
        self.log_every = int(log_every)
        self.use_tqdm = use_tqdm
        self._bar = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.use_tqdm:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total_steps, initial=self.previous_step, unit="step",
                             dynamic_ncols=True)

    def on_loop_end(self, step, logs):
        report = self.due(step, self.log_every) or step == self.total_steps
        if self._bar is not None:
            self._bar.update(step - self.previous_step)
            if report:
                self._bar.set_postfix({k: f"{logs[k]:.4g}" for k in ("loss", "alpha")
                                       if k in logs})
        if report:
            text = " ".join(f"{k}={v:.4g}" for k, v in sorted(logs.items()))
            logging.info("step %d/%d %s", step, self.total_steps, text)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()


class ScalarSummaries(LoopCallback):
    """TensorBoard scalars: every log (per-model ones "x_p<factor>" grouped under "x/"),
    the learning rate and throughput (steps/s; examples/s needs `global_batch_size`).
    learning_rate_fn(step) may return None. Written at the first boundary of every run
    (fresh or resumed: a curve starts where the run starts), every `log_every` steps and
    at the last step `total_steps`, so even a run shorter than log_every has points. With
    steps_per_loop > 1 the logs are the means over the last loop. Throughput is measured
    between written points, from the first one on (its own window would hold the tracing
    and compilation of the step function)."""

    def __init__(self, writer, log_every, total_steps, learning_rate_fn, global_batch_size):
        super().__init__()
        self.writer = writer
        self.log_every = int(log_every)
        self.total_steps = int(total_steps)
        self.learning_rate_fn = learning_rate_fn
        self.global_batch_size = global_batch_size
        self._last = None
        self._start_step = 0
        self.last_steps_per_second = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._start_step = self.previous_step
        self._last = None

    def due_now(self, step):
        """Whether `step` (a loop boundary) gets scalars."""
        return (self.previous_step == self._start_step or self.due(step, self.log_every)
                or step == self.total_steps)

    def on_loop_end(self, step, logs):
        if not self.due_now(step):
            return
        now = time.perf_counter()
        last, self._last = self._last, (step, now)
        with self.writer.as_default(step=step):
            for key, value in logs.items():
                nested = _PER_MODEL.match(key)
                tf.summary.scalar(f"{nested.group(1)}/{key}" if nested else key, value)
            learning_rate = self.learning_rate_fn(step)
            if learning_rate is not None:
                tf.summary.scalar("learning_rate", float(learning_rate))
            if last is not None and step > last[0]:
                steps_per_second = (step - last[0]) / max(now - last[1], 1e-9)
                self.last_steps_per_second = steps_per_second
                tf.summary.scalar("throughput/steps_per_second", steps_per_second)
                if self.global_batch_size:
                    tf.summary.scalar("throughput/examples_per_second",
                                      steps_per_second * self.global_batch_size)
        self.writer.flush()


class CheckpointSaver(LoopCallback):
    """Saves the training state every `every` steps and at the end; `on_save(step)` after.

    The loop's divergence guard runs before callbacks; `before_save(step)` runs again just
    before each save and raises to refuse it (the loop passes the guard's weight check), so
    diverged weights are never written.
    """

    def __init__(self, manager, every, total_steps, on_save=None, before_save=None):
        super().__init__()
        self.before_save = before_save
        self.manager = manager
        self.every = int(every)
        self.total_steps = int(total_steps)
        self.on_save = on_save
        self.last_saved_step = None

    def on_loop_end(self, step, logs):
        if self.due(step, self.every) or step == self.total_steps:
            self.save(step)

    def save(self, step):
        """Saves the state of `step` (completed steps) unless it was saved already; the
        loop calls it directly when a leg stops between periodic checkpoints. Returns
        the checkpoint's prefix."""
        if step != self.last_saved_step:
            if self.before_save is not None:
                self.before_save(step)
            self.manager.save(checkpoint_number=step)
            self.last_saved_step = step
            if self.on_save is not None:
                self.on_save(step)
        return self.manager.latest_checkpoint


class SampleGrids(LoopCallback):
    """Every `every` steps: samples from each nested sub-model to TensorBoard and PNGs.

    Sub-model p decodes alone with `preview.preview_decoder` (the production decoder on
    a one-factor plan of `num_steps` steps; one decoder per factor, built at first use).
    decode_fn(tokens [B, *grid_shape]) -> images [B, H, W, C] or clips [B, T, H, W, C] in
    [0, 1] (the tokenizer); without it token-id maps are shown.

    Video (a [t, h, w] grid_shape): each PNG is a strip, one clip per row with its frames
    left to right. real_tokens (int [S, N], the tokens of S real clips, S = len(class_ids))
    are shown too, each real clip (its tokens decoded) in the row above the clip generated
    for it; a frame-prediction transformer's samples continue their real clip's first
    `num_condition_tokens` tokens, which it needs.
    """

    def __init__(self, transformer, writer, every, out_dir, factors, class_ids, grid_shape,
                 num_steps=8, decode_fn=None, seed=0, real_tokens=None):
        super().__init__()
        self.transformer = transformer
        self.grid_shape = tuple(grid_shape)
        self.writer = writer
        self.every = int(every)
        self.out_dir = out_dir
        self.factors = tuple(factors)
        self.class_ids = np.asarray(class_ids, np.int32)
        self.num_steps = int(num_steps)
        self.decode_fn = decode_fn
        self.seed = int(seed)
        self.real_tokens = None
        if real_tokens is not None:
            self.real_tokens = np.asarray(real_tokens, np.int32).reshape(
                len(self.class_ids), -1)
        if transformer.num_condition_tokens and self.real_tokens is None:
            raise ValueError(f"previews of a transformer with {transformer.num_condition_tokens}"
                             f" condition tokens need real_tokens to take them from")
        self._decoders = {}

    @property
    def video(self):
        return len(self.grid_shape) == 3

    def on_loop_end(self, step, logs):
        if self.due(step, self.every):
            self.write(step)

    def sample(self, factor):
        """Grid tokens int32 [B, N] of sub-model `factor` for `class_ids` (fixed seed)."""
        if factor not in self._decoders:
            self._decoders[factor] = preview.preview_decoder(
                self.transformer, factor, len(self.class_ids), self.num_steps)
        c = self.transformer.num_condition_tokens
        condition = self.real_tokens[:, :c] if c else None
        return self._decoders[factor].generate(self.class_ids, [self.seed, 0],
                                               condition_tokens=condition)

    def pictures(self, tokens):
        """(images [B, H, W, C] or clips [B, T, H, W, C], tag prefix) of grid tokens."""
        tokens = np.asarray(tokens).reshape(-1, *self.grid_shape)
        if self.decode_fn is not None:
            return np.asarray(self.decode_fn(tokens)), "samples"
        codebook = self.transformer.codebook_size
        if not self.video:
            return images_lib.token_images(tokens, codebook), "sample_tokens"
        maps = images_lib.token_images(tokens.reshape(-1, *self.grid_shape[1:]), codebook)
        return maps.reshape(len(tokens), self.grid_shape[0], *maps.shape[1:]), "sample_tokens"

    def write(self, step):
        real = None
        if self.video and self.real_tokens is not None:
            real = images_lib.to_uint8(self.pictures(self.real_tokens)[0])
        for factor in self.factors:
            pictures, prefix = self.pictures(self.sample(factor))
            if self.video:
                pictures = images_lib.to_uint8(pictures)
                if real is not None:  # rows: real clip i, then the clip generated for it
                    pictures = np.stack([real, pictures], axis=1).reshape(
                        -1, *pictures.shape[1:])
                grid = images_lib.clip_grid(pictures, gap=1)
            else:
                grid = images_lib.image_grid(pictures, gap=1)
            with self.writer.as_default(step=step):
                tf.summary.image(f"{prefix}/p{factor}", grid[None], step=step)
            images_lib.write_png(os.path.join(self.out_dir, f"step{step:08d}_p{factor}.png"),
                                 grid)
        self.writer.flush()
