r"""Training steps/s of one gin config under several dtype policies, side by side.

python scripts/measure_train_dtype.py --gin_file=gin/fashion_mnist/magnets_small.gin --policies=float32,mixed_bfloat16 --rounds=5 --steps=10 --output_json=results/train_dtype_small.json

Every policy gets its own `TransformerTask` (same gin config, same seed) on the same
random tokens of the Fashion-MNIST tokenizer's vocabulary (512 codes, 16x16 grid, 10
classes; the speed of a step does not depend on the token values). After --warmup
untimed steps each, the policies take turns, --rounds times, each timing --steps
consecutive graph-mode train steps (the order alternates every round so that machine
noise hits all of them); medians and the spread are reported with the load average.
"""
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from magnets_tf.cli import app, gin_flags  # noqa: E402

gin_flags.define_gin_flags()
flags.DEFINE_list("policies", ["float32", "mixed_bfloat16"], "Dtype policies to compare.")
flags.DEFINE_integer("rounds", 5, "Timed rounds per policy.")
flags.DEFINE_integer("steps", 10, "Train steps per timed round.")
flags.DEFINE_integer("warmup", 3, "Untimed steps per policy (tracing included).")
flags.DEFINE_integer("examples", 2048, "Random token examples.")
flags.DEFINE_integer("batch_size", None, "Global batch (default: gin train.batch_size). "
                     "Both tasks live in memory at once: the 6x128 graph step at batch 128 "
                     "holds ~6 GB of activations per task.")
flags.DEFINE_string("output_json", None, "Where to write the result JSON.")
FLAGS = flags.FLAGS

CODEBOOK_SIZE, GRID, NUM_CLASSES = 512, (16, 16), 10


def _random_tokens(examples, seed=0):
    from magnets_tf.training.token_data import TokenArrays
    rng = np.random.default_rng(seed)
    return TokenArrays(rng.integers(0, CODEBOOK_SIZE, (examples, *GRID)),
                       rng.integers(0, NUM_CLASSES, examples), CODEBOOK_SIZE, NUM_CLASSES)


def _stepper(policy, tokens, batch_size, train_steps):
    """(one-step callable, task) of a freshly built task under `policy`."""
    import keras
    import tensorflow as tf

    from magnets_tf.training import distribute
    from magnets_tf.training.transformer_task import TransformerTask

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()
    task = TransformerTask(tokens, batch_size, dtype_policy=policy)
    task.build(strategy, train_steps)
    iterator = iter(distribute.distribute_dataset(
        strategy, lambda context: task.dataset(context, 0)))
    step = distribute.make_train_function(task.train_step, strategy, False)
    return (lambda: {k: float(v) for k, v in step(iterator).items()}), task


def main():
    gin_flags.parse_gin_flags()
    import gin

    if FLAGS.rounds <= 0 or FLAGS.steps <= 0:
        raise app.UsageError("--rounds and --steps must be positive")
    batch_size = FLAGS.batch_size or gin.query_parameter("train.batch_size")
    tokens = _random_tokens(FLAGS.examples)
    train_steps = FLAGS.warmup + FLAGS.rounds * FLAGS.steps
    steppers, losses = {}, {}
    for policy in FLAGS.policies:
        steppers[policy], task = _stepper(policy, tokens, batch_size, train_steps)
        for _ in range(FLAGS.warmup):
            losses[policy] = steppers[policy]()["loss"]
        print(f"{policy}: built {task.transformer.name} "
              f"({task.transformer.compute_dtype} compute), warm-up loss {losses[policy]:.4f}",
              flush=True)
    load_before = list(os.getloadavg())
    rates = {policy: [] for policy in FLAGS.policies}
    for r in range(FLAGS.rounds):
        order = FLAGS.policies if r % 2 == 0 else FLAGS.policies[::-1]
        for policy in order:
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                losses[policy] = steppers[policy]()["loss"]
            rates[policy].append(FLAGS.steps / (time.perf_counter() - start))
        print(f"round {r + 1}/{FLAGS.rounds}: " + "  ".join(
            f"{p} {rates[p][-1]:.3f} steps/s" for p in FLAGS.policies), flush=True)
    base = FLAGS.policies[0]
    result = dict(gin_files=FLAGS.gin_file, batch_size=batch_size, rounds=FLAGS.rounds,
                  steps_per_round=FLAGS.steps, warmup=FLAGS.warmup,
                  tokens="random, 512 codes, 16x16, 10 classes",
                  load_average_before=load_before, load_average_after=list(os.getloadavg()),
                  policies={p: dict(median_steps_per_s=float(np.median(v)),
                                    min=float(np.min(v)), max=float(np.max(v)),
                                    rounds=v, final_loss=losses[p])
                            for p, v in rates.items()})
    for policy in FLAGS.policies[1:]:
        ratios = np.array(rates[policy]) / np.array(rates[base])
        result["policies"][policy]["speedup_vs_" + base] = dict(
            median=float(np.median(ratios)), min=float(ratios.min()), max=float(ratios.max()))
    for policy, r in result["policies"].items():
        extra = r.get(f"speedup_vs_{base}")
        print(f"{policy:>16}: {r['median_steps_per_s']:.3f} steps/s median "
              f"[{r['min']:.3f}, {r['max']:.3f}]"
              + (f"  speedup {extra['median']:.2f}x [{extra['min']:.2f}, {extra['max']:.2f}]"
                 if extra else ""), flush=True)
    print(f"load average before {load_before}, after {result['load_average_after']}")
    if FLAGS.output_json:
        from magnets_tf.utils import files
        files.write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    app.run(main)
