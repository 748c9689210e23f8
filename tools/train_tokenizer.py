r"""Trains a VQGAN image or 3D video tokenizer (resumable) and evaluates it on the test split.

python tools/train_tokenizer.py --gin_file=gin/fashion_mnist/tokenizer.gin \
    --model_dir=runs/tokenizer_fmnist

Prints as its last line `psnr_db=.. codebook_usage=..` (test split) and writes
metrics.json, tokenizer_config.json and tokenizer.weights.h5 into --model_dir.
"""
from absl import flags

from magnets_tf.cli import app, gin_flags
from magnets_tf.training import tokenizer_trainer

gin_flags.define_gin_flags()
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and the tokenizer.",
                    required=True)
flags.DEFINE_bool("progress", True, "Show a progress bar.")
FLAGS = flags.FLAGS


def main():
    gin_flags.parse_gin_flags()
    metrics = tokenizer_trainer.train_tokenizer_experiment(FLAGS.model_dir,
                                                           progress=FLAGS.progress)
    print(f"psnr_db={metrics['psnr_db']:.2f} codebook_usage={metrics['codebook_usage']:.3f}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
