"""Reconstruction FID of a tokenizer (magnets_tf/evaluation/reconstruction.py)."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.data.datasets import load_arrays
from magnets_tf.evaluation import fid, reconstruction
from magnets_tf.evaluation.inception import InceptionFeatureExtractor
from magnets_tf.models.vqgan import build_vqgan
from magnets_tf.training.tokenizer_trainer import psnr_per_image


def small_feature_network():
    """A fixed random conv net with the Inception extractor's dict output: fast features
    that still tell images apart (the metric, not the network, is under test)."""
    tf.keras.utils.set_random_seed(1)
    pixels = tf.keras.Input((299, 299, 3))
    x = tf.keras.layers.AveragePooling2D(23)(pixels / 255.0)
    x = tf.keras.layers.Conv2D(6, 3, activation="tanh")(x)
    return tf.keras.Model(pixels, {"pool": tf.keras.layers.GlobalAveragePooling2D()(x)})


@pytest.fixture(scope="module")
def setting():
    tf.keras.utils.set_random_seed(0)
    tokenizer = build_vqgan("small_8x8", image_shape=(28, 28, 1))
    extractor = InceptionFeatureExtractor(model=small_feature_network(), batch_size=32)
    images, _ = load_arrays("fashion_mnist", "test")
    reference_images = fid.subsample(images, 200, 0)
    features = extractor.features(reference_images)["pool"]
    reference = dict(fid.feature_statistics(features), features=features)
    return tokenizer, extractor, reference, fid.subsample(images, 64, 1)


def test_reconstruct_encodes_then_decodes_every_image(setting):
    tokenizer, _, _, images = setting
    tokens, recons = reconstruction.reconstruct(tokenizer, images, batch_size=24,
                                                progress=False)
    assert tokens.shape == (64, *tokenizer.grid_shape) and recons.shape == (64, 28, 28, 1)
    x = images[:5].astype(np.float32) / 255.0
    np.testing.assert_array_equal(tokens[:5], tokenizer.encode(x).numpy())
    np.testing.assert_allclose(recons[:5], np.clip(tokenizer.decode(tokens[:5]), 0, 1),
                               atol=1e-5)
    with pytest.raises(ValueError, match="no images"):
        reconstruction.reconstruct(tokenizer, images[:0], 8)


def test_reconstruction_metrics_score_the_reconstructions_not_the_inputs(setting):
    tokenizer, extractor, reference, images = setting
    metrics, grid = reconstruction.evaluate_reconstruction(
        tokenizer, images, extractor, reference, batch_size=32, progress=False,
        keep_images=6)
    _, recons = reconstruction.reconstruct(tokenizer, images, 32, progress=False)
    # An untrained tokenizer's reconstructions are far from the data; the inputs are not.
    assert metrics["rfid"] > 5 * metrics["fid_real"] > 0
    expected = fid.feature_statistics(extractor.features(recons)["pool"])
    assert metrics["rfid"] == pytest.approx(fid.frechet_distance(
        expected["mu"], expected["sigma"], reference["mu"], reference["sigma"]), rel=1e-4)
    real = images.astype(np.float32) / 255.0
    assert metrics["psnr_db"] == pytest.approx(float(np.mean(psnr_per_image(real, recons))),
                                               rel=1e-5)
    assert metrics["n"] == 64 and metrics["n_reference"] == 200
    assert 0 < metrics["codebook_usage"] <= 1 and metrics["grid"] == [8, 8]
    assert grid.shape == (12, 28, 28, 1)
    np.testing.assert_allclose(grid[:6], real[:6])


def test_known_input_features_are_used_instead_of_recomputed(setting):
    tokenizer, extractor, reference, images = setting
    features = extractor.features(images)["pool"]
    computed, _ = reconstruction.evaluate_reconstruction(
        tokenizer, images, extractor, reference, batch_size=32, progress=False)
    given, _ = reconstruction.evaluate_reconstruction(
        tokenizer, images, extractor, reference, batch_size=32, progress=False,
        real_features=features)
    assert given["fid_real"] == pytest.approx(computed["fid_real"], rel=1e-5)
    shifted, _ = reconstruction.evaluate_reconstruction(
        tokenizer, images, extractor, reference, batch_size=32, progress=False,
        real_features=features + 1.0)
    assert shifted["fid_real"] > computed["fid_real"] + 1.0
