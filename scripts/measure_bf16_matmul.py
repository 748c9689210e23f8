r"""float32 vs bfloat16 matmul speed, with and without XLA, at a transformer layer's shape.

python scripts/measure_bf16_matmul.py --m=2056 --k=384 --n=1536 --rounds=7

XLA_FLAGS (e.g. --xla_cpu_use_onednn=true) apply to the XLA variants. The four variants
take turns every round; medians and the spread of GFLOP/s (2 FLOPs per multiply-add)
are printed with the load average. Why it exists: docs/performance.md (XLA:CPU ran
bfloat16 dots no faster than float32 here, while TF's own oneDNN kernels did).
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_integer("m", 2056, "Rows (batch x tokens).")
flags.DEFINE_integer("k", 384, "Inner dimension.")
flags.DEFINE_integer("n", 1536, "Columns.")
flags.DEFINE_integer("rounds", 7, "Timed rounds per variant.")
flags.DEFINE_integer("calls", 5, "Calls per round.")
FLAGS = flags.FLAGS


def main(argv):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    a = rng.standard_normal([FLAGS.m, FLAGS.k]).astype(np.float32)
    b = rng.standard_normal([FLAGS.k, FLAGS.n]).astype(np.float32)
    variants = {}
    for jit in (False, True):
        for dtype in (tf.float32, tf.bfloat16):
            fn = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y), tf.float32)),
                             jit_compile=jit)
            args = (tf.constant(a, dtype), tf.constant(b, dtype))
            fn(*args).numpy()
            variants[f"{'xla' if jit else 'graph'} {dtype.name}"] = (fn, args)
    flop = 2.0 * FLAGS.m * FLAGS.k * FLAGS.n
    rates = {name: [] for name in variants}
    load = os.getloadavg()
    for r in range(FLAGS.rounds):
        for name, (fn, args) in (variants.items() if r % 2 == 0
                                 else reversed(list(variants.items()))):
            start = time.perf_counter()
            for _ in range(FLAGS.calls):
                fn(*args).numpy()
            rates[name].append(flop * FLAGS.calls / (time.perf_counter() - start) / 1e9)
    for name, v in rates.items():
        print(f"{name:>16}: {np.median(v):6.1f} GFLOP/s [{min(v):.1f}, {max(v):.1f}]")
    for mode in ("graph", "xla"):
        ratio = np.array(rates[f"{mode} bfloat16"]) / np.array(rates[f"{mode} float32"])
        print(f"{mode} bfloat16/float32: {np.median(ratio):.2f}x [{ratio.min():.2f}, "
              f"{ratio.max():.2f}]")
    print(f"[{FLAGS.m}x{FLAGS.k}]x[{FLAGS.k}x{FLAGS.n}] XLA_FLAGS="
          f"{os.environ.get('XLA_FLAGS', '')!r} load average {load} -> {os.getloadavg()}")


if __name__ == "__main__":
    app.run(main)
