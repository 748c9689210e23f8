r"""Trains a VQGAN image or 3D video tokenizer (resumable) and evaluates it on the test split.

python tools/train_tokenizer.py --gin_file=gin/fashion_mnist/tokenizer.gin \
    --model_dir=runs/tokenizer_fmnist

Prints as its last line `psnr_db=.. codebook_usage=..` (test split) and writes
metrics.json, tokenizer_config.json and tokenizer.weights.h5 into --model_dir.
--stop_at_step / --max_wall_minutes end a leg early with a checkpoint (no evaluation; the
last line says where it stopped), SIGTERM/SIGINT at the next loop boundary with a
checkpoint (exit 128+signal): re-run the same command to continue.
"""
from absl import flags

from magnets_tf.cli import app, gin_flags, leg_flags
from magnets_tf.training import tokenizer_trainer
from magnets_tf.utils import files

gin_flags.define_gin_flags()
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and the tokenizer.",
                    required=True)
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_integer("steps_per_loop", None, "Train steps per host sync (one tf.function); "
                     "summaries, images, checkpoints and the loss check run at loop "
                     "boundaries. Unless given: gin TokenizerTrainer.steps_per_loop, else 1.")
leg_flags.define_leg_flags("TokenizerTrainer")
flags.DEFINE_bool("allow_config_change", False, "Resume --model_dir even though the model or "
                  "gin settings differ from the stored ones.")
FLAGS = flags.FLAGS


def main():
    if FLAGS.steps_per_loop is not None and FLAGS.steps_per_loop < 1:
        raise app.UsageError(f"--steps_per_loop must be >= 1, got {FLAGS.steps_per_loop}")
    leg_flags.check_leg_flags()
    files.check_writable_dir(FLAGS.model_dir, "--model_dir")
    gin_flags.parse_gin_flags()
    gin_flags.bind_flag_overrides({"TokenizerTrainer.steps_per_loop": FLAGS.steps_per_loop,
                                   **leg_flags.bindings("TokenizerTrainer")})
    overrides = dict(allow_config_change=True) if FLAGS.allow_config_change else {}
    metrics = tokenizer_trainer.train_tokenizer_experiment(FLAGS.model_dir,
                                                           progress=FLAGS.progress, **overrides)
    if "stopped" in metrics:
        return  # Unfinished: not evaluated; the loop printed where it stopped, last.
    print(f"psnr_db={metrics['psnr_db']:.2f} codebook_usage={metrics['codebook_usage']:.3f}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
