"""FVD: Frechet math through fid.py, feature networks (Inception frames, user I3D files)."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.evaluation import fid, fvd
from magnets_tf.evaluation.inception import InceptionFeatureExtractor


def _mean_rgb_network():
    """Stand-in for the FID Inception: 299x299x3 pixels -> {"pool": mean RGB / 255}."""
    inputs = keras.Input((299, 299, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, {"pool": keras.layers.Rescaling(1 / 255.0)(pooled)})


@pytest.fixture(scope="module")
def frame_network():
    return fvd.InceptionFrameFeatures(InceptionFeatureExtractor(model=_mean_rgb_network()))


def test_frechet_math_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2.0 + np.array([1.0, 0.0, -1.0])
    out = fvd.fvd_from_features(a, b, "test_features")
    # Isotropic: ||mu1-mu2||^2 + sum (s1 - s2)^2 = 2 + 3 * (1 - 2)^2 = 5.
    assert out["fvd"] == pytest.approx(5.0, rel=0.05)
    same = fvd.fvd_from_features(a, a, "test_features")
    assert same["fvd"] == pytest.approx(0.0, abs=1e-6)
    assert out["features"] == "test_features" and out["n_real"] == out["n_generated"] == 4000
    assert not out["standard_fvd"] and "not I3D" in out["note"]
    # Same numbers as fid.py's functions on the same statistics (no second implementation).
    sa, sb = fid.feature_statistics(a), fid.feature_statistics(b)
    assert out["fvd"] == fid.frechet_distance(sa["mu"], sa["sigma"], sb["mu"], sb["sigma"])


def test_inception_frame_features_average_over_time(frame_network):
    videos = np.zeros((2, 3, 8, 8, 1), np.float32)
    videos[0, 0] = 0.3
    videos[1] = 0.9
    feats = fvd.video_features(frame_network, videos)
    assert feats.shape == (2, 3)
    np.testing.assert_allclose(feats[0], [0.1, 0.1, 0.1], atol=3e-3)  # (0.3 + 0 + 0) / 3
    np.testing.assert_allclose(feats[1], [0.9, 0.9, 0.9], atol=3e-3)
    assert frame_network.name == fvd.INCEPTION_FRAME_MEAN


def test_fvd_separates_distributions_and_states_features(frame_network):
    rng = np.random.default_rng(1)
    real = rng.uniform(0, 0.5, size=(40, 2, 8, 8, 3)).astype(np.float32)
    real2 = rng.uniform(0, 0.5, size=(40, 2, 8, 8, 3)).astype(np.float32)
    brighter = np.clip(real2 + 0.3, 0, 1)
    near = fvd.frechet_video_distance(real, real2, network=frame_network)
    far = fvd.frechet_video_distance(real, brighter, network=frame_network)
    assert far["fvd"] > 10 * near["fvd"] and far["fvd"] > 0.2
    assert far["features"] == fvd.INCEPTION_FRAME_MEAN and far["n_generated"] == 40
    batches = [brighter[:16], brighter[16:]]  # Iterables of batches work too.
    assert fvd.frechet_video_distance(real, batches, network=frame_network)["fvd"] == \
        pytest.approx(far["fvd"], rel=1e-9)


def test_bad_videos_are_named(frame_network):
    with pytest.raises(ValueError, match="videos must be"):
        fvd.video_features(frame_network, np.zeros((2, 8, 8, 3), np.float32))


def test_i3d_missing_path_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="I3D weights not found.*InceptionFrameFeatures"):
        fvd.I3DFeatures("/no/such/i3d")
    with pytest.raises(FileNotFoundError, match="I3D"):
        fvd.frechet_video_distance(np.zeros((2, 2, 8, 8, 3)), np.zeros((2, 2, 8, 8, 3)),
                                   i3d_path="/no/such/i3d.keras")


def _toy_i3d():
    inputs = keras.Input((4, 224, 224, 3))
    x = keras.layers.AveragePooling3D((1, 56, 56))(inputs)
    return keras.Model(inputs, keras.layers.Dense(5, name="logits")(keras.layers.Flatten()(x)))


def test_i3d_from_keras_file_and_saved_model(tmp_path):
    model = _toy_i3d()
    videos = np.random.default_rng(2).uniform(size=(3, 4, 32, 32, 1)).astype(np.float32)
    x = tf.image.resize(tf.repeat(tf.reshape(videos, [12, 32, 32, 1]), 3, -1), (224, 224))
    expected = model(tf.reshape(x * 2 - 1, [3, 4, 224, 224, 3])).numpy()

    path = str(tmp_path / "i3d.keras")
    model.save(path)
    net = fvd.I3DFeatures(path)
    np.testing.assert_allclose(fvd.video_features(net, videos), expected, atol=1e-4)
    assert net.name == "i3d:i3d.keras"

    module = tf.Module()
    module.model = model
    module.__call__ = tf.function(lambda v: {"default": model(v)},
                                  input_signature=[tf.TensorSpec([None, 4, 224, 224, 3])])
    saved = str(tmp_path / "i3d_saved")
    tf.saved_model.save(module, saved)
    net = fvd.I3DFeatures(saved)
    np.testing.assert_allclose(fvd.video_features(net, videos), expected, atol=1e-4)
    result = fvd.frechet_video_distance(videos, videos, network=net)
    assert result["standard_fvd"] and result["features"] == "i3d:i3d_saved"


@pytest.mark.slow
def test_real_fid_inception_frame_features_on_moving_mnist():
    from magnets_tf.data.video import moving_mnist_arrays

    a, _ = moving_mnist_arrays("moving_mnist", "train", num_videos=6, num_frames=4,
                               frame_size=32, seed=0)
    b, _ = moving_mnist_arrays("moving_mnist", "test", num_videos=6, num_frames=4,
                               frame_size=32, seed=0)
    net = fvd.InceptionFrameFeatures()
    feats = fvd.video_features(net, a)
    assert feats.shape == (6, 2048) and np.all(np.isfinite(feats))
    out = fvd.frechet_video_distance(a, b, network=net)
    noise = np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8)
    assert fvd.frechet_video_distance(a, noise, network=net)["fvd"] > out["fvd"]
