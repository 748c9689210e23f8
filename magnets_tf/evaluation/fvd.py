"""Frechet Video Distance with a pluggable feature network.

FVD (Unterthiner et al. 2018) is the Frechet distance between Gaussians fitted to video
features; the standard features are the logits of an I3D network trained on Kinetics-400.
The I3D weights are not reachable offline here, so there are two feature networks:
  - `I3DFeatures(path)`: a user-supplied I3D (TF SavedModel directory or Keras
    `.keras`/`.h5` file) fed as the reference FVD code does: RGB clips resized to 224x224,
    scaled to [-1, 1]. A missing path is a clear error.
  - `InceptionFrameFeatures()`: the FID Inception 2048-d pool features of every frame,
    averaged over time. This is NOT the standard FVD: numbers are comparable only to
    numbers computed with the same features (and the same n).
Every result dict states the features used (`features`) and the sample sizes.
The Frechet math and the streaming statistics are fid.py's (`frechet_distance`,
`feature_statistics`).
"""
import os

import gin
import numpy as np
import tensorflow as tf

from magnets_tf.evaluation.fid import SMALL_SAMPLE_NOTE, feature_statistics, frechet_distance
from magnets_tf.evaluation.inception import InceptionFeatureExtractor

I3D_INPUT_SIZE = 224
INCEPTION_FRAME_MEAN = "fid_inception_pool3_frame_mean"


def _check_videos(videos):
    videos = tf.convert_to_tensor(videos)
    if videos.shape.rank != 5 or videos.shape[-1] not in (1, 3):
        raise ValueError(f"videos must be [batch, frames, height, width, 1 or 3], got shape "
                         f"{tuple(videos.shape)}")
    if videos.dtype == tf.uint8:
        return tf.cast(videos, tf.float32) / 255.0
    if not videos.dtype.is_floating:
        raise ValueError(f"videos must be uint8 or float in [0, 1], got {videos.dtype}")
    return tf.cast(videos, tf.float32)


def _batches(videos, batch_size):
    """Batches [b, T, H, W, C] of an array or of an iterable of batches."""
    if isinstance(videos, (np.ndarray, tf.Tensor)):
        for start in range(0, int(videos.shape[0]), batch_size):
            yield videos[start:start + batch_size]
    else:
        for batch in videos:
            for start in range(0, int(batch.shape[0]), batch_size):
                yield batch[start:start + batch_size]


class InceptionFrameFeatures:
    """Per-frame FID Inception pool features averaged over time: [N, 2048].

    `extractor` is an `inception.InceptionFeatureExtractor` (built from the cached
    converted weights when None)."""

    name = INCEPTION_FRAME_MEAN

    def __init__(self, extractor=None, batch_size=8):
        if extractor is None:
            extractor = InceptionFeatureExtractor()
        self.extractor = extractor
        self.batch_size = int(batch_size)

    def batch_features(self, videos):
        videos = _check_videos(videos)
        b, t = int(videos.shape[0]), int(videos.shape[1])
        frames = tf.reshape(videos, [b * t, *videos.shape[2:]])
        if frames.shape[-1] == 1:  # RGB always: the extractor's relaxed trace needs one C.
            frames = tf.repeat(frames, 3, axis=-1)
        pool = self.extractor.features(frames)["pool"]
        return pool.reshape(b, t, -1).mean(axis=1)


class I3DFeatures:
    """Features of a user-supplied I3D network (SavedModel dir or Keras file).

    The network takes float32 [B, T, 224, 224, 3] in [-1, 1] (grey clips are repeated to
    RGB) and returns [B, d] (or a dict: `output_key` picks the entry, default the only
    one or "default")."""

    def __init__(self, path, output_key=None, input_size=I3D_INPUT_SIZE, batch_size=8):
        path = str(path) if path else ""
        if not path or not os.path.exists(path):
            raise FileNotFoundError(
                f"I3D weights not found at {path!r}: FVD with I3D features needs a Kinetics-400 "
                f"I3D as a TF SavedModel directory or a Keras .keras/.h5 file (e.g. export of "
                f"tfhub.dev/deepmind/i3d-kinetics-400/1); offline, use "
                f"InceptionFrameFeatures (features={INCEPTION_FRAME_MEAN!r})")
        self.path = path
        self.output_key = output_key
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        try:
            if os.path.isdir(path):
                self.model = tf.saved_model.load(path)
            else:
                import keras
                self.model = keras.models.load_model(path, compile=False)
        except Exception as e:  # Loaders raise many types for a bad file.
            raise ValueError(f"cannot load the I3D network from {path}: {e}") from None
        self.name = f"i3d:{os.path.basename(os.path.normpath(path))}"

    def _call(self, x):
        model = self.model
        if callable(model):
            return model(x)
        signature = getattr(model, "signatures", {}).get("serving_default")
        if signature is None:
            raise ValueError(f"{self.path}: SavedModel is neither callable nor has a "
                             f"serving_default signature")
        return signature(x)

    def batch_features(self, videos):
        videos = _check_videos(videos)
        b, t, h, w, c = videos.shape
        frames = tf.reshape(videos, [b * t, h, w, c])
        if c == 1:
            frames = tf.repeat(frames, 3, axis=-1)
        frames = tf.image.resize(frames, (self.input_size, self.input_size), method="bilinear")
        x = tf.reshape(frames * 2.0 - 1.0, [b, t, self.input_size, self.input_size, 3])
        out = self._call(x)
        if isinstance(out, dict):
            key = self.output_key or ("default" if "default" in out else None)
            if key is None:
                if len(out) != 1:
                    raise ValueError(f"I3D returns outputs {sorted(out)}: set output_key")
                key = next(iter(out))
            out = out[key]
        out = np.asarray(out, np.float64)
        return out.reshape(out.shape[0], -1)


def video_features(network, videos, batch_size=None):
    """[N, d] features of videos (array [N, T, H, W, C] or iterable of batches)."""
    batch_size = int(batch_size or getattr(network, "batch_size", 8))
    parts = [network.batch_features(batch) for batch in _batches(videos, batch_size)]
    if not parts:
        raise ValueError("no videos to extract features from")
    return np.concatenate(parts, axis=0)


def fvd_from_features(real_features, generated_features, features_name):
    """FVD result dict of two feature arrays [n, d]."""
    real_stats = feature_statistics(real_features)
    gen_stats = feature_statistics(generated_features)
    value = frechet_distance(real_stats["mu"], real_stats["sigma"], gen_stats["mu"],
                             gen_stats["sigma"])
    standard = str(features_name).startswith("i3d")
    return {"fvd": value, "features": str(features_name), "n_real": int(real_stats["n"]),
            "n_generated": int(gen_stats["n"]), "standard_fvd": standard,
            "note": (SMALL_SAMPLE_NOTE if standard else
                     SMALL_SAMPLE_NOTE + " Features are per-frame FID Inception averaged "
                     "over time, not I3D: not comparable to published FVD.")}


@gin.configurable
def frechet_video_distance(real_videos, generated_videos, network=None, i3d_path=None,
                           batch_size=None):
    """FVD between two sets of clips; the result names its features and n.

    network: a feature network (`I3DFeatures`, `InceptionFrameFeatures` or any object
    with `name` and `batch_features`); else I3D from `i3d_path`, else Inception frames.
    """
    if network is None:
        network = I3DFeatures(i3d_path) if i3d_path else InceptionFrameFeatures()
    real = video_features(network, real_videos, batch_size)
    generated = video_features(network, generated_videos, batch_size)
    return fvd_from_features(real, generated, network.name)
