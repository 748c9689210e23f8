"""FID Inception features of image batches: any size or channel count in, 2048-d pool out.

Images go to the network the way TF FID feeds it: pixel values in [0, 255], grayscale
repeated to RGB, bilinear resize to 299x299 (half-pixel centres, no antialiasing); the
network then scales them to (x - 128) / 128. uint8 images are read as [0, 255], float
images as [0, 1] (the range `image_dataset` and the VQGAN decoder produce).
"""
import gin
import numpy as np
import tensorflow as tf
import tqdm

from magnets_tf.checkpoints import fid_inception


def to_network_pixels(images, size=fid_inception.INPUT_SIZE):
    """[B,H,W,C] uint8 in [0,255] or float in [0,1], C in {1,3} -> float32 [B,299,299,3]
    in [0, 255]."""
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4:
        raise ValueError(f"images must be [batch, height, width, channels], got shape {images.shape}")
    channels = images.shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {channels}")
    if images.dtype == tf.uint8:
        pixels = tf.cast(images, tf.float32)
    elif images.dtype.is_floating:
        pixels = tf.cast(images, tf.float32) * 255.0
    else:
        raise ValueError(f"images must be uint8 in [0, 255] or float in [0, 1], got {images.dtype}")
    if channels == 1:
        pixels = tf.repeat(pixels, 3, axis=-1)
    if tuple(pixels.shape[1:3]) != (size, size):
        pixels = tf.image.resize(pixels, (size, size), method="bilinear", antialias=False)
    return tf.clip_by_value(pixels, 0.0, 255.0)


@gin.configurable
class InceptionFeatureExtractor:
    """Batched FID Inception features ("pool" [N, 2048], and "logits" [N, 1008] when the
    classifier weights were converted).

    `model` overrides the network (any Keras model with the same dict outputs, e.g. a
    `build_fid_inception` with other weights); otherwise the converted weights are loaded
    from `weights_path` or the cache.
    """

    def __init__(self, model=None, weights_path=None, cache_dir=None, with_logits=False,
                 batch_size=50, jit_compile=False):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model or fid_inception.load_fid_inception(
            weights_path=weights_path, cache_dir=cache_dir, with_logits=with_logits)
        self.batch_size = int(batch_size)
        outputs = getattr(self.model, "output", None)
        self.with_logits = isinstance(outputs, dict) and "logits" in outputs
        # One relaxed-shape function per channel count: a single function relaxed over
        # 1- and 3-channel inputs would lose the channel count it branches on.
        self._jit_compile = jit_compile
        self._steps = {}

    def _forward(self, images):
        return self.model(to_network_pixels(images), training=False)

    def batch_features(self, images):
        """Features of one batch, as float32 numpy arrays."""
        channels = images.shape[-1] if len(images.shape) == 4 else None
        if channels not in self._steps:
            self._steps[channels] = tf.function(self._forward, jit_compile=self._jit_compile,
                                                reduce_retracing=True)
        return {k: np.asarray(v, np.float32)
                for k, v in self._steps[channels](images).items()}

    def features(self, images, progress=False, description="inception features"):
        """Features of an array [N,H,W,C] or an iterable of such batches, concatenated."""
        if isinstance(images, (np.ndarray, tf.Tensor)):
            total = int(images.shape[0])
            batches = (images[i:i + self.batch_size] for i in range(0, total, self.batch_size))
        else:
            total, batches = None, images
        out = {}
        with tqdm.tqdm(total=total, desc=description, unit="img", disable=not progress,
                       leave=False) as bar:
            for batch in batches:
                for start in range(0, int(batch.shape[0]), self.batch_size):
                    chunk = batch[start:start + self.batch_size]
                    for key, value in self.batch_features(chunk).items():
                        out.setdefault(key, []).append(value)
                    bar.update(int(chunk.shape[0]))
        if not out:
            raise ValueError("no images to extract features from")
        return {k: np.concatenate(v, axis=0) for k, v in out.items()}
