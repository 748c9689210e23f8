r"""Class-conditional MaGNeTS sampling to a PNG grid (token maps, or images with a tokenizer).

python tools/sample.py --random_init --preset=tiny --grid=8 --num_classes=10 --codebook_size=64 --num_steps=8 --model_schedule=8:2,4:2,2:2,1:2 --guidance_steps=2 --class_ids=0,1,2,3 --output=/tmp/samples.png

With a trained transformer: --model_dir=DIR (transformer_config.json + transformer.weights.h5,
as tools/train.py and tools/frame_prediction.py write them) and optionally --tokenizer_dir=DIR
to decode tokens to pixels. The plan comes from the flags given here, else from gin
(`make_plan.*` bindings).

Video: with a 3D tokenizer (tools/train_tokenizer.py, VideoTokenizer) each PNG row is one
clip's frames. A frame-prediction transformer (num_condition_tokens > 0) predicts the rest
of real clips from their first frames: --condition_data=moving_mnist:test (or
moving_fashion_mnist / opencv_clips) gives the clips; the first rows of the PNG grid are
the real clips, then the predictions.
"""
import math

import numpy as np
from absl import flags

from magnets_tf import xla_cpu
from magnets_tf.cli import app, gin_flags, model_flags, plan_flags
from magnets_tf.models.saving import TRANSFORMER_CONFIG, TRANSFORMER_WEIGHTS
from magnets_tf.utils import files
from magnets_tf.utils import images as images_lib

flags.DEFINE_string("model_dir", None, f"Directory with {TRANSFORMER_CONFIG} + "
                    f"{TRANSFORMER_WEIGHTS}.")
model_flags.define_random_init_flags(preset="tiny")
model_flags.define_compute_dtype_flag()
flags.DEFINE_string("tokenizer_dir", None, "Trained tokenizer dir: decode tokens to pixels.")
flags.DEFINE_list("class_ids", ["0", "1", "2", "3"], "Class ids, one per sample.")
flags.DEFINE_integer("batch_size", 0, "Decode batch (0: all samples in one batch).")
plan_flags.define_plan_flags()
gin_flags.define_gin_flags()
flags.DEFINE_bool("jit", True, "XLA-compile the decoder (false: debug mode).")
flags.DEFINE_integer("seed", 0, "Decode seed.")
flags.DEFINE_integer("cell", 8, "Pixels per token in token-map images.")
flags.DEFINE_string("output", "samples.png", "PNG grid to write.")
flags.DEFINE_string("condition_data", None, "dataset:split of clips whose first frames "
                    "condition a frame-prediction model (e.g. moving_mnist:test).")
flags.DEFINE_string("output_tokens", None, "Optional .npy of the sampled tokens [S, h, w].")
FLAGS = flags.FLAGS


def condition_clips(spec, tokenizer, count, num_condition_tokens):
    """(uint8 clips [count, T, H, W, C], labels, condition tokens) of `dataset:split`.

    The condition tokens encode the clips with their future frames hidden."""
    from magnets_tf.data.video import clip_arrays, clip_tokens, condition_frames
    name, _, split = spec.partition(":")
    frames, height, width, channels = tokenizer.video_shape
    clips, labels = clip_arrays(name, split or "test", frames, (height, width), count)
    if len(clips) < count:
        raise ValueError(f"--condition_data {spec!r} has {len(clips)} clips, {count} needed")
    clips = np.asarray(clips[:count])
    if clips.shape[-1] != channels:
        raise ValueError(f"--condition_data {spec!r} has {clips.shape[-1]}-channel frames; "
                         f"the tokenizer takes {channels}")
    frames_given = condition_frames(num_condition_tokens, tokenizer.video_shape,
                                    tokenizer.grid_shape)
    tokens = clip_tokens(tokenizer, clips.astype(np.float32) / 255.0, frames_given,
                         num_condition_tokens)
    return clips, np.asarray(labels[:count], np.int32), tokens[:, :num_condition_tokens]


def _class_ids():
    try:
        class_ids = np.array([int(c) for c in FLAGS.class_ids], np.int32)
    except ValueError:
        raise app.UsageError(f"--class_ids must be integers, got {FLAGS.class_ids}") from None
    if class_ids.size == 0:
        raise app.UsageError("--class_ids is empty")
    return class_ids


def main():
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    class_ids = _class_ids()
    files.check_output_file(FLAGS.output, "--output")
    if FLAGS.output_tokens:
        files.check_output_file(FLAGS.output_tokens, "--output_tokens")
    gin_flags.parse_gin_flags()
    from magnets_tf.evaluation import generation
    from magnets_tf.models.saving import load_tokenizer

    model = model_flags.transformer_from_flags(FLAGS.model_dir, seed=FLAGS.seed)
    bad = class_ids[(class_ids < 0) | (class_ids >= model.num_classes)]
    if bad.size:
        raise app.UsageError(f"--class_ids {bad.tolist()} outside [0, {model.num_classes})")
    plan = plan_flags.decode_plan(model)
    decode_fn = None
    if FLAGS.tokenizer_dir:
        decode_fn = generation.tokenizer_decoder(model, load_tokenizer(FLAGS.tokenizer_dir))
        grid_shape = decode_fn.grid_shape
    else:
        side = math.isqrt(model.num_tokens)
        grid_shape = (side, side) if side * side == model.num_tokens else (1, model.num_tokens)

    video = decode_fn is not None and hasattr(decode_fn.tokenizer, "video_shape")
    real_clips, condition = None, None
    if plan.num_condition_tokens:
        if not (video and FLAGS.condition_data):
            raise app.UsageError(
                f"the transformer predicts from {plan.num_condition_tokens} condition tokens: "
                f"give a video --tokenizer_dir and --condition_data=dataset:split")
        real_clips, labels, condition = condition_clips(
            FLAGS.condition_data, decode_fn.tokenizer, class_ids.size, plan.num_condition_tokens)
        if FLAGS["class_ids"].using_default_value:
            class_ids = labels  # the clips' own labels unless classes are given
    elif FLAGS.condition_data:
        raise app.UsageError("--condition_data needs a frame-prediction transformer "
                             "(num_condition_tokens > 0)")

    print(plan.describe(), flush=True)
    batches = generation.generate_tokens(
        model, plan, class_ids, FLAGS.batch_size or class_ids.size, FLAGS.seed, FLAGS.jit,
        condition_tokens=condition, description="sampling")
    tokens = np.concatenate(list(batches)).reshape(-1, *grid_shape)
    if decode_fn is not None:
        images = images_lib.to_uint8(decode_fn(tokens))
    else:
        images = images_lib.token_images(tokens, model.codebook_size, FLAGS.cell)
    if video:
        shown = images if real_clips is None else np.concatenate([real_clips, images])
        grid = images_lib.clip_grid(shown, gap=2)
    else:
        grid = images_lib.image_grid(images, gap=2)
    images_lib.write_png(FLAGS.output, grid)
    if FLAGS.output_tokens:
        files.write_npy(FLAGS.output_tokens, tokens)
    print(f"wrote {len(images)} samples to {FLAGS.output}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
