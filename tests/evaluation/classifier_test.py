import numpy as np
import pytest

from magnets_tf.evaluation import classifier


def _separable_images(n, seed=0):
    """Class c lights up row block c: learnable in one epoch, wrong labels are not."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 4, size=n).astype(np.int32)
    images = rng.randint(0, 40, size=(n, 28, 28, 1)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 7 * c:7 * c + 7] = 255
    return images, labels


def test_trains_saves_loads_and_scores(tmp_path):
    x, y = _separable_images(512)
    tx, ty = _separable_images(128, seed=1)
    model, accuracy = classifier.train_classifier(x, y, tx, ty, epochs=2, batch_size=64,
                                                  verbose=0, filters=(8,), dense=16)
    assert accuracy > 0.9
    classifier.save_classifier(model, tmp_path, {"test_accuracy": accuracy})
    loaded = classifier.load_classifier(tmp_path)
    np.testing.assert_array_equal(classifier.predict_classes(loaded, tx),
                                  classifier.predict_classes(model, tx))
    # Labels that do not match the images score at chance level.
    assert classifier.class_accuracy(loaded, tx, (ty + 1) % 4) < 0.5
    # Float [0, 1] input is the same as uint8 input.
    assert classifier.class_accuracy(loaded, tx.astype(np.float32) / 255, ty) == accuracy


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="not a classifier dir"):
        classifier.load_classifier(tmp_path)
    model = classifier.build_classifier(filters=(4,), dense=8)
    with pytest.raises(ValueError, match="expects images of shape"):
        classifier.predict_classes(model, np.zeros([2, 32, 32, 1], np.uint8))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        classifier.class_accuracy(model, np.zeros([2, 28, 28, 1], np.uint8), [0, 1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        classifier.build_classifier(num_classes=1)
