"""Saving and loading trained models: the transformer and the tokenizer.

A model directory holds `<kind>_config.json` (the constructor arguments, `get_config()`)
and `<kind>.weights.h5` (Keras weights). Both are written atomically, weights first, so a
config on disk always describes weights that are complete. The weights file is built in
memory and written with Python's file API: h5py writing straight to a full disk can crash
the process, Python fails with a clean OSError (ENOSPC) and the old file stays. Every
failure to load is one `ModelFileError` naming the file and what to do.
"""
import io
import json
import os

from magnets_tf.utils import files

TRANSFORMER_CONFIG = "transformer_config.json"
TRANSFORMER_WEIGHTS = "transformer.weights.h5"
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_WEIGHTS = "tokenizer.weights.h5"


class ModelFileError(ValueError):
    """A model directory is missing, incomplete, corrupt or does not fit its config."""


class _WeightsBuffer(io.BytesIO):
    """An in-memory .weights.h5 target (Keras checks the name's ending)."""

    def __str__(self):
        return "in-memory.weights.h5"


def weights_bytes(model):
    """The content of `model`'s .weights.h5 file, serialized in memory."""
    buffer = _WeightsBuffer()
    model.save_weights(buffer)
    return buffer.getvalue()


def save_model(model, model_dir, config_name, weights_name):
    """Writes `model`'s weights, then its config, into model_dir (each atomically)."""
    files.write_bytes(os.path.join(model_dir, weights_name), weights_bytes(model))
    files.write_json(os.path.join(model_dir, config_name), model.get_config())


def load_model(model_dir, config_name, weights_name, model_class_fn, what, how):
    """Builds the model `model_class_fn(config)` names from the config and loads its weights.

    what: "transformer" / "tokenizer", how: the command that writes such a directory;
    both appear in the error messages.
    """
    model_dir = os.fspath(model_dir)
    config_path = os.path.join(model_dir, config_name)
    weights_path = os.path.join(model_dir, weights_name)
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise ModelFileError(f"{path} not found: {model_dir} is not a trained {what} "
                                 f"directory ({how} writes one)")
    try:
        with open(config_path) as f:
            config = json.load(f)
        model = model_class_fn(config).from_config(config)
    except (OSError, json.JSONDecodeError, TypeError, ValueError, KeyError) as e:
        raise ModelFileError(f"{config_path}: bad {what} config ({e})") from None
    model.build()
    try:
        model.load_weights(weights_path)
    except Exception as e:  # h5py and Keras raise many types for corrupt/mismatched files.
        raise ModelFileError(f"{weights_path}: cannot load the weights into the {what} its "
                             f"config describes ({type(e).__name__}: {e})") from None
    return model


def save_transformer(transformer, model_dir):
    """Writes transformer_config.json + transformer.weights.h5 into model_dir."""
    save_model(transformer, model_dir, TRANSFORMER_CONFIG, TRANSFORMER_WEIGHTS)


def load_transformer(model_dir):
    """The trained `MaskGitTransformer` of a model dir (built, weights loaded)."""
    from magnets_tf.models.transformer import MaskGitTransformer
    return load_model(model_dir, TRANSFORMER_CONFIG, TRANSFORMER_WEIGHTS,
                      lambda config: MaskGitTransformer, "transformer",
                      "tools/train.py or tools/frame_prediction.py")


def save_tokenizer(tokenizer, model_dir):
    """Writes tokenizer_config.json + tokenizer.weights.h5 into model_dir."""
    save_model(tokenizer, model_dir, TOKENIZER_CONFIG, TOKENIZER_WEIGHTS)


def load_tokenizer(model_dir):
    """The trained tokenizer of a model dir: a VQGAN, or a VideoTokenizer when its config
    holds a video_shape."""
    from magnets_tf.models.video_tokenizer import VideoTokenizer
    from magnets_tf.models.vqgan import VQGAN
    return load_model(model_dir, TOKENIZER_CONFIG, TOKENIZER_WEIGHTS,
                      lambda config: VideoTokenizer if "video_shape" in config else VQGAN,
                      "tokenizer", "tools/train_tokenizer.py")
