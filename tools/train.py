r"""Trains the nested MaGNeTS transformer (or the MaskGIT++ baseline) on token shards.

python tools/train.py --gin_file=gin/fashion_mnist/magnets_tiny.gin --model_dir=/tmp/magnets_tf/fm_magnets_tiny

Restarting the same command resumes from the latest checkpoint in --model_dir.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from magnets_tf.gin_setup import parse_gin  # noqa: E402

flags.DEFINE_multi_string("gin_file", [], "Gin config files (repeatable, applied in order).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. \"train.batch_size=64\".")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, TensorBoard and the "
                    "trained transformer.", required=True)
flags.DEFINE_enum("strategy", "default",
                  ["default", "one_device", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address ('local' on a TPU VM).")
flags.DEFINE_integer("train_steps", None, "Total optimizer steps of the run (schedules span "
                     "it; keep it fixed when resuming).", required=True)
flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into N logical devices (local "
                     "mirrored runs); 0 leaves it alone.")
flags.DEFINE_bool("progress", True, "Show a tqdm progress bar.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.gin_file:
        raise app.UsageError("--gin_file is required (e.g. gin/fashion_mnist/magnets_tiny.gin)")
    for path in FLAGS.gin_file:
        if not os.path.exists(path):
            raise app.UsageError(f"--gin_file {path} does not exist")
    if FLAGS.train_steps <= 0:
        raise app.UsageError(f"--train_steps must be positive, got {FLAGS.train_steps}")

    import gin  # noqa: E402
    from magnets_tf.training import distribute  # noqa: E402
    if FLAGS.logical_cpus:
        distribute.configure_logical_cpus(FLAGS.logical_cpus)
    from magnets_tf.data.tokenized import TokenShardError  # noqa: E402
    from magnets_tf.training import loop, transformer_task  # noqa: E402

    gin.add_config_file_search_path(str(Path(__file__).resolve().parents[1]))
    try:
        parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
    except (ValueError, KeyError, SyntaxError, TypeError) as e:
        raise app.UsageError(f"bad gin configuration: {e}") from None
    try:
        strategy = distribute.create_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    try:
        summary = transformer_task.train(FLAGS.model_dir, strategy, FLAGS.train_steps,
                                         progress=FLAGS.progress)
    except TokenShardError as e:
        sys.exit(f"error: token shards: {e}")
    except loop.NonFiniteLossError as e:
        sys.exit(f"error: {e}")
    except ValueError as e:
        sys.exit(f"error: {e}")
    logs = " ".join(f"{k}={v:.4f}" for k, v in sorted(summary["logs"].items()))
    print(f"done: step={summary['final_step']} steps_per_second="
          f"{summary['steps_per_second']:.2f} {logs}", flush=True)


if __name__ == "__main__":
    app.run(main)
