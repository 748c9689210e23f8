"""Test set-up: quiet TF, two logical CPUs (for tf.distribute tests), parsed absl flags."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

# Logical devices must be configured before TF initialises its runtime.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # Already initialised by an earlier import: keep what exists.
    pass

flags.FLAGS.mark_as_parsed()
