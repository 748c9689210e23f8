r"""Trains a VQGAN image or 3D video tokenizer (resumable) and evaluates it on the test split.

python tools/train_tokenizer.py --gin_file=gin/fashion_mnist/tokenizer.gin \
    --model_dir=/work/runs/tokenizer_fmnist

Prints as its last line `psnr_db=.. codebook_usage=..` (test split) and writes
metrics.json, tokenizer_config.json and tokenizer.weights.h5 into --model_dir.
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gin  # noqa: E402
from absl import app, flags  # noqa: E402
from magnets_tf.gin_setup import parse_gin  # noqa: E402

from magnets_tf.data import video  # noqa: E402,F401  (registers video_dataset)
from magnets_tf.models import video_tokenizer  # noqa: E402,F401  (build_video_tokenizer)
from magnets_tf.models import vqgan  # noqa: E402,F401  (registers build_vqgan)
from magnets_tf.training import tokenizer_trainer  # noqa: E402

flags.DEFINE_multi_string("gin_file", [], "Gin config files (repeatable).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. TokenizerTrainer.num_steps=10.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, summaries and the tokenizer.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for path in flags.FLAGS.gin_file:
        if not os.path.exists(path):
            raise app.UsageError(f"--gin_file {path} does not exist")
    try:
        parse_gin(flags.FLAGS.gin_file, flags.FLAGS.gin_bindings)
    except (ValueError, KeyError, TypeError) as e:
        raise app.UsageError(f"bad gin configuration: {e}") from None
    model_dir = flags.FLAGS.model_dir
    metrics = tokenizer_trainer.train_tokenizer_experiment(model_dir,
                                                           progress=flags.FLAGS.progress)
    with open(os.path.join(model_dir, "operative_config.gin"), "w") as f:
        f.write(gin.operative_config_str())
    print(f"psnr_db={metrics['psnr_db']:.2f} codebook_usage={metrics['codebook_usage']:.3f}")


if __name__ == "__main__":
    app.run(main)
