"""A small Fashion-MNIST (or any 28x28 gray) classifier for class accuracy of samples.

Class accuracy = how often a generated image is recognised as the class it was
conditioned on: the conditional-generation counterpart of FID/IS on small data sets.
"""
import json
import os

import gin
import keras
import numpy as np

from magnets_tf.utils import files
from magnets_tf.utils import images as images_lib

CONFIG_FILE = "classifier_config.json"
WEIGHTS_FILE = "classifier.weights.h5"
METRICS_FILE = "metrics.json"


@gin.configurable
def build_classifier(image_shape=(28, 28, 1), num_classes=10, filters=(32, 64), dense=128,
                     dropout=0.3, seed=0):
    """Conv-BN-ReLU-pool x len(filters), dropout, dense, softmax logits."""
    if len(image_shape) != 3 or min(image_shape) <= 0:
        raise ValueError(f"image_shape must be (H, W, C) with positive sizes, got {image_shape}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(tuple(image_shape), name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}a")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}a")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}b")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}b")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.Dense(dense, activation="relu", name="dense")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, logits, name="class_accuracy_classifier")
    model.build_config_ = dict(image_shape=list(image_shape), num_classes=num_classes,
                               filters=list(filters), dense=dense, dropout=dropout)
    return model


def train_classifier(train_images, train_labels, test_images, test_labels, epochs=3,
                     batch_size=128, learning_rate=2e-3, verbose=1, **build_kwargs):
    """Trains on uint8 or [0,1] images; returns (model, test accuracy)."""
    train_x, test_x = _as_float(train_images), _as_float(test_images)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    model = build_classifier(image_shape=train_x.shape[1:], num_classes=num_classes,
                             **build_kwargs)
    steps = epochs * int(np.ceil(len(train_x) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_x, train_labels, batch_size=batch_size, epochs=epochs, verbose=verbose,
              shuffle=True)
    accuracy = class_accuracy(model, test_x, test_labels)
    return model, accuracy


def predict_classes(model, images, batch_size=500):
    """Predicted labels [N] of images (uint8, or float in [0, 1])."""
    x = _as_float(images)
    if tuple(x.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"classifier expects images of shape {tuple(model.input_shape[1:])}, "
                         f"got {tuple(x.shape[1:])}")
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return np.argmax(logits, axis=-1).astype(np.int32)


def class_accuracy(model, images, labels):
    """Fraction of images whose predicted class equals `labels`."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    return float(np.mean(predict_classes(model, images) == labels))


def save_classifier(model, model_dir, metrics):
    """Writes config, weights and metrics atomically into model_dir."""
    files.atomic_write(os.path.join(model_dir, WEIGHTS_FILE), model.save_weights,
                       suffix=".weights.h5")
    for name, payload in ((CONFIG_FILE, model.build_config_), (METRICS_FILE, metrics)):
        files.write_json(os.path.join(model_dir, name), payload)


def load_classifier(model_dir):
    """The trained classifier of model_dir; ValueError naming a missing file."""
    paths = [os.path.join(model_dir, n) for n in (CONFIG_FILE, WEIGHTS_FILE)]
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"{path} not found: {model_dir} is not a classifier dir "
                             f"(tools/train_classifier.py writes it)")
    with open(paths[0]) as f:
        config = json.load(f)
    model = build_classifier(**config)
    model.load_weights(paths[1])
    return model


def _as_float(images):
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return images_lib.to_unit_float(images)
