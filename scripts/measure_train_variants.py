r"""Training steps/s of variants of one gin config, side by side in one process.

python scripts/measure_train_variants.py --gin_file=gin/fashion_mnist/magnets_small.gin --variant=float32: --variant="mixed_bfloat16:train.dtype_policy='mixed_bfloat16'" --rounds=5 --steps=10 --output_json=results/train_dtype_small.json

A variant is NAME:BINDINGS, gin bindings separated by ";" applied after --gin_file and
--gin_bindings (empty: the config as it is). The knobs of `transformer_task.train` that
change the step are read from each variant's config: train.batch_size (unless
--batch_size), train.dtype_policy, train.jit_compile ("auto" as tools/train.py resolves
it); model bindings (build_transformer.*) and trainer bindings change what is built.
Without --variant the variants are float32 and mixed_bfloat16.

Every variant gets its own `TransformerTask` (seed 0) on the same random tokens of the
Fashion-MNIST tokenizer's vocabulary (512 codes, 16x16 grid, 10 classes; the speed of a
step does not depend on the token values), built and traced under its own config. After
--warmup untimed steps each, the variants take turns, --rounds times, each timing --steps
consecutive train steps (the order alternates every round so that machine noise hits all
of them); medians, the spread and each variant's speedup over the first are reported with
the load average.
"""
import inspect
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from magnets_tf.cli import app, gin_flags  # noqa: E402

gin_flags.define_gin_flags()
flags.DEFINE_multi_string("variant", [], "NAME:BINDING;BINDING... (repeatable; the first "
                          "is the baseline). Default: float32 and mixed_bfloat16.")
flags.DEFINE_integer("rounds", 5, "Timed rounds per variant.")
flags.DEFINE_integer("steps", 10, "Train steps per timed round.")
flags.DEFINE_integer("warmup", 3, "Untimed steps per variant (tracing included).")
flags.DEFINE_integer("examples", 2048, "Random token examples.")
flags.DEFINE_integer("batch_size", None, "Global batch of every variant (default: each "
                     "variant's train.batch_size). All tasks live in memory at once: the "
                     "6x128 graph step at batch 128 holds ~6 GB of activations per task.")
flags.DEFINE_string("output_json", None, "Where to write the result JSON.")
FLAGS = flags.FLAGS

CODEBOOK_SIZE, GRID, NUM_CLASSES = 512, (16, 16), 10
DEFAULT_VARIANTS = ("float32:train.dtype_policy='float32'",
                    "mixed_bfloat16:train.dtype_policy='mixed_bfloat16'")


def _random_tokens(examples, seed=0):
    from magnets_tf.training.token_data import TokenArrays
    rng = np.random.default_rng(seed)
    return TokenArrays(rng.integers(0, CODEBOOK_SIZE, (examples, *GRID)),
                       rng.integers(0, NUM_CLASSES, examples), CODEBOOK_SIZE, NUM_CLASSES)


def _train_setting(name):
    """train.<name> as the variant's config binds it, else `transformer_task.train`'s
    default."""
    import gin

    from magnets_tf.training import transformer_task
    try:
        return gin.query_parameter(f"train.{name}")
    except ValueError:  # not bound
        return inspect.signature(transformer_task.train).parameters[name].default


def _build_variant(name, bindings, tokens, train_steps):
    """(train function, iterator, task, settings) of a task built and warmed up under the
    gin files, --gin_bindings and the variant's bindings."""
    import gin
    import tensorflow as tf

    from magnets_tf.training import distribute, throughput
    from magnets_tf.training.transformer_task import TransformerTask

    gin.clear_config()
    try:
        gin_flags.parse_gin_flags(extra_bindings=bindings)
    except app.UsageError as error:
        raise app.UsageError(f"variant {name}: {error}") from None
    strategy = tf.distribute.get_strategy()
    jit_compile = _train_setting("jit_compile")
    if jit_compile == "auto":
        jit_compile = distribute.default_jit_compile(strategy)
    settings = dict(batch_size=int(FLAGS.batch_size or _train_setting("batch_size")),
                    dtype_policy=_train_setting("dtype_policy"),
                    jit_compile=bool(jit_compile))
    try:
        task = TransformerTask(tokens, settings["batch_size"],
                               dtype_policy=settings["dtype_policy"])
        function, iterator = throughput.build_train_function(task, strategy, train_steps,
                                                             settings["jit_compile"])
    except ValueError as error:  # e.g. a model binding build_transformer refuses
        raise app.UsageError(f"variant {name}: {error}") from None
    loss = None
    for _ in range(FLAGS.warmup):
        loss = float(function(iterator, 1)["loss"])
    return function, iterator, task, dict(settings, warmup_loss=loss,
                                          parameters=int(task.transformer.count_params()))


def main():
    gin_flags.parse_gin_flags()  # the shared files and bindings must parse on their own
    from magnets_tf.training import throughput

    if FLAGS.rounds <= 0 or FLAGS.steps <= 0 or FLAGS.warmup < 0 or (
            FLAGS.batch_size is not None and FLAGS.batch_size <= 0):
        raise app.UsageError("--rounds, --steps and --batch_size must be positive, "
                             "--warmup >= 0")
    try:
        variants = throughput.parse_variants(FLAGS.variant or DEFAULT_VARIANTS)
    except ValueError as error:
        raise app.UsageError(f"--variant: {error}") from None
    tokens = _random_tokens(FLAGS.examples)
    train_steps = FLAGS.warmup + FLAGS.rounds * FLAGS.steps
    runners, settings = {}, {}
    for name, bindings in variants:
        function, iterator, task, settings[name] = _build_variant(name, bindings,
                                                                  tokens, train_steps)
        runners[name] = (lambda f=function, i=iterator:
                         FLAGS.steps / throughput.run_steps(f, i, FLAGS.steps))
        print(f"{name}: built {task.transformer.name} ({task.transformer.compute_dtype} "
              f"compute, batch {settings[name]['batch_size']}, XLA "
              f"{settings[name]['jit_compile']}), warm-up loss "
              f"{settings[name]['warmup_loss']}", flush=True)
    load_before = list(os.getloadavg())
    summaries = throughput.time_interleaved(
        runners, FLAGS.rounds, on_round=lambda r, rates: print(
            f"round {r + 1}/{FLAGS.rounds}: " + "  ".join(
                f"{n} {v[-1]:.3f} steps/s" for n, v in rates.items()), flush=True))
    base = variants[0][0]
    result = dict(gin_files=FLAGS.gin_file, gin_bindings=FLAGS.gin_bindings,
                  rounds=FLAGS.rounds, steps_per_round=FLAGS.steps, warmup=FLAGS.warmup,
                  tokens="random, 512 codes, 16x16, 10 classes",
                  load_average_before=load_before, load_average_after=list(os.getloadavg()),
                  variants={})
    for name, bindings in variants:
        summary = summaries[name]
        entry = dict(bindings=bindings, **settings[name],
                     median_steps_per_s=summary["median"], min=summary["min"],
                     max=summary["max"], rounds=summary["values"])
        if name != base:
            ratios = np.array(summary["values"]) / np.array(summaries[base]["values"])
            entry["speedup_vs_" + base] = dict(median=float(np.median(ratios)),
                                               min=float(ratios.min()),
                                               max=float(ratios.max()))
        result["variants"][name] = entry
        speedup = entry.get("speedup_vs_" + base)
        print(f"{name:>16}: {summary['median']:.3f} steps/s median "
              f"[{summary['min']:.3f}, {summary['max']:.3f}]"
              + (f"  speedup {speedup['median']:.2f}x [{speedup['min']:.2f}, "
                 f"{speedup['max']:.2f}] (per-round ratios)" if speedup else ""), flush=True)
    print(f"load average before {load_before}, after {result['load_average_after']}")
    if FLAGS.output_json:
        from magnets_tf.utils import files
        files.write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    app.run(main)
