"""Saving and loading trained models: round trips, atomic files, one error type naming the file."""
import os

import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.models import saving
from magnets_tf.models.presets import build_transformer
from magnets_tf.models.video_tokenizer import build_video_tokenizer
from magnets_tf.models.vqgan import VQGAN


def _built(model):
    if not model.built:
        model.build()
    return model


def _tokenizer():
    return _built(VQGAN(image_shape=(8, 8, 1), filters=8, channel_multipliers=(1, 2),
                        num_res_blocks=1, embedding_dim=4, codebook_size=16, norm_groups=4))


def test_transformer_round_trip_at_every_width(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = build_transformer("tiny", codebook_size=16, num_classes=3, num_tokens=4,
                              num_layers=1)
    saving.save_transformer(model, tmp_path)
    loaded = saving.load_transformer(tmp_path)
    assert loaded.get_config() == model.get_config()
    ids = tf.constant([[17, 3, 4, 5, 6]])
    for p in model.factors:
        np.testing.assert_allclose(loaded(ids, factor=p), model(ids, factor=p), atol=1e-6)
    assert set(os.listdir(tmp_path)) == {saving.TRANSFORMER_CONFIG, saving.TRANSFORMER_WEIGHTS}


def test_tokenizer_round_trip_image_and_video(tmp_path):
    model = _tokenizer()
    saving.save_tokenizer(model, tmp_path / "image")
    loaded = saving.load_tokenizer(tmp_path / "image")
    images = tf.random.stateless_uniform([2, 8, 8, 1], [0, 1])
    np.testing.assert_array_equal(loaded.encode(images), model.encode(images))
    assert loaded.grid_shape == model.grid_shape
    video = _built(build_video_tokenizer("tiny_test"))
    saving.save_tokenizer(video, tmp_path / "video")
    assert type(saving.load_tokenizer(tmp_path / "video")).__name__ == "VideoTokenizer"


@pytest.mark.parametrize("kind", ["transformer", "tokenizer"])
def test_every_failure_is_one_error_naming_the_file(tmp_path, kind):
    load = getattr(saving, f"load_{kind}")
    with pytest.raises(saving.ModelFileError, match=f"{kind}_config.json not found"):
        load(tmp_path)
    model = (build_transformer("tiny", codebook_size=16, num_classes=3, num_tokens=4,
                               num_layers=1) if kind == "transformer" else _tokenizer())
    getattr(saving, f"save_{kind}")(model, tmp_path)
    weights = tmp_path / f"{kind}.weights.h5"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(saving.ModelFileError, match=f"{kind}.weights.h5: cannot load"):
        load(tmp_path)
    weights.write_bytes(good)
    (tmp_path / f"{kind}_config.json").write_text("{not json")
    with pytest.raises(saving.ModelFileError, match=f"{kind}_config.json: bad {kind} config"):
        load(tmp_path)
    assert issubclass(saving.ModelFileError, ValueError)


def test_weights_of_another_shape_are_refused(tmp_path):
    small = build_transformer("tiny", codebook_size=16, num_classes=3, num_tokens=4,
                              num_layers=1)
    saving.save_transformer(small, tmp_path)
    bigger = build_transformer("tiny", codebook_size=16, num_classes=3, num_tokens=9,
                               num_layers=1)
    (tmp_path / saving.TRANSFORMER_CONFIG).write_text(
        __import__("json").dumps(bigger.get_config()))
    with pytest.raises(saving.ModelFileError, match="transformer.weights.h5: cannot load"):
        saving.load_transformer(tmp_path)
