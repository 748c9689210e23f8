"""The divergence guard: stops a run whose loss or weights blow up before they are saved.

`loop.run` calls `DivergenceGuard.check(step, logs, weight_norm)` after every step and
before any callback (so before a checkpoint or an export of that step). The logs of step N
hold the loss of the weights after N-1 updates; `weight_norm` is the global norm of the
task's guarded variables after update N. The run has diverged when

- the loss (or `grad_norm`, if the task logs one) is NaN/Inf, or larger than
  `spike_factor` times the median of its last `window` values (once `min_history` values
  are known; positive values only): the weights after update N-1 are already bad;
- the weight norm is NaN/Inf or grew more than `max_weight_growth`-fold in update N (an
  exploding update: a learning rate of 1e30 turns the weights to 1e29 in one step while
  the loss of that step, computed before the update, still looks fine): the weights after
  update N are bad, those after N-1 good.

It raises `DivergenceError` whose `last_good_step` is the last step whose weights are
trusted; the loop names the newest checkpoint at or before it, and sets aside newer ones
so a restart resumes from good weights. Normal AdamW updates change the weight norm by a
fraction of a percent per step; a doubling in one step is never a healthy update.
"""
import collections
import math
import statistics

import gin
import tensorflow as tf

from magnets_tf.training.callbacks import NonFiniteLossError


class DivergenceError(NonFiniteLossError):
    """Training diverged at `step`; weights after `last_good_step` updates are trusted."""

    def __init__(self, message, step, last_good_step):
        super().__init__(message)
        self.step = int(step)
        self.last_good_step = int(last_good_step)


def weight_norm_function(variables):
    """A compiled () -> global L2 norm of `variables` (float), or None without variables.

    Scaled by the largest magnitude first, so weights of 1e30 give a norm of about 1e30
    (not float32's inf) and the guard reports the jump it saw; float32 throughout, so it
    runs on TPUs too. NaN or Inf weights give a non-finite norm."""
    variables = list(variables)
    if not variables:
        return None

    @tf.function
    def norm():
        values = [tf.reshape(tf.cast(v, tf.float32), [-1]) for v in variables]
        scale = tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(v)) for v in values]))
        safe = tf.where(scale > 0, scale, 1.0)
        total = tf.add_n([tf.reduce_sum(tf.square(v / safe)) for v in values])
        return safe * tf.sqrt(total)

    return lambda: float(norm())


@gin.configurable
class DivergenceGuard:
    """Per-step divergence checks (see the module docstring).

    spike_factor: a loss above spike_factor x its running median is divergence (None: off).
    window / min_history: the running median's length and how many values it needs first.
    max_weight_growth: a weight norm that grows more than this factor in one update is
    divergence (None: off). The log keys checked for NaN/Inf and spikes are the task's
    `divergence_keys` (given to `start`); a key a task does not log is skipped, and "loss"
    is always checked for NaN/Inf.
    """

    def __init__(self, spike_factor=10.0, window=100, min_history=10, max_weight_growth=2.0):
        if spike_factor is not None and float(spike_factor) <= 1.0:
            raise ValueError(f"DivergenceGuard.spike_factor must be > 1 (or None), got "
                             f"{spike_factor!r}")
        if max_weight_growth is not None and float(max_weight_growth) <= 1.0:
            raise ValueError(f"DivergenceGuard.max_weight_growth must be > 1 (or None), got "
                             f"{max_weight_growth!r}")
        if int(window) < 1 or not 1 <= int(min_history) <= int(window):
            raise ValueError(f"DivergenceGuard needs 1 <= min_history ({min_history}) <= "
                             f"window ({window})")
        self.spike_factor = None if spike_factor is None else float(spike_factor)
        self.max_weight_growth = None if max_weight_growth is None else float(max_weight_growth)
        self.window = int(window)
        self.min_history = int(min_history)
        self.monitored = ("loss",)
        self._history = {}
        self._weight_norm = None

    def start(self, weight_norm=None, keys=("loss",)):
        """Begins a run segment from weights of this norm (after restore), watching the
        logs `keys` for spikes."""
        self.monitored = tuple(dict.fromkeys(("loss", *keys)))
        self._history = {key: collections.deque(maxlen=self.window) for key in keys}
        self._weight_norm = weight_norm

    def _diverged(self, step, what, last_good_step):
        raise DivergenceError(f"training diverged at step {step}: {what}", step,
                              last_good_step)

    def check(self, step, logs, weight_norm=None):
        """Raises DivergenceError if step `step` diverged; else records its values."""
        for key in self.monitored:
            if key not in logs:
                continue
            value = float(logs[key])
            if not math.isfinite(value):
                self._diverged(step, f"{key} is {value}", step - 2)
            history = self._history.get(key, ())
            if self.spike_factor is not None and len(history) >= self.min_history:
                median = statistics.median(history)
                if median > 0 and value > self.spike_factor * median:
                    self._diverged(step, f"{key} {value:.4g} is more than "
                                         f"{self.spike_factor:g}x its running median "
                                         f"{median:.4g}", step - 2)
        if weight_norm is not None:
            self._check_weights(step, weight_norm, "the weights became {norm} (norm)",
                                "the weight norm jumped from {previous:.4g} to {norm:.4g} "
                                "in one update")
            self._weight_norm = weight_norm
        for key, history in self._history.items():
            if key in logs:
                history.append(float(logs[key]))

    def check_saved(self, step, weight_norm):
        """Before a checkpoint of step `step`: raises DivergenceError unless the weights
        are finite and within the growth bound of the last accepted step (the saver's own
        line of defence, also when steps are checked only at loop boundaries)."""
        if weight_norm is not None:
            self._check_weights(step, weight_norm, "the weights to be saved are {norm} (norm)",
                                "the weight norm to be saved, {norm:.4g}, exceeds "
                                "max_weight_growth x the last checked {previous:.4g}")

    def _check_weights(self, step, norm, non_finite, jumped):
        """Raises DivergenceError (the weights after update `step` are bad) if `norm` is
        NaN/Inf or grew beyond `max_weight_growth` since the last checked step; the
        messages are format strings of `norm` and `previous`."""
        if not math.isfinite(norm):
            self._diverged(step, non_finite.format(norm=norm), step - 1)
        previous = self._weight_norm
        if (self.max_weight_growth is not None and previous
                and norm > self.max_weight_growth * previous):
            self._diverged(step, jumped.format(norm=norm, previous=previous), step - 1)
