"""TensorBoard scalars from a dict of metrics (e.g. a metrics.json), for tools that score
a trained model after the fact (tools/evaluate.py --tensorboard_dir)."""
import math
import numbers

import tensorflow as tf


def scalar_metrics(metrics):
    """{name: float} of the finite numeric top-level entries of `metrics` (bools, lists,
    strings and NaN/Inf are left out: they are no curve points)."""
    found = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if math.isfinite(float(value)):
            found[name] = float(value)
    return found


def write_scalars(log_dir, step, metrics, prefix=""):
    """Writes `scalar_metrics(metrics)` as scalars "<prefix><name>" at `step` into the
    TensorBoard run `log_dir` (appended beside earlier event files); returns the tags."""
    values = scalar_metrics(metrics)
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default(step=int(step)):
        for name, value in values.items():
            tf.summary.scalar(prefix + name, value)
    writer.close()
    return sorted(prefix + name for name in values)
