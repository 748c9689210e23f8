r"""Class-conditional MaGNeTS sampling to a PNG grid (token maps, or images with a tokenizer).

python tools/sample.py --random_init --preset=tiny --grid=8 --num_classes=10 --codebook_size=64 --steps=8 --schedule=8:2,4:2,2:2,1:2 --cfg_last=2 --class_ids=0,1,2,3 --output=/tmp/samples.png

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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402
from magnets_tf import xla_cpu  # noqa: E402
from magnets_tf.gin_setup import parse_gin  # noqa: E402
import gin  # noqa: E402
import numpy as np  # noqa: E402

from magnets_tf.decoding.decoder import Decoder  # noqa: E402
from magnets_tf.decoding.schedule import make_plan  # noqa: E402
from magnets_tf.models.presets import PRESETS, build_transformer  # noqa: E402
from magnets_tf.utils import files  # noqa: E402
from magnets_tf.utils import images as images_lib  # noqa: E402

from magnets_tf.models.saving import (  # noqa: E402
    TRANSFORMER_CONFIG, TRANSFORMER_WEIGHTS, load_transformer)

flags.DEFINE_string("model_dir", None, f"Directory with {TRANSFORMER_CONFIG} + "
                    f"{TRANSFORMER_WEIGHTS}.")
flags.DEFINE_bool("random_init", False, "Use randomly initialised weights of --preset.")
flags.DEFINE_enum("preset", "tiny", sorted(PRESETS), "Preset for --random_init.")
flags.DEFINE_integer("grid", 16, "Token grid side for --random_init (N = grid*grid).")
flags.DEFINE_integer("num_classes", 1000, "Classes for --random_init.")
flags.DEFINE_integer("codebook_size", 1024, "Codebook size for --random_init.")
flags.DEFINE_string("tokenizer_dir", None, "Trained tokenizer dir: decode tokens to pixels.")
flags.DEFINE_list("class_ids", ["0", "1", "2", "3"], "Class ids, one per sample.")
flags.DEFINE_integer("batch_size", 0, "Decode batch (0: all samples in one batch).")
flags.DEFINE_integer("steps", None, "Decoding steps K (default: gin / make_plan).")
flags.DEFINE_string("schedule", None, "Model schedule p:k,... (default: gin / make_plan).")
flags.DEFINE_integer("cfg_last", None, "Guidance on the last G steps.")
flags.DEFINE_float("guidance_scale", None, "Guidance scale gs.")
flags.DEFINE_enum("refresh", None, ["model_change", "every_step", "never"], "Cache refresh.")
flags.DEFINE_bool("cache", None, "Use the K/V cache.")
flags.DEFINE_float("temperature_bias", None, "Sampling temperature bias.")
flags.DEFINE_float("temperature_scale", None, "Sampling temperature scale.")
flags.DEFINE_float("mask_temperature", None, "Gumbel scale of the masking choice.")
flags.DEFINE_bool("jit", True, "XLA-compile the decoder (false: debug mode).")
flags.DEFINE_integer("seed", 0, "Decode seed.")
flags.DEFINE_integer("cell", 8, "Pixels per token in token-map images.")
flags.DEFINE_string("output", "samples.png", "PNG grid to write.")
flags.DEFINE_string("condition_data", None, "dataset:split of clips whose first frames "
                    "condition a frame-prediction model (e.g. moving_mnist:test).")
flags.DEFINE_string("output_tokens", None, "Optional .npy of the sampled tokens [S, h, w].")
flags.DEFINE_multi_string("gin_file", [], "Gin files.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings.")

_PLAN_FLAGS = dict(steps="num_steps", schedule="model_schedule", cfg_last="guidance_steps",
                   guidance_scale="guidance_scale", refresh="refresh", cache="use_cache",
                   temperature_bias="temperature_bias", temperature_scale="temperature_scale",
                   mask_temperature="mask_temperature")


def condition_clips(spec, tokenizer, count, num_condition_tokens):
    """(uint8 clips [count, T, H, W, C], labels, condition tokens) of `dataset:split`.

    The condition tokens encode the clips with their future frames hidden."""
    from magnets_tf.data.video import (MOVING_MNIST_SOURCES, condition_frames,
                                       hold_last_condition_frame, moving_mnist_arrays,
                                       opencv_clip_arrays)
    name, _, split = spec.partition(":")
    frames, height, width, channels = tokenizer.video_shape
    if name in MOVING_MNIST_SOURCES:
        clips, labels = moving_mnist_arrays(name, split or "test", count, frames,
                                            (height, width))
    elif name == "opencv_clips":
        clips, labels = opencv_clip_arrays(split or "test", frames, height)
    else:
        raise ValueError(f"--condition_data {spec!r}: unknown clip set; known: "
                         f"{sorted(MOVING_MNIST_SOURCES) + ['opencv_clips']}")
    if len(clips) < count:
        raise ValueError(f"--condition_data {spec!r} has {len(clips)} clips, {count} needed")
    clips = np.asarray(clips[:count])
    if clips.shape[-1] != channels:
        raise ValueError(f"--condition_data {spec!r} has {clips.shape[-1]}-channel frames; "
                         f"the tokenizer takes {channels}")
    held = hold_last_condition_frame(
        clips.astype(np.float32) / 255.0,
        condition_frames(num_condition_tokens, tokenizer.video_shape, tokenizer.grid_shape))
    tokens = np.asarray(tokenizer.encode(held)).reshape(count, -1)
    return clips, np.asarray(labels[:count], np.int32), tokens[:, :num_condition_tokens]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    xla_cpu.prefer_host_vector_width()  # before the first XLA compile
    f = flags.FLAGS
    if bool(f.model_dir) == bool(f.random_init):
        raise app.UsageError("give exactly one of --model_dir and --random_init")
    try:
        class_ids = np.array([int(c) for c in f.class_ids], np.int32)
    except ValueError:
        raise app.UsageError(f"--class_ids must be integers, got {f.class_ids}") from None
    if class_ids.size == 0:
        raise app.UsageError("--class_ids is empty")
    try:
        parse_gin(f.gin_file, f.gin_bindings)
    except (IOError, ValueError) as e:
        raise app.UsageError(f"bad gin config: {e}") from None

    import keras
    try:
        if f.random_init:
            keras.utils.set_random_seed(f.seed)
            model = build_transformer(f.preset, codebook_size=f.codebook_size,
                                      num_classes=f.num_classes, num_tokens=f.grid * f.grid)
        else:
            model = load_transformer(f.model_dir)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    bad = class_ids[(class_ids < 0) | (class_ids >= model.num_classes)]
    if bad.size:
        raise app.UsageError(f"--class_ids {bad.tolist()} outside [0, {model.num_classes})")
    overrides = {arg: getattr(f, name) for name, arg in _PLAN_FLAGS.items()
                 if getattr(f, name) is not None}
    try:
        plan = make_plan(num_tokens=model.num_tokens, available_factors=model.factors,
                         num_condition_tokens=model.num_condition_tokens,
                         **overrides)
    except ValueError as e:
        raise app.UsageError(f"bad decode plan: {e}") from None

    tokenizer = None
    if f.tokenizer_dir:
        try:
            from magnets_tf.models.saving import load_tokenizer
        except ImportError:
            raise app.UsageError("--tokenizer_dir needs magnets_tf.training.tokenizer_trainer "
                                 "(the tokenizer package is not installed here)") from None
        try:
            tokenizer = load_tokenizer(f.tokenizer_dir)
        except (FileNotFoundError, ValueError) as e:
            raise app.UsageError(str(e)) from None
        if tokenizer.codebook_size != model.codebook_size:
            raise app.UsageError(f"tokenizer codebook {tokenizer.codebook_size} != transformer "
                                 f"codebook {model.codebook_size}")
        grid_shape = tuple(tokenizer.grid_shape)
    else:
        side = int(round(model.num_tokens ** 0.5))
        grid_shape = (side, side) if side * side == model.num_tokens else (1, model.num_tokens)
    if int(np.prod(grid_shape)) != model.num_tokens:
        raise app.UsageError(f"tokenizer grid {grid_shape} does not hold the transformer's "
                             f"{model.num_tokens} tokens")

    video = tokenizer is not None and hasattr(tokenizer, "video_shape")
    real_clips, condition = None, None
    if plan.num_condition_tokens:
        if not (video and f.condition_data):
            raise app.UsageError(
                f"the transformer predicts from {plan.num_condition_tokens} condition tokens: "
                f"give a video --tokenizer_dir and --condition_data=dataset:split")
        try:
            real_clips, labels, condition = condition_clips(
                f.condition_data, tokenizer, class_ids.size, plan.num_condition_tokens)
        except (ValueError, FileNotFoundError) as e:
            raise app.UsageError(str(e)) from None
        if f["class_ids"].using_default_value:
            class_ids = labels  # the clips' own labels unless classes are given
    elif f.condition_data:
        raise app.UsageError("--condition_data needs a frame-prediction transformer "
                             "(num_condition_tokens > 0)")

    print(plan.describe(), flush=True)
    batch = f.batch_size or class_ids.size
    decoder = Decoder(model, plan, batch, jit_compile=f.jit)
    from tqdm import tqdm
    samples = []
    for start in tqdm(range(0, class_ids.size, batch), desc="sampling"):
        chunk = class_ids[start:start + batch]
        padded = np.resize(chunk, batch)  # the last batch repeats labels to a full batch
        cond = None
        if condition is not None:
            cond = np.resize(condition[start:start + batch],
                             (batch, plan.num_condition_tokens))
        tokens = decoder.generate(padded, [f.seed, start], condition_tokens=cond)
        samples.append(tokens[:chunk.size])
    tokens = np.concatenate(samples).reshape(-1, *grid_shape)
    if tokenizer is not None:
        images = images_lib.to_uint8(tokenizer.decode(tokens))
    else:
        images = images_lib.token_images(tokens, model.codebook_size, f.cell)
    if video:
        grid = images_lib.clip_grid(images if real_clips is None else
                                    np.concatenate([real_clips, images]), gap=2)
    else:
        grid = images_lib.image_grid(images, gap=2)
    images_lib.write_png(f.output, grid)
    if f.output_tokens:
        files.write_npy(f.output_tokens, tokens)
    print(f"wrote {len(images)} samples to {f.output}")


if __name__ == "__main__":
    app.run(main)
