r"""Trains a VQGAN image or 3D video tokenizer (resumable) and evaluates it on the test split.

python tools/train_tokenizer.py --gin_file=gin/fashion_mnist/tokenizer.gin \
    --model_dir=runs/tokenizer_fmnist

Prints as its last line `psnr_db=.. codebook_usage=..` (test split) and writes
metrics.json, tokenizer_config.json and tokenizer.weights.h5 into --model_dir.
"""
from absl import flags

from magnets_tf.cli import app, gin_flags
from magnets_tf.training import tokenizer_trainer
from magnets_tf.utils import files

gin_flags.define_gin_flags()
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and the tokenizer.",
                    required=True)
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_bool("allow_config_change", False, "Resume --model_dir even though the model or "
                  "gin settings differ from the stored ones.")
FLAGS = flags.FLAGS


def main():
    files.check_writable_dir(FLAGS.model_dir, "--model_dir")
    gin_flags.parse_gin_flags()
    overrides = dict(allow_config_change=True) if FLAGS.allow_config_change else {}
    metrics = tokenizer_trainer.train_tokenizer_experiment(FLAGS.model_dir,
                                                           progress=FLAGS.progress, **overrides)
    print(f"psnr_db={metrics['psnr_db']:.2f} codebook_usage={metrics['codebook_usage']:.3f}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
