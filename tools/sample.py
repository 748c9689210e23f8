r"""Class-conditional MaGNeTS sampling to a PNG grid (token maps, or images with a tokenizer).

python tools/sample.py --random_init --preset=tiny --grid=8 --num_classes=10 --codebook_size=64 --num_steps=8 --model_schedule=8:2,4:2,2:2,1:2 --guidance_steps=2 --class_ids=0,1,2,3 --output=/tmp/samples.png

With a trained transformer: --model_dir=DIR (transformer_config.json + transformer.weights.h5,
as tools/train.py and tools/frame_prediction.py write them) and optionally --tokenizer_dir=DIR
to decode tokens to pixels. The plan comes from the flags given here, else from gin
(`make_plan.*` bindings).

Video: with a 3D tokenizer (tools/train_tokenizer.py, VideoTokenizer) each PNG row is one
clip's frames, left to right, and --output_gif=FILE also writes the clips as a looping
animation (one grid cell per clip). A frame-prediction transformer (num_condition_tokens
> 0) predicts the rest of real clips from their first frames: --condition_data=
moving_mnist:test (or moving_fashion_mnist, opencv_clips, a tfds set such as
kinetics600:test) gives the clips, --condition_frames how many of their frames are given
(default: the whole latent frames of the condition tokens; 5 for Kinetics-600, see
gin/kinetics600/magnets_frame_prediction.gin); each real clip's row is followed by its
prediction. A class-agnostic transformer (num_classes 0) samples with the null class:
--class_ids then only counts the samples (give zeros).

python tools/sample.py --model_dir=runs/mmnist_fp --tokenizer_dir=runs/video_tokenizer_mmnist --condition_data=moving_mnist:test --output=runs/samples/mmnist_fp.png --output_gif=runs/samples/mmnist_fp.gif
"""
import math

import numpy as np
from absl import flags

from magnets_tf import xla_cpu
from magnets_tf.cli import app, gin_flags, model_flags, plan_flags
from magnets_tf.data.datasets import DatasetNotFoundError
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
                    "condition a frame-prediction model (e.g. moving_mnist:test, "
                    "kinetics600:test).")
flags.DEFINE_integer("condition_frames", None, "Frames of each --condition_data clip that "
                     "are given (default: all frames of the latent frames the model's "
                     "condition tokens cover).")
flags.DEFINE_integer("frame_stride", 1, "Frame stride of --condition_data clips (opencv_clips "
                     "and tfds sets).")
flags.DEFINE_string("output_gif", None, "Video: also write the clips as an animated GIF.")
flags.DEFINE_integer("gif_fps", 8, "Frames per second of --output_gif.")
flags.DEFINE_string("output_tokens", None, "Optional .npy of the sampled tokens [S, h, w].")
FLAGS = flags.FLAGS


def condition_clips(spec, tokenizer, count, num_condition_tokens, condition_frames=None,
                    frame_stride=1):
    """(uint8 clips [count, T, H, W, C], labels, condition tokens) of `dataset:split`.

    The condition tokens encode the clips' first `condition_frames` frames (default: the
    whole latent frames behind num_condition_tokens) with the later frames hidden."""
    from magnets_tf.data import video
    name, _, split = spec.partition(":")
    frames, height, width, channels = tokenizer.video_shape
    if condition_frames is None:
        condition_frames = video.condition_frames(num_condition_tokens, tokenizer.video_shape,
                                                  tokenizer.grid_shape)
    else:
        covered = video.condition_token_count(condition_frames, tokenizer.video_shape,
                                              tokenizer.grid_shape)
        if covered != num_condition_tokens:
            raise ValueError(f"--condition_frames={condition_frames} are covered by {covered} "
                             f"tokens, but the transformer takes {num_condition_tokens}")
    data = video.video_dataset(name, split or "test", count, num_frames=frames,
                               frame_size=(height, width), frame_stride=frame_stride,
                               num_videos=count)
    batch = next(iter(data), None)
    if batch is None or len(batch["video"]) < count:
        found = 0 if batch is None else len(batch["video"])
        raise ValueError(f"--condition_data {spec!r} has {found} clips, {count} needed")
    clips = batch["video"].numpy()
    if clips.shape[-1] != channels:
        raise ValueError(f"--condition_data {spec!r} has {clips.shape[-1]}-channel frames; "
                         f"the tokenizer takes {channels}")
    tokens = video.clip_tokens(tokenizer, clips, condition_frames, num_condition_tokens)
    return (images_lib.to_uint8(clips), batch["label"].numpy().astype(np.int32),
            tokens[:, :num_condition_tokens])


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
    if FLAGS.output_gif:
        files.check_output_file(FLAGS.output_gif, "--output_gif")
    if FLAGS.gif_fps <= 0:
        raise app.UsageError(f"--gif_fps must be positive, got {FLAGS.gif_fps}")
    if FLAGS.output_tokens:
        files.check_output_file(FLAGS.output_tokens, "--output_tokens")
    gin_flags.parse_gin_flags()
    from magnets_tf.evaluation import generation
    from magnets_tf.models.saving import load_tokenizer

    model = model_flags.transformer_from_flags(FLAGS.model_dir, seed=FLAGS.seed)
    bad = class_ids[(class_ids < 0) | (class_ids >= max(model.num_classes, 1))]
    if bad.size:
        raise app.UsageError(f"--class_ids {bad.tolist()} outside [0, {model.num_classes})"
                             if model.num_classes else
                             f"--class_ids {bad.tolist()}: the transformer is class-agnostic "
                             f"(num_classes 0); give zeros, one per sample")
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
        try:
            real_clips, labels, condition = condition_clips(
                FLAGS.condition_data, decode_fn.tokenizer, class_ids.size,
                plan.num_condition_tokens, FLAGS.condition_frames, FLAGS.frame_stride)
        except (ValueError, DatasetNotFoundError) as e:  # their messages name the fix
            raise app.UsageError(str(e)) from None
        if FLAGS["class_ids"].using_default_value and model.num_classes:
            class_ids = labels  # the clips' own labels unless classes are given
    elif FLAGS.condition_data or FLAGS.condition_frames is not None:
        raise app.UsageError("--condition_data and --condition_frames need a frame-prediction "
                             "transformer (num_condition_tokens > 0)")
    if FLAGS.output_gif and not video:
        raise app.UsageError("--output_gif needs a video transformer and its --tokenizer_dir "
                             "(a VideoTokenizer)")
    if not model.num_classes:
        class_ids = np.full_like(class_ids, model.null_class_id)

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
        shown = images  # rows: each real clip, then the clip predicted from it
        if real_clips is not None:
            shown = np.stack([real_clips, images], axis=1).reshape(-1, *images.shape[1:])
        grid = images_lib.clip_grid(shown, gap=2)
        if FLAGS.output_gif:
            columns = 2 if real_clips is not None else None
            images_lib.write_gif(FLAGS.output_gif,
                                 images_lib.clip_animation(shown, columns, gap=2),
                                 fps=FLAGS.gif_fps)
            print(f"wrote {len(shown)} clips to {FLAGS.output_gif}")
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
