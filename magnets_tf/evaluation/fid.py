"""Sample-quality metrics on FID Inception features: FID, Inception Score, precision/recall.

- FID (Heusel et al. 2017): Frechet distance between Gaussians fitted to pool features.
  Mean and covariance are accumulated in float64 batch by batch (Chan et al.'s pairwise
  update), and tr(sqrt(S1 S2)) is computed as the sum of square roots of the eigenvalues
  of the symmetric PSD matrix sqrt(S1) S2 sqrt(S1): real by construction, no complex
  round-off from a non-symmetric `sqrtm`.
- IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over 10 splits, mean and std.
- Precision/recall (Kynkaanniemi et al. 2019): the k-NN manifold of each set is the union
  of balls around its points reaching their k-th nearest neighbour; precision is the
  fraction of generated points inside the real manifold, recall the reverse.

FID is biased upward at small sample sizes (the bias grows roughly like 1/n), so values
are only comparable at equal n: every result carries n and this note.
"""
import dataclasses
import hashlib
import json
import pathlib

import numpy as np

from magnets_tf.utils import files

SMALL_SAMPLE_NOTE = ("FID is biased upward at small n (roughly ~1/n) and IS/precision/recall "
                     "also depend on n: compare values only at equal n; the standard is "
                     "n=50000 generated vs the full reference set.")


class RunningStats:
    """Streaming mean and covariance of feature vectors (float64, numerically stable)."""

    def __init__(self, dim):
        self.dim = int(dim)
        self.n = 0
        self.mean = np.zeros(self.dim, np.float64)
        self._m2 = np.zeros((self.dim, self.dim), np.float64)  # sum of centred outer products

    def update(self, batch):
        batch = np.asarray(batch, np.float64)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"expected features [n, {self.dim}], got shape {batch.shape}")
        nb = batch.shape[0]
        if nb == 0:
            return self
        mean_b = batch.mean(axis=0)
        centred = batch - mean_b
        m2_b = centred.T @ centred
        total = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / total)
        self._m2 += m2_b + np.outer(delta, delta) * (self.n * nb / total)
        self.n = total
        return self

    @property
    def covariance(self):
        """Unbiased sample covariance (n - 1), like np.cov."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 samples, have {self.n}")
        return self._m2 / (self.n - 1)

    def as_dict(self):
        return {"mu": self.mean, "sigma": self.covariance, "n": self.n}


def feature_statistics(features, batch_size=1000):
    """{'mu', 'sigma', 'n'} of [n, d] features, accumulated in batches."""
    features = np.asarray(features)
    stats = RunningStats(features.shape[1])
    for start in range(0, features.shape[0], batch_size):
        stats.update(features[start:start + batch_size])
    return stats.as_dict()


def _psd_sqrt(matrix):
    """Symmetric square root of a symmetric PSD matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1, sigma2):
    """tr(sqrt(sigma1 @ sigma2)) for PSD matrices, via the symmetric sqrt(S1) S2 sqrt(S1)."""
    root = _psd_sqrt(np.asarray(sigma1, np.float64))
    inner = root @ np.asarray(sigma2, np.float64) @ root
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))


def fid_from_stats(stats1, stats2):
    """FID result dict of two {'mu','sigma','n'} statistics."""
    return {"fid": frechet_distance(stats1["mu"], stats1["sigma"], stats2["mu"], stats2["sigma"]),
            "n_a": int(stats1["n"]), "n_b": int(stats2["n"]), "note": SMALL_SAMPLE_NOTE}


def _log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(logits=None, probs=None, splits=10):
    """{'is_mean', 'is_std', 'n', 'splits'} from classifier logits (or probabilities).

    Standard protocol: the samples are cut into `splits` equal consecutive parts, IS is
    computed on each, and the mean and standard deviation over parts are reported.
    """
    if (logits is None) == (probs is None):
        raise ValueError("pass exactly one of logits or probs")
    if logits is not None:
        log_p = _log_softmax(logits)
    else:
        probs = np.asarray(probs, np.float64)
        if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError("probs must be non-negative rows summing to 1")
        log_p = np.log(np.clip(probs, 1e-30, None))
    n = log_p.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"inception_score needs at least splits={splits} samples, got {n}")
    scores = []
    for part in np.array_split(log_p, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0).clip(1e-30, None))
        kl = (p * (part - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return {"is_mean": float(np.mean(scores)), "is_std": float(np.std(scores)), "n": int(n),
            "splits": int(splits), "note": SMALL_SAMPLE_NOTE}


def _pairwise_sq_distances(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def knn_radii(features, k=3, batch_size=1000):
    """Squared distance of every point to its k-th nearest other point of the same set."""
    features = np.asarray(features)
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k={k} must be in [1, {n - 1}] for {n} points")
    radii = np.empty(n, np.float64)
    for start in range(0, n, batch_size):
        d = _pairwise_sq_distances(features[start:start + batch_size], features)
        # Column k of the sorted row: index 0 is the point itself (distance 0).
        radii[start:start + batch_size] = np.partition(d, k, axis=1)[:, k]
    return radii


def _coverage(manifold, radii, queries, batch_size=1000):
    """Fraction of `queries` inside at least one ball (centre in `manifold`, radius^2 `radii`)."""
    inside = 0
    for start in range(0, len(queries), batch_size):
        d = _pairwise_sq_distances(queries[start:start + batch_size], manifold)
        inside += int(np.any(d <= radii[None, :], axis=1).sum())
    return inside / len(queries)


def precision_recall(real_features, fake_features, k=3, batch_size=1000):
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds."""
    real, fake = np.asarray(real_features), np.asarray(fake_features)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [n, d] with equal d, got {real.shape} and {fake.shape}")
    real_radii = knn_radii(real, k, batch_size)
    fake_radii = knn_radii(fake, k, batch_size)
    return {"precision": _coverage(real, real_radii, fake, batch_size),
            "recall": _coverage(fake, fake_radii, real, batch_size),
            "k": int(k), "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0]),
            "note": SMALL_SAMPLE_NOTE}


# --- Reference statistics cache --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ReferenceKey:
    """What a cached reference depends on: data set, split, sample count, seed, network."""

    dataset: str
    split: str
    n: int
    seed: int
    network: str

    def filename(self):
        digest = hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
        return f"{self.dataset}-{self.split}-n{self.n}-s{self.seed}-{digest.hexdigest()[:10]}.npz"


def save_reference(path, features, key, logits=None):
    """Writes features + their statistics (+ logits) to `path` atomically."""
    path = pathlib.Path(path)
    stats = feature_statistics(features)
    arrays = dict(mu=stats["mu"], sigma=stats["sigma"], n=np.int64(stats["n"]),
                  features=np.asarray(features, np.float32),
                  key=np.array(json.dumps(dataclasses.asdict(key), sort_keys=True)))
    if logits is not None:
        arrays["logits"] = np.asarray(logits, np.float32)
    files.atomic_write(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz")
    return path


def load_reference(path, key=None):
    """{'mu','sigma','n','features'(,'logits')} of a cached reference; ValueError if it was
    made for another `key`."""
    try:
        with np.load(path) as data:
            out = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read reference statistics {path}: {e}") from None
    missing = {"mu", "sigma", "n", "features", "key"} - set(out)
    if missing:
        raise ValueError(f"reference statistics {path} lack {sorted(missing)}")
    if key is not None and json.loads(str(out["key"])) != dataclasses.asdict(key):
        raise ValueError(f"reference statistics {path} were computed for {out['key']}, "
                         f"not {dataclasses.asdict(key)}")
    out["n"] = int(out["n"])
    return out


def subsample(images, n, seed):
    """`n` images drawn without replacement by a seeded permutation (all if n is None)."""
    if n is None or n >= len(images):
        return images
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    index = np.sort(np.random.default_rng(seed).permutation(len(images))[:n])
    return images[index]


def reference_statistics(dataset, split, extractor, n=None, seed=0, cache_dir=None,
                         refresh=False, network="fid_inception_v3", progress=True):
    """Cached FID reference of an offline data set split (`magnets_tf.data.datasets`).

    The .npz under `cache_dir/fid_reference/` holds mu, sigma, n, the pool features (for
    precision/recall) and logits when the extractor has them.
    """
    from magnets_tf.data.datasets import load_arrays  # data sits beside evaluation
    from magnets_tf.checkpoints.fid_inception import default_cache_dir

    images, _ = load_arrays(dataset, split)
    images = subsample(images, n, seed)
    key = ReferenceKey(dataset, split, int(len(images)), int(seed), network)
    folder = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / "fid_reference" / key.filename()
    if path.exists() and not refresh:
        return load_reference(path, key)
    feats = extractor.features(images, progress=progress,
                               description=f"reference {dataset}/{split}")
    save_reference(path, feats["pool"], key, feats.get("logits"))
    return load_reference(path, key)
