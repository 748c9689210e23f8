r"""Training throughput of a transformer gin config: steps/s with steps_per_loop 1 vs N
and the token-shard pipeline's examples/s against what the train step consumes.

python tools/benchmark_training.py --gin_file=gin/fashion_mnist/magnets_small.gin --output=results/benchmarks/training_small.json

Without --tokens_dir it writes synthetic shards shaped like Fashion-MNIST's tokens
(60000 examples, 16x16 tokens, 512 codes, 4 shards: the real parsing path, random
content). Numbers feed docs/performance.md; see magnets_tf/training/throughput.py.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from magnets_tf.cli import app, gin_flags  # noqa: E402

gin_flags.define_gin_flags()
flags.DEFINE_string("tokens_dir", None, "Token shards to read (default: synthetic ones).")
flags.DEFINE_integer("synthetic_examples", 60000, "Examples of the synthetic shards.")
flags.DEFINE_list("synthetic_grid", ["16", "16"], "Token grid of the synthetic shards.")
flags.DEFINE_integer("synthetic_codebook", 512, "Codebook size of the synthetic shards.")
flags.DEFINE_integer("steps", 20, "Train steps per timed run.")
flags.DEFINE_list("loop_sizes", ["1", "10"], "steps_per_loop values compared.")
flags.DEFINE_integer("repeats", 3, "Interleaved timed runs per variant.")
flags.DEFINE_integer("pipeline_batches", 50, "Batches per timed pipeline read.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train step.")
flags.DEFINE_string("output", None, "JSON file for the report.")

FLAGS = flags.FLAGS


def _synthetic_shards(directory):
    import numpy as np

    from magnets_tf.data import tokenized

    grid = [int(v) for v in FLAGS.synthetic_grid]
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, FLAGS.synthetic_codebook, (FLAGS.synthetic_examples, *grid))
    labels = rng.integers(0, 10, FLAGS.synthetic_examples)
    tokenized.write_token_shards(directory, [(tokens, labels)],
                                 dict(codebook_size=FLAGS.synthetic_codebook, grid=grid,
                                      num_classes=10, tokenizer=""), num_shards=4)
    return directory


def main():
    if not FLAGS.gin_file:
        raise app.UsageError("--gin_file is required (e.g. gin/fashion_mnist/magnets_small.gin)")
    loop_sizes = [int(v) for v in FLAGS.loop_sizes]
    if FLAGS.steps < 1 or FLAGS.repeats < 1 or min(loop_sizes) < 1:
        raise app.UsageError("--steps, --repeats and --loop_sizes must be >= 1")
    import platform
    import tempfile

    import gin
    import tensorflow as tf

    from magnets_tf.training import throughput, token_data
    from magnets_tf.training.transformer_task import TransformerTask
    from magnets_tf.utils import files

    gin_flags.parse_gin_flags()
    try:
        batch_size = int(gin.query_parameter("train.batch_size"))
    except ValueError:
        raise app.UsageError("the gin config binds no train.batch_size") from None
    with tempfile.TemporaryDirectory() as temp:
        tokens_dir = FLAGS.tokens_dir or _synthetic_shards(os.path.join(temp, "tokens"))
        task = TransformerTask(token_data.TokenShards(tokens_dir), batch_size, seed=0)
        report = throughput.measure(task, tf.distribute.get_strategy(), steps=FLAGS.steps,
                                    loop_sizes=loop_sizes, repeats=FLAGS.repeats,
                                    pipeline_batches=FLAGS.pipeline_batches,
                                    jit_compile=FLAGS.jit_compile)
    report.update(gin_files=list(FLAGS.gin_file), gin_bindings=list(FLAGS.gin_bindings),
                  synthetic_tokens=FLAGS.tokens_dir is None,
                  load_average=list(os.getloadavg()), cpus=os.cpu_count(),
                  machine=platform.processor() or platform.machine(),
                  tensorflow=tf.__version__)
    for size, rate in report["steps_per_second"].items():
        print(f"steps_per_loop={size}: {rate['median']:.3f} steps/s "
              f"[{rate['min']:.3f}, {rate['max']:.3f}]")
    print(f"pipeline: {report['pipeline_examples_per_second']['median']:.0f} examples/s, "
          f"step consumes {report['step_examples_per_second']:.0f} examples/s "
          f"(headroom {report['pipeline_headroom']:.1f}x)", flush=True)
    if FLAGS.output:
        files.write_json(FLAGS.output, report)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
