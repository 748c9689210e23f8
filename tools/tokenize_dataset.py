r"""Encodes an image or video data set once into TFRecord token shards (tokens + label).

python tools/tokenize_dataset.py --tokenizer_dir=runs/tokenizer_fmnist \
    --dataset=fashion_mnist --splits=train,test --output_dir=runs/fmnist_tokens

Video: with a VideoTokenizer (tools/train_tokenizer.py) the set is read as clips of the
tokenizer's clip shape through `data.video.video_dataset` (moving_mnist,
moving_fashion_mnist, opencv_clips, or a tfds video set such as ucf101 / kinetics600),
and each clip becomes a [t, h, w] token grid. --condition_frames=F writes frame-prediction
shards: the tokens of the latent frames covering the first F frames are encoded with the
later frames hidden (MAGVIT's protocol), and metadata.json records the layout, so
tools/train.py trains a frame-prediction transformer from them. --num_classes=0 writes
class-agnostic shards (every label 0), e.g. Kinetics-600 frame prediction:

python tools/tokenize_dataset.py --tokenizer_dir=runs/video_tokenizer_mmnist \
    --dataset=moving_mnist --num_videos=4000 --condition_frames=4 \
    --output_dir=runs/mmnist_fp_tokens

Writes <output_dir>/<split>/ (shards + metadata.json with codebook_size, grid,
num_classes, num_examples, the conditioning layout and the tokenizer path) for
`token_dataset`. Each split is written to a temporary directory and renamed when
complete.
"""
import os

from absl import flags

from magnets_tf.cli import app  # noqa: I100 (first: it quiets TensorFlow's import)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magnets_tf.cli import model_flags  # noqa: E402
from magnets_tf.data import datasets, tokenized, video  # noqa: E402
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
                     "from tfds metadata. 0: class-agnostic shards (every label 0).")
flags.DEFINE_bool("overwrite", False, "Replace existing shard directories.")
flags.DEFINE_integer("max_examples", 0, "Encode only the first N examples of each split "
                     "(0: all); for smoke runs.")
flags.DEFINE_integer("num_frames", None, "Video: frames per clip; must be the tokenizer's "
                     "(default: the tokenizer's).")
flags.DEFINE_integer("frame_stride", 1, "Video: take every n-th frame of opencv_clips and "
                     "tfds videos (not Moving MNIST, which is generated frame by frame).")
flags.DEFINE_integer("condition_frames", 0, "Video: frames given to frame prediction (0: "
                     "class-conditional generation shards).")
flags.DEFINE_integer("num_videos", None, "Moving MNIST: clips generated per split "
                     "(default 10000 train / 1000 test).")
flags.mark_flags_as_required(["tokenizer_dir", "output_dir"])

_OFFLINE_CLASSES = {"fashion_mnist": 10, "mnist5k": 10, "moving_mnist": 10,
                    "moving_fashion_mnist": 10, "opencv_clips": len(video.OPENCV_VIDEOS)}


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


def encode_video_split(model, name, split, batch_size, frame_stride=1, condition_frames=0,
                       num_condition_tokens=0, num_videos=None, max_examples=0,
                       class_agnostic=False):
    """Yields (tokens [B, t, h, w] int32, labels [B]) of one split of clips of the
    tokenizer's clip shape; with condition tokens, those are encoded from the clips with
    their frames after `condition_frames` hidden (`video.clip_tokens`)."""
    import types

    from tqdm import tqdm

    frames, height, width, channels = model.video_shape
    data = video.video_dataset(name, split, batch_size, num_frames=frames,
                               frame_size=(height, width), frame_stride=frame_stride,
                               num_videos=num_videos)
    if max_examples:
        data = data.unbatch().take(max_examples).batch(batch_size)
    encoder = types.SimpleNamespace(encode=tf.function(model.encode))
    for batch in tqdm(data, desc=f"{name}/{split}", unit="batch", mininterval=5.0):
        clips = batch["video"].numpy()
        if clips.shape[-1] != channels:
            raise ValueError(f"{name} has {clips.shape[-1]}-channel frames; the tokenizer "
                             f"takes {channels}")
        if num_condition_tokens:
            tokens = video.clip_tokens(encoder, clips, condition_frames,
                                       num_condition_tokens, batch_size)
        else:
            tokens = np.asarray(encoder.encode(clips))
        labels = np.asarray(batch["label"])
        yield (tokens.reshape(len(clips), *model.grid_shape),
               np.zeros_like(labels) if class_agnostic else labels)


def _video_layout(model):
    """(num_condition_frames, num_condition_tokens) of the video flags, checked against
    the tokenizer; UsageError naming the flag otherwise."""
    fl = flags.FLAGS
    frames, height, width, _ = model.video_shape
    if fl.num_frames is not None and fl.num_frames != frames:
        raise app.UsageError(f"--num_frames={fl.num_frames} but the tokenizer "
                             f"{fl.tokenizer_dir} encodes {frames}-frame clips "
                             f"{model.video_shape}")
    if fl.image_size is not None and (fl.image_size, fl.image_size) != (height, width):
        raise app.UsageError(f"--image_size={fl.image_size} but the tokenizer "
                             f"{fl.tokenizer_dir} encodes {height}x{width} frames")
    if fl.frame_stride < 1:
        raise app.UsageError(f"--frame_stride must be >= 1, got {fl.frame_stride}")
    if fl.frame_stride != 1 and fl.dataset in video.MOVING_MNIST_SOURCES:
        raise app.UsageError(f"--frame_stride does not apply to {fl.dataset} (generated "
                             f"frame by frame)")
    if fl.num_videos is not None and fl.num_videos < 1:
        raise app.UsageError(f"--num_videos must be >= 1, got {fl.num_videos}")
    if not fl.condition_frames:
        return 0, 0
    try:
        tokens = video.condition_token_count(fl.condition_frames, model.video_shape,
                                             model.grid_shape)
    except ValueError as e:
        raise app.UsageError(f"--condition_frames: {e}") from None
    return fl.condition_frames, tokens


def _check_image_flags():
    fl = flags.FLAGS
    for name, default in (("num_frames", None), ("frame_stride", 1), ("condition_frames", 0),
                          ("num_videos", None)):
        if getattr(fl, name) != default:
            raise app.UsageError(f"--{name} applies to video tokenizers only; "
                                 f"{fl.tokenizer_dir} holds an image tokenizer")


def main():
    fl = flags.FLAGS
    if fl.max_examples < 0:
        raise app.UsageError(f"--max_examples must be >= 0, got {fl.max_examples}")
    if fl.num_classes is not None and fl.num_classes < 0:
        raise app.UsageError(f"--num_classes must be >= 0, got {fl.num_classes}")
    files.check_writable_dir(fl.output_dir, "--output_dir")
    model_flags.warn_if_unfinished(fl.tokenizer_dir)
    model = load_tokenizer(fl.tokenizer_dir)
    is_video = hasattr(model, "video_shape")
    if is_video:
        condition_frames, condition_tokens = _video_layout(model)
    else:
        _check_image_flags()
        condition_frames, condition_tokens = 0, 0
    try:
        num_classes = _num_classes(fl.dataset)
    except (KeyError, ValueError, datasets.DatasetNotFoundError) as e:
        raise app.UsageError(f"{fl.dataset}: cannot tell its class count ({e}); pass "
                             f"--num_classes") from None
    metadata = dict(codebook_size=model.codebook_size, grid=list(model.grid_shape),
                    num_classes=num_classes, tokenizer=os.path.abspath(fl.tokenizer_dir),
                    dataset=fl.dataset, num_condition_frames=condition_frames,
                    num_condition_tokens=condition_tokens)
    if is_video:
        metadata.update(clip_shape=list(model.video_shape), frame_stride=fl.frame_stride)
    for split in fl.splits:
        out = os.path.join(fl.output_dir, split)
        if os.path.exists(out) and not fl.overwrite:
            raise app.UsageError(f"{out} exists; pass --overwrite to replace it")
        try:
            if is_video:
                batches = encode_video_split(
                    model, fl.dataset, split, fl.batch_size, fl.frame_stride,
                    condition_frames, condition_tokens, fl.num_videos, fl.max_examples,
                    class_agnostic=num_classes == 0)
            else:
                batches = encode_split(model, fl.dataset, split, fl.batch_size,
                                       fl.image_size, fl.max_examples)
            written = tokenized.write_token_shards(out, batches, dict(metadata, split=split),
                                                   fl.num_shards, overwrite=fl.overwrite)
        except (datasets.DatasetNotFoundError, ValueError) as e:
            raise app.UsageError(f"{fl.dataset}/{split}: {e}") from None
        layout = (f", condition {written['num_condition_frames']} frames = "
                  f"{written['num_condition_tokens']} tokens"
                  if written["num_condition_tokens"] else "")
        print(f"{out}: {written['num_examples']} examples, grid {written['grid']}, "
              f"codebook {written['codebook_size']}, {written['num_classes']} classes{layout}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
