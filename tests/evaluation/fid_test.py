"""Tests for FID, IS and precision/recall against direct computations and known answers."""
import numpy as np
import pytest
import scipy.linalg

from magnets_tf.evaluation import fid


def _random_cov(rng, d, rank=None):
    a = rng.normal(size=(d, rank or 2 * d))
    return a @ a.T / a.shape[1]


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


@pytest.mark.parametrize("d", [4, 64])
def test_frechet_distance_matches_scipy(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    want = _scipy_fid(mu1, s1, mu2, s2)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8, abs=1e-8)


def test_frechet_distance_rank_deficient_and_identical():
    rng = np.random.default_rng(0)
    d = 32
    s1, s2 = _random_cov(rng, d, rank=8), _random_cov(rng, d, rank=8)  # n < d, like small FID
    mu = rng.normal(size=d)
    want = _scipy_fid(mu, s1, mu + 1, s2)
    assert fid.frechet_distance(mu, s1, mu + 1, s2) == pytest.approx(want, rel=1e-5)
    assert fid.frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-8)
    # Diagonal covariances have the closed form sum (sqrt(a) - sqrt(b))^2.
    a, b = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    closed = ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert fid.frechet_distance(mu, np.diag(a), mu, np.diag(b)) == pytest.approx(closed, rel=1e-10)
    with pytest.raises(ValueError, match="differ in shape"):
        fid.frechet_distance(mu, s1, mu[:-1], s2)


def test_running_stats_match_numpy_across_uneven_batches():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(257, 16)) * 3 + 1e4  # large offset: naive sums lose precision
    stats = fid.RunningStats(16)
    for start, stop in [(0, 1), (1, 50), (50, 51), (51, 200), (200, 257)]:
        stats.update(x[start:stop])
    assert stats.n == 257
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match=r"expected features \[n, 16\]"):
        stats.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        _ = fid.RunningStats(2).update(np.zeros((1, 2))).covariance


def test_fid_from_stats_reports_n():
    rng = np.random.default_rng(2)
    a = fid.feature_statistics(rng.normal(size=(300, 8)), batch_size=64)
    b = fid.feature_statistics(rng.normal(size=(200, 8)) + 2.0)
    out = fid.fid_from_stats(a, b)
    assert out["n_a"] == 300 and out["n_b"] == 200 and "biased" in out["note"]
    assert 8 * 4 * 0.8 < out["fid"] < 8 * 4 * 1.2  # ||mu diff||^2 = 32, covariances equal


def test_inception_score_known_distributions():
    classes, per_class = 10, 50
    onehot = np.repeat(np.eye(classes), per_class, axis=0)
    rng = np.random.default_rng(3)
    rng.shuffle(onehot)
    # Confident and balanced: IS = number of classes (each split still sees every class
    # only approximately, so use 1 split for the exact value).
    assert fid.inception_score(probs=onehot, splits=1)["is_mean"] == pytest.approx(classes)
    # Every sample has the same prediction: IS = 1.
    same = np.tile(rng.dirichlet(np.ones(classes)), (100, 1))
    assert fid.inception_score(probs=same)["is_mean"] == pytest.approx(1.0)
    # Smoothed one-hot with balanced classes: IS = exp(log C - H(row)).
    eps = 0.3
    smooth = (1 - eps) * np.repeat(np.eye(classes), 100, axis=0) + eps / classes
    row = smooth[0]
    want = np.exp(np.log(classes) + (row * np.log(row)).sum())
    out = fid.inception_score(logits=np.log(smooth), splits=10)  # each split = one class
    assert out["splits"] == 10 and out["n"] == 1000
    assert fid.inception_score(probs=smooth[::10], splits=1)["is_mean"] == pytest.approx(want)
    assert out["is_mean"] == pytest.approx(1.0)  # a single class per split: no diversity
    with pytest.raises(ValueError, match="at least splits=10"):
        fid.inception_score(probs=onehot[:5])


def test_precision_recall_on_separable_clouds():
    rng = np.random.default_rng(4)
    d = 8
    real = rng.normal(size=(600, d))
    same = rng.normal(size=(600, d))
    far = rng.normal(size=(600, d)) + 50.0
    out = fid.precision_recall(real, same, k=3)
    assert out["precision"] > 0.8 and out["recall"] > 0.8
    assert out["n_real"] == 600 and out["k"] == 3
    out = fid.precision_recall(real, far, k=3)
    assert out["precision"] == 0.0 and out["recall"] == 0.0
    # Two well separated real modes; the generator covers one: precision high, recall ~1/2.
    modes = np.concatenate([rng.normal(size=(300, d)), rng.normal(size=(300, d)) + 30.0])
    one_mode = rng.normal(size=(600, d))
    out = fid.precision_recall(modes, one_mode, k=3)
    assert out["precision"] > 0.8
    assert 0.35 < out["recall"] < 0.55


def test_knn_radii_exact():
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(fid.knn_radii(points, k=1), [1.0, 1.0, 4.0, 16.0])
    np.testing.assert_allclose(fid.knn_radii(points, k=2, batch_size=3), [9.0, 4.0, 9.0, 36.0])
    with pytest.raises(ValueError, match="k=4"):
        fid.knn_radii(points, k=4)


def test_reference_cache_roundtrip_and_key_check(tmp_path):
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(20, 6)).astype(np.float32)
    key = fid.ReferenceKey("fashion_mnist", "test", 20, 0, "net")
    path = fid.save_reference(tmp_path / key.filename(), feats, key)
    got = fid.load_reference(path, key)
    assert got["n"] == 20
    np.testing.assert_allclose(got["sigma"], np.cov(feats.astype(np.float64), rowvar=False),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["features"], feats)
    other = fid.ReferenceKey("fashion_mnist", "train", 20, 0, "net")
    assert other.filename() != key.filename()
    with pytest.raises(ValueError, match="were computed for"):
        fid.load_reference(path, other)
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read reference statistics"):
        fid.load_reference(tmp_path / "bad.npz")
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".npz" and p.name != "bad.npz"] \
        == [key.filename()]


def test_subsample_is_seeded_and_sorted():
    x = np.arange(100)
    a, b = fid.subsample(x, 10, seed=1), fid.subsample(x, 10, seed=1)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 10 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, fid.subsample(x, 10, seed=2))
    assert fid.subsample(x, None, 0) is x
