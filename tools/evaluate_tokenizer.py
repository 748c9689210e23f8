r"""Reconstruction FID of a trained VQ tokenizer: the floor of any generator on its tokens.

python tools/evaluate_tokenizer.py --tokenizer_dir=checkpoints/fashion_mnist/tokenizer \
  --reference=fashion_mnist:test --num_samples=2000 --output_dir=/tmp/tokenizer_eval

Encodes and decodes --num_samples images of --reference (a seeded subset; 0 = the whole
split) and scores the reconstructions against the whole split's cached FID statistics, at
the same n as the generator's FID so the two compare (FID is biased upward at small n).
Writes output_dir/metrics.json (rfid; fid_real, the same real images' FID, what n alone
costs; precision/recall; PSNR; codebook usage) and reconstructions.png (inputs over
reconstructions).
"""
from pathlib import Path

from absl import flags

from magnets_tf.cli import app, scoring_flags
from magnets_tf.utils import files

flags.DEFINE_string("tokenizer_dir", None, "Trained VQGAN folder (tools/train_tokenizer.py).",
                    required=True)
flags.DEFINE_string("output_dir", None, "Where metrics.json and reconstructions.png go.",
                    required=True)
flags.DEFINE_string("reference", "fashion_mnist:test", "Images to reconstruct: dataset:split.")
flags.DEFINE_integer("num_samples", 2000, "Images reconstructed (a seeded subset of the "
                     "split; 0 = all). Use the generator's n to compare with its FID.",
                     lower_bound=0)
flags.DEFINE_integer("reference_n", None, "Reference images for the FID statistics (default: "
                     "the whole split).", lower_bound=2)
flags.DEFINE_integer("seed", 0, "Seed of the subset.")
flags.DEFINE_integer("batch_size", 100, "Tokenizer and feature batch size.", lower_bound=1)
flags.DEFINE_string("fid_weights", None, "Converted FID Inception weights (default: cache).")
flags.DEFINE_string("cache_dir", None, "Cache folder (default $MAGNETS_TF_CACHE or "
                    "~/.cache/magnets_tf).")
FLAGS = flags.FLAGS


def main():
    dataset, split = scoring_flags.reference()
    from magnets_tf.data.datasets import load_arrays
    from magnets_tf.evaluation import fid, reconstruction
    from magnets_tf.evaluation.inception import InceptionFeatureExtractor
    from magnets_tf.models import saving
    from magnets_tf.utils import images as images_lib

    try:
        tokenizer = saving.load_tokenizer(FLAGS.tokenizer_dir)
    except (ValueError, OSError) as e:
        raise app.UsageError(f"--tokenizer_dir {FLAGS.tokenizer_dir}: {e}") from None
    if hasattr(tokenizer, "video_shape"):
        raise app.UsageError(f"--tokenizer_dir {FLAGS.tokenizer_dir} is a video tokenizer; "
                             "reconstruction FID is measured on images")
    try:
        images, _ = load_arrays(dataset, split)
    except (ValueError, OSError) as e:
        raise app.UsageError(f"--reference {FLAGS.reference}: {e}") from None
    if tuple(images.shape[1:]) != tuple(tokenizer.image_shape):
        raise app.UsageError(f"--reference {FLAGS.reference} holds images of shape "
                             f"{tuple(images.shape[1:])}; the tokenizer encodes "
                             f"{tuple(tokenizer.image_shape)}")
    if FLAGS.num_samples > len(images):
        raise app.UsageError(f"--num_samples={FLAGS.num_samples} exceeds the "
                             f"{len(images)} images of {FLAGS.reference}")
    files.check_writable_dir(FLAGS.output_dir, "--output_dir")
    chosen = fid.subsample(images, FLAGS.num_samples or len(images), FLAGS.seed)
    extractor = InceptionFeatureExtractor(weights_path=FLAGS.fid_weights,
                                          cache_dir=FLAGS.cache_dir,
                                          batch_size=FLAGS.batch_size)
    reference = scoring_flags.reference_statistics(extractor)
    # The whole split is the reference itself: its features are already computed.
    whole_split = not FLAGS.num_samples and FLAGS.reference_n is None
    metrics, shown = reconstruction.evaluate_reconstruction(
        tokenizer, chosen, extractor, reference, batch_size=FLAGS.batch_size,
        real_features=reference["features"] if whole_split else None)
    metrics.update(reference=FLAGS.reference, tokenizer_dir=FLAGS.tokenizer_dir,
                   seed=FLAGS.seed)
    out = Path(FLAGS.output_dir)
    files.write_json(out / "metrics.json", metrics)
    images_lib.save_image_grid(shown, out / "reconstructions.png", columns=len(shown) // 2)
    print(f"reconstruction FID {metrics['rfid']:.2f} (n={metrics['n']} vs "
          f"{metrics['n_reference']} {FLAGS.reference}; the same real images: "
          f"{metrics['fid_real']:.2f})  PSNR {metrics['psnr_db']:.2f} dB  codebook usage "
          f"{metrics['codebook_usage']:.3f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'reconstructions.png'}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
