"""AdamW with linear warmup then cosine or linear decay (MaskGIT defaults in gin files)."""
import math

import gin
import keras
import tensorflow as tf

DECAYS = ("cosine", "linear", "constant")


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


@gin.configurable(denylist=["total_steps"])
def make_optimizer(total_steps, learning_rate=1e-4, warmup_steps=5000, decay="cosine",
                   end_factor=0.0, weight_decay=0.045, beta_1=0.9, beta_2=0.96,
                   epsilon=1e-8, global_clipnorm=None):
    """keras AdamW with a `WarmupDecaySchedule` (defaults: MaskGIT's ImageNet values)."""
    schedule = WarmupDecaySchedule(learning_rate, total_steps, warmup_steps, decay, end_factor)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay,
                                  beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                                  global_clipnorm=global_clipnorm)
    optimizer.schedule = schedule  # For logging lr(step) without touching private state.
    return optimizer
