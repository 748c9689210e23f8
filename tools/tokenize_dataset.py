r"""Encodes an image data set once into TFRecord token shards (tokens + label).

python tools/tokenize_dataset.py --tokenizer_dir=runs/tokenizer_fmnist \
    --dataset=fashion_mnist --splits=train,test --output_dir=runs/fmnist_tokens

Writes <output_dir>/<split>/ (shards + metadata.json with codebook_size, grid,
num_classes, num_examples and the tokenizer path) for `token_dataset`. Each split is
written to a temporary directory and renamed when complete.
"""
import os

from absl import flags

from magnets_tf.cli import app  # noqa: I100 (first: it quiets TensorFlow's import)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magnets_tf.cli import model_flags  # noqa: E402
from magnets_tf.data import datasets, tokenized  # noqa: E402
from magnets_tf.models.saving import load_tokenizer  # noqa: E402
from magnets_tf.utils import files  # noqa: E402

flags.DEFINE_string("tokenizer_dir", None, "Trained tokenizer model dir (tools/train_tokenizer.py).")
flags.DEFINE_string("dataset", "fashion_mnist", "Offline set or tfds name.")
flags.DEFINE_list("splits", ["train", "test"], "Splits to encode, each into output_dir/<split>.")
flags.DEFINE_string("output_dir", None, "Parent directory of the shard directories.")
flags.DEFINE_integer("num_shards", 4, "TFRecord shards per split.")
flags.DEFINE_integer("batch_size", 500, "Encoding batch size.")
flags.DEFINE_integer("image_size", None, "Resize (after a central square crop) before encoding; "
                     "default: the data set's own size.")
flags.DEFINE_integer("num_classes", None, "Class count; default: known for offline sets, else "
                     "from tfds metadata.")
flags.DEFINE_bool("overwrite", False, "Replace existing shard directories.")
flags.DEFINE_integer("max_examples", 0, "Encode only the first N examples of each split "
                     "(0: all); for smoke runs.")
flags.mark_flags_as_required(["tokenizer_dir", "output_dir"])

_OFFLINE_CLASSES = {"fashion_mnist": 10, "mnist5k": 10}


def _num_classes(name):
    if flags.FLAGS.num_classes is not None:
        return flags.FLAGS.num_classes
    if name in _OFFLINE_CLASSES:
        return _OFFLINE_CLASSES[name]
    import tensorflow_datasets as tfds

    return tfds.builder(name).info.features["label"].num_classes


def encode_split(model, name, split, batch_size, image_size=None, max_examples=0):
    """Yields (tokens [B, h, w] int32, labels [B]) of one split, with a progress bar."""
    from tqdm import tqdm

    data = datasets.image_dataset(name, split, batch_size, image_size=image_size)
    if max_examples:
        data = data.unbatch().take(max_examples).batch(batch_size)
    encode = tf.function(model.encode)
    for batch in tqdm(data, desc=f"{name}/{split}", unit="batch", mininterval=5.0):
        yield np.asarray(encode(batch["image"])), np.asarray(batch["label"])


def main():
    fl = flags.FLAGS
    if fl.max_examples < 0:
        raise app.UsageError(f"--max_examples must be >= 0, got {fl.max_examples}")
    files.check_writable_dir(fl.output_dir, "--output_dir")
    model_flags.warn_if_unfinished(fl.tokenizer_dir)
    model = load_tokenizer(fl.tokenizer_dir)
    metadata = dict(codebook_size=model.codebook_size, grid=list(model.grid_shape),
                    num_classes=_num_classes(fl.dataset),
                    tokenizer=os.path.abspath(fl.tokenizer_dir), dataset=fl.dataset)
    for split in fl.splits:
        out = os.path.join(fl.output_dir, split)
        if os.path.exists(out) and not fl.overwrite:
            raise app.UsageError(f"{out} exists; pass --overwrite to replace it")
        try:
            batches = encode_split(model, fl.dataset, split, fl.batch_size, fl.image_size,
                                   fl.max_examples)
            written = tokenized.write_token_shards(out, batches, dict(metadata, split=split),
                                                   fl.num_shards, overwrite=fl.overwrite)
        except (datasets.DatasetNotFoundError, ValueError) as e:
            raise app.UsageError(f"{fl.dataset}/{split}: {e}") from None
        print(f"{out}: {written['num_examples']} examples, grid {written['grid']}, "
              f"codebook {written['codebook_size']}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
