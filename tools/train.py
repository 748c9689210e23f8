r"""Trains the nested MaGNeTS transformer (or the MaskGIT++ baseline) on token shards.

python tools/train.py --gin_file=gin/fashion_mnist/magnets_tiny.gin --model_dir=/tmp/magnets_tf/fm_magnets_tiny

Mixed precision: --dtype_policy=mixed_bfloat16 (or gin train.dtype_policy).

Video: the same command on video token shards (tools/tokenize_dataset.py with a
VideoTokenizer) trains class-conditional clip generation, or frame prediction when the
shards record condition frames, e.g. gin/moving_mnist/magnets_frame_prediction.gin,
gin/ucf101/magnets.gin, gin/kinetics600/magnets_frame_prediction.gin (docs/video.md).

Restarting the same command resumes from the latest checkpoint in --model_dir.
Legs: --stop_at_step=N or --max_wall_minutes=M end this process early with a checkpoint
(exit 0), SIGTERM/SIGINT at the next loop boundary with a checkpoint (exit 128+signal);
keep --train_steps (the schedules' length) fixed. See docs/training.md, "Training in legs".
--steps_per_loop=N runs N steps per host sync; --jit_compile compiles the step with XLA
(GPUs); --strategy=multi_worker reads the cluster from TF_CONFIG (run the same command on
every worker, with a --model_dir they all see); --strategy=tpu --tpu=NAME (or local).
See docs/training.md, "Training at scale".
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from magnets_tf.cli import app, gin_flags, leg_flags  # noqa: E402
from magnets_tf.utils import files  # noqa: E402

gin_flags.define_gin_flags()
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
flags.DEFINE_integer("steps_per_loop", None, "Train steps per host sync (one tf.function); "
                     "checkpoints, summaries and the loss check run at loop boundaries. "
                     "Unless given: gin train.steps_per_loop, else 1.")
flags.DEFINE_bool("jit_compile", None, "XLA-compile the train step (GPUs; TPUStrategy "
                  "compiles by itself). Unless given: gin train.jit_compile, else 'auto' "
                  "(XLA only where GPUs are present).")
flags.DEFINE_bool("progress", True, "Show a tqdm progress bar.")
flags.DEFINE_enum("dtype_policy", None, ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Keras dtype policy of the transformer (variables, losses and logits stay "
                  "float32; mixed_float16 adds loss scaling). Default: gin "
                  "train.dtype_policy, else float32.")
leg_flags.define_leg_flags("train")
flags.DEFINE_bool("allow_config_change", False, "Resume --model_dir even though the model or "
                  "gin settings differ from the stored ones (they are listed and the old "
                  "files kept in config_history/).")

FLAGS = flags.FLAGS


def main():
    if not FLAGS.gin_file:
        raise app.UsageError("--gin_file is required (e.g. gin/fashion_mnist/magnets_tiny.gin)")
    if FLAGS.train_steps <= 0:
        raise app.UsageError(f"--train_steps must be positive, got {FLAGS.train_steps}")
    if FLAGS.steps_per_loop is not None and FLAGS.steps_per_loop < 1:
        raise app.UsageError(f"--steps_per_loop must be >= 1, got {FLAGS.steps_per_loop}")
    leg_flags.check_leg_flags()
    files.check_writable_dir(FLAGS.model_dir, "--model_dir")

    from magnets_tf.training import distribute
    if FLAGS.logical_cpus:  # before TF initialises its devices
        distribute.configure_logical_cpus(FLAGS.logical_cpus)
    from magnets_tf.training import transformer_task

    gin_flags.parse_gin_flags()
    gin_flags.bind_flag_overrides({"train.steps_per_loop": FLAGS.steps_per_loop,
                                   "train.jit_compile": FLAGS.jit_compile,
                                   "train.dtype_policy": FLAGS.dtype_policy,
                                   **leg_flags.bindings("train")})
    try:
        strategy = distribute.create_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
    except ValueError as e:  # --strategy / --tpu that do not go together
        raise app.UsageError(str(e)) from None
    overrides = dict(allow_config_change=True) if FLAGS.allow_config_change else {}
    summary = transformer_task.train(FLAGS.model_dir, strategy, FLAGS.train_steps,
                                     progress=FLAGS.progress, **overrides)
    if not summary["complete"]:
        return  # The loop printed "stopped at step N of T (...); re-run ..." last.
    logs = " ".join(f"{k}={v:.4f}" for k, v in sorted(summary["logs"].items()))
    print(f"done: step={summary['final_step']} steps_per_second="
          f"{summary['steps_per_second']:.2f} {logs}", flush=True)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
