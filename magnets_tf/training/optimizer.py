"""AdamW with linear warmup then cosine or linear decay (MaskGIT defaults in gin files),
decaying kernels only: biases, LayerNorm parameters and the token and position
embeddings are excluded from weight decay (as MAGVIT does), by variable path patterns."""
import math
import re

import gin
import keras
import tensorflow as tf
from absl import logging

DECAYS = ("cosine", "linear", "constant")

# Regular expressions searched in variable paths (e.g. "maskgit_tiny/block_0/mlp/output/bias"):
# biases (including the MLM head's per-code "head_bias"), LayerNorm gamma and beta, the
# token embedding (also the tied output projection) and the position embedding.
DEFAULT_DECAY_EXCLUSIONS = ("bias$", "gamma$", "beta$", "token_embedding/",
                            "position_embedding$")


@keras.saving.register_keras_serializable(package="magnets_tf")
class WarmupDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step): 0 -> peak linearly over warmup_steps, then decay to end_factor * peak."""

    def __init__(self, peak_learning_rate, total_steps, warmup_steps=0, decay="cosine",
                 end_factor=0.0):
        if decay not in DECAYS:
            raise ValueError(f"unknown decay {decay!r}; known: {DECAYS}")
        if total_steps <= 0 or warmup_steps < 0:
            raise ValueError(f"total_steps={total_steps} must be > 0 and "
                             f"warmup_steps={warmup_steps} >= 0")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.end_factor = float(end_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = self.peak_learning_rate
        warmup = peak * step / max(self.warmup_steps, 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        if self.decay == "cosine":
            shape = 0.5 * (1.0 + tf.cos(math.pi * progress))
        elif self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = tf.ones_like(progress)
        decayed = peak * (self.end_factor + (1.0 - self.end_factor) * shape)
        return tf.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return dict(peak_learning_rate=self.peak_learning_rate, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, decay=self.decay,
                    end_factor=self.end_factor)


class AdamW(keras.optimizers.AdamW):
    """keras AdamW that leaves variables whose path matches one of
    `exclude_from_weight_decay` (regular expressions, `re.search`) out of weight decay.

    Keras' own `exclude_from_weight_decay(var_names=...)` matches the last name component
    only ("bias", "embeddings"); paths tell the token embedding from other embeddings.
    The optimizer's variables are those of keras.optimizers.AdamW, so checkpoints of
    either restore into the other.
    """

    def __init__(self, *args, exclude_from_weight_decay=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.decay_exclusions = tuple(exclude_from_weight_decay)
        try:
            self._decay_exclusion_pattern = (
                re.compile("|".join(f"(?:{p})" for p in self.decay_exclusions))
                if self.decay_exclusions else None)
        except re.error as e:
            raise ValueError(f"exclude_from_weight_decay={self.decay_exclusions!r} holds a bad "
                             f"regular expression: {e}") from None

    def excluded_from_weight_decay(self, variable):
        """Whether `variable` is left out of weight decay."""
        pattern = self._decay_exclusion_pattern
        return pattern is not None and pattern.search(variable.path) is not None

    def build(self, var_list):
        if not self.built and self._decay_exclusion_pattern is not None:
            excluded = [v for v in var_list if self.excluded_from_weight_decay(v)]
            # --verbosity=1 shows it; by default a tool's stderr stays for errors.
            logging.vlog(1, "weight decay: %d of %d variables excluded (%s)", len(excluded),
                         len(var_list), ", ".join(self.decay_exclusions))
            self.exclude_from_weight_decay(var_list=excluded)
        super().build(var_list)


@gin.configurable(denylist=["total_steps"])
def make_optimizer(total_steps, learning_rate=1e-4, warmup_steps=5000, decay="cosine",
                   end_factor=0.0, weight_decay=0.045, beta_1=0.9, beta_2=0.96,
                   epsilon=1e-8, global_clipnorm=None,
                   exclude_from_weight_decay=DEFAULT_DECAY_EXCLUSIONS):
    """`AdamW` with a `WarmupDecaySchedule` (defaults: MaskGIT's ImageNet values).

    exclude_from_weight_decay: regular expressions searched in variable paths; matching
    variables are not decayed (default: biases, LayerNorm, token/position embeddings;
    () decays everything, as keras AdamW does).
    """
    schedule = WarmupDecaySchedule(learning_rate, total_steps, warmup_steps, decay, end_factor)
    optimizer = AdamW(learning_rate=schedule, weight_decay=weight_decay, beta_1=beta_1,
                      beta_2=beta_2, epsilon=epsilon, global_clipnorm=global_clipnorm,
                      exclude_from_weight_decay=exclude_from_weight_decay)
    optimizer.schedule = schedule  # For logging lr(step) without touching private state.
    return optimizer
