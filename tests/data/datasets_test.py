"""Offline loaders against the real files, tfds paths against mocked tfds."""
import gzip
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from magnets_tf.data import datasets


@pytest.fixture(scope="module")
def fashion_train():
    return datasets.load_arrays("fashion_mnist", "train")


def test_fashion_mnist_train_real_files(fashion_train):
    images, labels = fashion_train
    assert images.shape == (60000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (60000,) and labels.dtype == np.int32
    assert labels.min() == 0 and labels.max() == 9
    assert np.all(np.bincount(labels) == 6000)  # Fashion-MNIST is balanced.
    assert images.max() == 255 and images.min() == 0


def test_fashion_mnist_test_split():
    images, labels = datasets.load_arrays("fashion_mnist", "test")
    assert images.shape == (10000, 28, 28, 1) and labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))
    # First test labels of the published set: ankle boot, pullover, trouser, trouser.
    assert labels[:4].tolist() == [9, 2, 1, 1]


def test_mnist5k_splits():
    images, labels = datasets.load_arrays("mnist5k", "all")
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int32 and labels.min() == 0 and labels.max() == 9
    train, train_labels = datasets.load_arrays("mnist5k", "train")
    test, test_labels = datasets.load_arrays("mnist5k", "test")
    assert train.shape[0] == 4000 and test.shape[0] == 1000
    np.testing.assert_array_equal(np.concatenate([train, test]), images)
    np.testing.assert_array_equal(np.concatenate([train_labels, test_labels]), labels)


def test_unknown_names_and_splits():
    with pytest.raises(ValueError, match="unknown offline data set"):
        datasets.load_arrays("cifar10", "train")
    with pytest.raises(ValueError, match="splits"):
        datasets.load_arrays("fashion_mnist", "validation")
    with pytest.raises(ValueError, match="splits"):
        datasets.load_arrays("mnist5k", "validation")


def _copy_fashion(tmp_path):
    for name in os.listdir(datasets.FASHION_MNIST_DIR):
        shutil.copy(os.path.join(datasets.FASHION_MNIST_DIR, name), tmp_path / name)
    return tmp_path


def test_missing_fashion_mnist_names_package(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError,
                       match="apt-get install dataset-fashion-mnist"):
        datasets._fashion_mnist("test", data_dir=str(tmp_path))


def test_truncated_gzip_is_clear_error(tmp_path):
    data_dir = _copy_fashion(tmp_path)
    path = data_dir / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(datasets.CorruptDatasetError, match="corrupted or truncated"):
        datasets._fashion_mnist("test", data_dir=str(data_dir))


def test_bad_magic_and_short_payload(tmp_path):
    data_dir = _copy_fashion(tmp_path)
    labels_path = data_dir / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels_path.read_bytes())
    labels_path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + raw[4:]))
    with pytest.raises(datasets.CorruptDatasetError, match="magic number"):
        datasets._fashion_mnist("test", data_dir=str(data_dir))
    labels_path.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(datasets.CorruptDatasetError, match="bytes after decompression"):
        datasets._fashion_mnist("test", data_dir=str(data_dir))


def test_corrupt_mnist5k(tmp_path):
    path = tmp_path / "mnist_5k.csv.gz"
    path.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(datasets.CorruptDatasetError, match=r"\(5000, 785\)"):
        datasets._mnist5k("all", path=str(path))


def test_image_dataset_offline_batches():
    ds = datasets.image_dataset("mnist5k", "test", batch_size=64, image_size=32)
    batches = list(ds)
    assert sum(int(b["label"].shape[0]) for b in batches) == 1000
    first = batches[0]
    assert first["image"].shape == (64, 32, 32, 1) and first["image"].dtype == tf.float32
    assert first["label"].dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(first["image"]))
    assert float(tf.reduce_max(first["image"])) <= 1.0


def test_image_dataset_native_size_matches_arrays():
    images, labels = datasets.load_arrays("mnist5k", "test")
    batch = next(iter(datasets.image_dataset("mnist5k", "test", batch_size=8)))
    np.testing.assert_allclose(batch["image"].numpy(), images[:8] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(batch["label"].numpy(), labels[:8])


def test_image_dataset_shuffle_is_seeded():
    def first_labels(seed):
        ds = datasets.image_dataset("mnist5k", "train", 32, shuffle=True, repeat=True, seed=seed)
        return next(iter(ds))["label"].numpy()
    np.testing.assert_array_equal(first_labels(3), first_labels(3))
    assert not np.array_equal(first_labels(3), first_labels(4))


def test_center_crop_resize_of_wide_image():
    # Wide image: left third 0, middle third 255, right third 0 -> center crop is all 255.
    image = np.zeros((30, 90, 3), np.uint8)
    image[:, 30:60] = 255
    out = datasets.preprocess_image(tf.constant(image), image_size=16)
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out.numpy(), 1.0, atol=1e-6)


def test_tfds_imagenet_mocked():
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = datasets.image_dataset("imagenet2012", "validation", batch_size=3, image_size=32)
        batches = list(ds)
    assert len(batches) == 2
    for batch in batches:
        assert batch["image"].shape == (3, 32, 32, 3) and batch["image"].dtype == tf.float32
        assert batch["label"].dtype == tf.int32
        labels = batch["label"].numpy()
        assert labels.min() >= 0 and labels.max() < 1000
        assert 0.0 <= batch["image"].numpy().min() and batch["image"].numpy().max() <= 1.0


def test_tfds_random_crop_flip_mocked():
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = datasets.image_dataset("imagenet2012", "train", batch_size=2, image_size=24,
                                    random_crop_flip=True, shuffle=True, repeat=True, seed=1)
        batch = next(iter(ds))
    assert batch["image"].shape == (2, 24, 24, 3)


def test_tfds_missing_names_how_to_prepare(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="tfds build imagenet2012"):
        datasets.image_dataset("imagenet2012", "train", 2, data_dir=str(tmp_path))


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        datasets.image_dataset("mnist5k", "test", 0)
    with pytest.raises(ValueError, match="image_size"):
        datasets.image_dataset("mnist5k", "test", 2, image_size=(3, 4, 5))
    with pytest.raises(ValueError, match="random_crop_flip needs image_size"):
        datasets.image_dataset("mnist5k", "test", 2, random_crop_flip=True)
