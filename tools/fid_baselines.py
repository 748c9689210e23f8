r"""Reference FID/IS/precision-recall numbers of real data: what "good" and "bad" look like.

python tools/fid_baselines.py --n=2000 --output_dir=/tmp/fid_baselines

Compares Fashion-MNIST test half A (n images) with: half B (n, disjoint), MNIST-5k (n),
uniform noise (n). Features of each set are cached in --output_dir, so an interrupted run
resumes. Writes baselines.json there (every value with its n) and prints a table.
"""
import os
import time
from pathlib import Path

from absl import flags

from magnets_tf.cli import app
from magnets_tf.utils import files

flags.DEFINE_integer("n", 2000, "Images per set (<= 5000: the halves of the 10k test split).")
flags.DEFINE_integer("seed", 0, "Seed of the split into halves, the MNIST subset and the noise.")
flags.DEFINE_integer("batch_size", 50, "Feature extraction batch size.")
flags.DEFINE_string("output_dir", "/tmp/fid_baselines", "Where features and baselines.json go.")
flags.DEFINE_string("weights", None, "Converted FID Inception weights (default: the cache).")
flags.DEFINE_integer("pr_k", 3, "k of the k-NN manifolds for precision/recall.")


def main():
    n, seed = flags.FLAGS.n, flags.FLAGS.seed
    if not flags.FLAGS.pr_k + 1 < n <= 5000:
        raise app.UsageError(f"--n must be in [{flags.FLAGS.pr_k + 2}, 5000] (k-NN needs "
                             f"more than pr_k={flags.FLAGS.pr_k} points), got {n}")
    files.check_writable_dir(flags.FLAGS.output_dir, "--output_dir")
    import numpy as np

    from magnets_tf.data.datasets import load_arrays
    from magnets_tf.evaluation import fid
    from magnets_tf.evaluation.inception import InceptionFeatureExtractor

    out_dir = Path(flags.FLAGS.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fashion, _ = load_arrays("fashion_mnist", "test")
    digits, _ = load_arrays("mnist5k", "all")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(fashion))
    sets = {
        "fashion_test_half_a": fashion[np.sort(perm[:n])],
        "fashion_test_half_b": fashion[np.sort(perm[5000:5000 + n])],
        "mnist5k": fid.subsample(digits, n, seed),
        "uniform_noise": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
    }
    extractor = InceptionFeatureExtractor(weights_path=flags.FLAGS.weights,
                                          batch_size=flags.FLAGS.batch_size)
    extractor.features(sets["uniform_noise"][:2])  # trace once, outside the timing
    features, seconds = {}, {}
    for name, images in sets.items():
        cached = out_dir / f"{name}-n{n}-s{seed}.npz"
        key = fid.ReferenceKey(name, "test", n, seed, "fid_inception_v3")
        if cached.exists():
            features[name] = fid.load_reference(cached, key)["features"]
            continue
        start = time.time()
        feats = extractor.features(images, progress=True, description=name)
        seconds[name] = time.time() - start
        fid.save_reference(cached, feats["pool"], key)
        features[name] = feats["pool"]
    stats = {k: fid.feature_statistics(v) for k, v in features.items()}
    reference = "fashion_test_half_a"
    rows = {}
    for other in ("fashion_test_half_b", "mnist5k", "uniform_noise"):
        result = fid.fid_from_stats(stats[reference], stats[other])
        result.update({k: v for k, v in fid.precision_recall(
            features[reference], features[other], k=flags.FLAGS.pr_k).items()
            if k in ("precision", "recall", "k")})
        rows[f"{reference} vs {other}"] = result
    payload = {"n_per_set": n, "seed": seed, "comparisons": rows, "note": fid.SMALL_SAMPLE_NOTE}
    if seconds:
        timed = sum(len(sets[k]) for k in seconds)
        payload["feature_seconds_per_image"] = sum(seconds.values()) / timed
        payload["feature_timing"] = (f"{timed} images, batch {flags.FLAGS.batch_size}, "
                                     f"{os.cpu_count()} logical CPUs (shared)")
    if extractor.with_logits:
        logits = extractor.features(sets[reference])["logits"]
        payload["inception_score"] = fid.inception_score(logits=logits)
    else:
        payload["inception_score"] = ("not computed: default_1.pt has no 1008-way classifier; "
                                      "convert one with --logits_source")
    files.write_json(out_dir / "baselines.json", payload)
    print(f"n per set = {n} (FID is biased upward at this n; compare at equal n only)")
    for name, row in rows.items():
        print(f"{name:50s} FID {row['fid']:8.2f}  precision {row['precision']:.3f}  "
              f"recall {row['recall']:.3f}")
    if "feature_seconds_per_image" in payload:
        print(f"feature time {payload['feature_seconds_per_image'] * 1000:.1f} ms/image "
              f"({payload['feature_timing']})")
    print(f"wrote {out_dir / 'baselines.json'}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
