"""Video data sets behind one API: Moving MNIST, real opencv-doc footage and tfds videos.

`video_dataset(name, split, batch_size, ...)` returns a batched `tf.data.Dataset` of
{"video": float32 [B, T, H, W, C] in [0, 1], "label": int32 [B]} for
  - "moving_mnist" / "moving_fashion_mnist": Moving MNIST (Srivastava et al. 2015)
    generated from the real MNIST-5k / Fashion-MNIST digits of `load_arrays`: digits of
    28x28 bouncing in a square frame (default two digits, 64x64, 20 frames), random
    position and direction, step 0.1 of the free range per frame, reflection at the
    borders, frames combined with a pixel-wise max. Seeded and deterministic; train
    clips use the train digits, test clips the test digits. Label: class of digit 0.
  - "opencv_clips": the real clips shipped by Debian `opencv-doc` (vtest.avi, tree.avi,
    Megamind.avi), decoded with imageio-ffmpeg, centre-cropped to a square, resized,
    cut into non-overlapping clips of T frames (frame stride s); the first 80% of the
    clips of each video (in time) are "train", the rest "test" so no frame is shared.
    Label: index of the source video.
  - any tfds data set with a "video" feature (e.g. "ucf101"): a clip of T frames with
    frame stride s (random start for training, centred otherwise; short videos loop),
    centre square crop (random crop + flip for training) and antialiased resize.
"""
import functools
import os

import gin
import numpy as np
import tensorflow as tf

from magnets_tf.data.datasets import (DatasetNotFoundError, finish_pipeline, load_arrays,
                                      tfds_source)

MOVING_MNIST_SOURCES = {"moving_mnist": "mnist5k", "moving_fashion_mnist": "fashion_mnist"}
# mnist5k has no 60k/10k split: its "train" and "test" are the first 4000 / last 1000.
_DIGIT_SPLITS = {"train": "train", "test": "test"}
OPENCV_DATA_DIR = "/usr/share/doc/opencv-doc/examples/data"
OPENCV_VIDEOS = ("vtest.avi", "tree.avi", "Megamind.avi")
OPENCV_TRAIN_FRACTION = 0.8
DIGIT_SIZE = 28
STEP_LENGTH = 0.1  # Srivastava et al.: fraction of the free range moved per frame.
DEFAULT_NUM_VIDEOS = {"train": 10000, "test": 1000}


def _size_pair(size):
    pair = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) <= 0:
        raise ValueError(f"frame_size must be a positive int or (height, width), got {size!r}")
    return pair


def _check_positive(**values):
    for name, value in values.items():
        if int(value) <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


# ----------------------------------------------------------------------------- Moving MNIST
def bouncing_trajectories(rng, num_videos, num_frames, num_digits, step_length=STEP_LENGTH):
    """Positions in [0, 1] ([N, T, digits, 2] as (y, x)) of digits bouncing in a box.

    Srivastava et al.'s generator: uniform start, direction theta ~ U[0, 2pi), unit
    speed scaled by step_length, one step before every frame, reflect at 0 and 1.
    """
    pos = rng.random((num_videos, num_digits, 2))
    theta = rng.random((num_videos, num_digits)) * 2 * np.pi
    vel = np.stack([np.sin(theta), np.cos(theta)], axis=-1)
    out = np.empty((num_videos, num_frames, num_digits, 2))
    for t in range(num_frames):
        pos = pos + vel * step_length
        low, high = pos <= 0.0, pos >= 1.0
        pos = np.clip(pos, 0.0, 1.0)
        vel = np.where(low | high, -vel, vel)
        out[:, t] = pos
    return out


def moving_mnist(digits, labels, num_videos, num_frames=20, frame_size=64, num_digits=2,
                 seed=0):
    """(videos uint8 [N, T, H, W, 1], labels int32 [N]) of Moving MNIST clips.

    digits: uint8 [M, 28, 28, 1] source digits; each clip draws `num_digits` of them at
    random. The label is the class of the clip's first digit.
    """
    _check_positive(num_videos=num_videos, num_frames=num_frames, num_digits=num_digits)
    height, width = _size_pair(frame_size)
    digit_h, digit_w = digits.shape[1:3]
    if height < digit_h or width < digit_w:
        raise ValueError(f"frame_size {frame_size} is smaller than the {digit_h}x{digit_w} "
                         f"digits")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, digits.shape[0], size=(num_videos, num_digits))
    traj = bouncing_trajectories(rng, num_videos, num_frames, num_digits)
    tops = (traj[..., 0] * (height - digit_h)).astype(np.int64)
    lefts = (traj[..., 1] * (width - digit_w)).astype(np.int64)
    videos = np.zeros((num_videos, num_frames, height, width, 1), np.uint8)
    for n in range(num_videos):
        for d in range(num_digits):
            digit = digits[picks[n, d]]
            for t in range(num_frames):
                y, x = tops[n, t, d], lefts[n, t, d]
                window = videos[n, t, y:y + digit_h, x:x + digit_w]
                np.maximum(window, digit, out=window)
    return videos, labels[picks[:, 0]].astype(np.int32)


def moving_mnist_arrays(name, split, num_videos=None, num_frames=20, frame_size=64,
                        num_digits=2, seed=0):
    """Moving MNIST split from the real digits; the split also changes the seed."""
    if name not in MOVING_MNIST_SOURCES:
        raise ValueError(f"unknown Moving MNIST variant {name!r}; known: "
                         f"{sorted(MOVING_MNIST_SOURCES)}")
    if split not in _DIGIT_SPLITS:
        raise ValueError(f"{name} has splits {sorted(_DIGIT_SPLITS)}, got split={split!r}")
    digits, labels = load_arrays(MOVING_MNIST_SOURCES[name], _DIGIT_SPLITS[split])
    count = DEFAULT_NUM_VIDEOS[split] if num_videos is None else int(num_videos)
    split_seed = [int(seed), sorted(_DIGIT_SPLITS).index(split)]
    return moving_mnist(digits, labels, count, num_frames, frame_size, num_digits,
                        seed=split_seed)


# ----------------------------------------------------------------------------- opencv clips
def _square_resize(frame, size):
    from PIL import Image  # Pillow: antialiased downscaling of single frames.

    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame[top:top + side, left:left + side]
    return np.asarray(Image.fromarray(square).resize((size[1], size[0]), Image.BILINEAR))


def read_video(path, frame_size, frame_stride=1):
    """uint8 [T, H, W, 3] frames of a video file (every `frame_stride`-th frame),
    centre-cropped to a square and resized to frame_size (decoded once per process and
    arguments: train and test splits share the decode)."""
    frames = _read_video_cached(str(path), _size_pair(frame_size), int(frame_stride))
    return frames.copy()


@functools.lru_cache(maxsize=8)
def _read_video_cached(path, size, frame_stride):
    if not os.path.exists(path):
        raise DatasetNotFoundError(f"video file {path} not found: install the Debian package "
                                   f"opencv-doc (`apt-get install opencv-doc`) or pass "
                                   f"data_dir")
    try:
        import imageio
        reader = imageio.get_reader(path, "ffmpeg")
    except (ImportError, ValueError, OSError, RuntimeError) as e:
        raise DatasetNotFoundError(f"cannot open {path} with imageio-ffmpeg ({e}): "
                                   f"`pip install imageio imageio-ffmpeg`") from None
    frames = []
    try:
        for i, frame in enumerate(reader):
            if i % frame_stride == 0:
                frames.append(_square_resize(np.asarray(frame)[..., :3], size))
    finally:
        reader.close()
    if not frames:
        raise ValueError(f"{path} holds no decodable frames")
    return np.stack(frames)


def opencv_clip_arrays(split, num_frames=16, frame_size=64, frame_stride=1, data_dir=None,
                       train_fraction=OPENCV_TRAIN_FRACTION):
    """(clips uint8 [N, T, H, W, 3], labels int32 [N]) of the opencv-doc videos.

    Each video is cut into non-overlapping clips of num_frames; its first
    `train_fraction` of clips (in time) are "train", the rest "test".
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"opencv_clips has splits ['all', 'test', 'train'], got {split!r}")
    _check_positive(num_frames=num_frames, frame_stride=frame_stride)
    data_dir = data_dir or OPENCV_DATA_DIR
    clips, labels = [], []
    for label, filename in enumerate(OPENCV_VIDEOS):
        frames = read_video(os.path.join(data_dir, filename), frame_size, frame_stride)
        count = frames.shape[0] // num_frames
        if count == 0:
            continue
        video_clips = frames[:count * num_frames].reshape(count, num_frames, *frames.shape[1:])
        cut = int(round(count * train_fraction))
        part = {"train": slice(0, cut), "test": slice(cut, count), "all": slice(0, count)}
        chosen = video_clips[part[split]]
        clips.append(chosen)
        labels.append(np.full(chosen.shape[0], label, np.int32))
    if not clips or sum(c.shape[0] for c in clips) == 0:
        raise ValueError(f"no {split} clips of {num_frames} frames (stride {frame_stride}) in "
                         f"{OPENCV_VIDEOS}")
    return np.concatenate(clips), np.concatenate(labels)


# ----------------------------------------------------------------------------- tfds videos
def sample_clip(video, num_frames, frame_stride=1, random_start=False, seed=None):
    """A clip of num_frames frames, `frame_stride` apart, from video [T, H, W, C].

    The start is uniform over valid starts (random_start, stateless `seed`) or centred.
    Videos shorter than the clip are looped.
    """
    length = tf.shape(video)[0]
    span = (num_frames - 1) * frame_stride + 1
    max_start = tf.maximum(length - span, 0)
    if random_start:
        start = tf.random.stateless_uniform([], seed, 0, max_start + 1, tf.int32)
    else:
        start = max_start // 2
    indices = (start + tf.range(num_frames) * frame_stride) % length
    return tf.gather(video, indices)


def preprocess_clip(clip, frame_size, random_crop_flip=False, seed=None):
    """uint8 [T, H, W, C] -> float32 [0, 1] [T, h, w, C]: square crop (same for every
    frame; random + flip when training), antialiased bilinear resize."""
    shape = tf.shape(clip)
    side = tf.minimum(shape[1], shape[2])
    if random_crop_flip:
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        top = tf.random.stateless_uniform([], crop_seed, 0, shape[1] - side + 1, tf.int32)
        left = tf.random.stateless_uniform([], crop_seed[::-1], 0, shape[2] - side + 1,
                                           tf.int32)
    else:
        top, left = (shape[1] - side) // 2, (shape[2] - side) // 2
    clip = clip[:, top:top + side, left:left + side]
    clip = tf.image.resize(tf.cast(clip, tf.float32) / 255.0, _size_pair(frame_size),
                           method="bilinear", antialias=True)
    if random_crop_flip:
        flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        clip = tf.cond(flip, lambda: tf.reverse(clip, axis=[2]), lambda: clip)
    return tf.clip_by_value(clip, 0.0, 1.0)


OFFLINE_VIDEO_DATASETS = (*MOVING_MNIST_SOURCES, "opencv_clips")


def clip_arrays(name, split, num_frames, frame_size, num_videos=None, frame_stride=1,
                num_digits=2, seed=0, data_dir=None):
    """(uint8 clips [N, T, H, W, C], int32 labels [N]) of an offline clip set.

    Moving MNIST variants generate `num_videos` clips (frame_stride does not apply);
    opencv_clips cuts every clip of the split out of the opencv-doc videos.
    """
    if name in MOVING_MNIST_SOURCES:
        return moving_mnist_arrays(name, split, num_videos, num_frames, frame_size,
                                   num_digits, seed)
    if name == "opencv_clips":
        return opencv_clip_arrays(split, num_frames, frame_size, frame_stride, data_dir)
    raise ValueError(f"unknown clip set {name!r}; known: {sorted(OFFLINE_VIDEO_DATASETS)}")


# ----------------------------------------------------------------------------- one API
@gin.configurable
def video_dataset(name, split, batch_size, num_frames=16, frame_size=64, frame_stride=1,
                  shuffle=False, repeat=False, seed=0, drop_remainder=False, data_dir=None,
                  random_crop_flip=False, num_videos=None, num_digits=2, input_context=None):
    """Batched tf.data of {"video": float32 [B, T, H, W, C] in [0, 1], "label": int32 [B]}.

    name: "moving_mnist", "moving_fashion_mnist" (frames generated at frame_size; the
    frame_stride does not apply), "opencv_clips", or a tfds video set ("ucf101", ...).
    num_videos: clips generated per Moving MNIST split (default 10000 train / 1000 test).
    """
    _check_positive(batch_size=batch_size, num_frames=num_frames, frame_stride=frame_stride)
    size = _size_pair(frame_size)
    if name in OFFLINE_VIDEO_DATASETS:
        videos, labels = clip_arrays(name, split, num_frames, size, num_videos, frame_stride,
                                     num_digits, seed, data_dir)
        ds = tf.data.Dataset.from_tensor_slices({"video": videos, "label": labels})
        prepare = _to_float
    else:
        ds = tfds_source(name, split, data_dir, "video", "video data set",
                         OFFLINE_VIDEO_DATASETS, "UCF101 downloads ~6.5 GB")
        ds = ds.map(lambda ex: {"video": ex["video"], "label": ex["label"]})
        base_seed = tf.constant([int(seed), 1], tf.int64)

        def prepare(index, example):
            example_seed = base_seed + tf.stack([tf.constant(0, tf.int64), index])
            start_seed, crop_seed = tf.unstack(
                tf.random.experimental.stateless_split(example_seed, 2))
            clip = sample_clip(example["video"], int(num_frames), int(frame_stride),
                               random_start=random_crop_flip, seed=start_seed)
            clip = preprocess_clip(clip, size, random_crop_flip, crop_seed)
            clip.set_shape([int(num_frames), *size, None])
            return {"video": clip, "label": tf.cast(example["label"], tf.int32)}
    return finish_pipeline(ds, prepare, batch_size, 2_000, shuffle, repeat, seed,
                           drop_remainder, input_context)


def _to_float(index, example):
    del index
    return {"video": tf.cast(example["video"], tf.float32) / 255.0,
            "label": tf.cast(example["label"], tf.int32)}


def condition_frames(num_condition_tokens, video_shape, grid_shape):
    """Pixel frames behind the first `num_condition_tokens` tokens of a clip's token grid.

    video_shape (T, H, W, C) and grid_shape (t, h, w) are the tokenizer's; tokens flatten
    time-major, so the condition must be whole latent frames (h*w tokens each), each of
    T/t pixel frames. ValueError otherwise.
    """
    frames, (t, h, w) = int(video_shape[0]), (int(d) for d in grid_shape)
    latent_frames, rest = divmod(int(num_condition_tokens), h * w)
    if rest or not 0 <= latent_frames < t:
        raise ValueError(f"{num_condition_tokens} condition tokens are not whole latent frames "
                         f"of the {t}x{h}x{w} token grid (multiples of {h * w}, fewer than "
                         f"{t * h * w})")
    return latent_frames * (frames // t)


def condition_token_count(condition_frames, video_shape, grid_shape):
    """Tokens that condition frame prediction from a clip's first `condition_frames` frames.

    They are the latent frames covering those frames: ceil(condition_frames / (T/t)) of
    them, h*w tokens each, encoded with the later frames hidden
    (`hold_last_condition_frame`). A count that is not a multiple of the temporal factor is
    allowed on purpose: Kinetics-600's 5 condition frames of 16, with a 4x temporal
    tokenizer, are 2 of 4 latent frames (512 of 1024 tokens, the paper's count) whose
    frames 5-7 are frame 4 repeated, so no future frame is seen. ValueError unless
    0 < condition_frames and at least one latent frame is left to generate.
    """
    frames, (t, h, w) = int(video_shape[0]), (int(d) for d in grid_shape)
    if frames % t:
        raise ValueError(f"{frames}-frame clips do not divide into {t} latent frames")
    factor = frames // t
    latent_frames = -(-int(condition_frames) // factor)
    if int(condition_frames) <= 0 or latent_frames >= t:
        raise ValueError(f"condition_frames={condition_frames} must be positive and leave at "
                         f"least one of the {t} latent frames ({factor} frames each) of the "
                         f"{frames}-frame clips to predict: at most {(t - 1) * factor}")
    return latent_frames * h * w


def hold_last_condition_frame(clips, condition_frames):
    """Clips whose frames after the condition are the last condition frame repeated.

    A 3D-conv tokenizer's first latent frames see later input frames through the
    temporal receptive field; encoding the real clip would leak the future into the
    condition tokens. MAGVIT's protocol: pad the condition with its last frame."""
    clips = np.asarray(clips)
    held = np.repeat(clips[:, condition_frames - 1:condition_frames],
                     clips.shape[1] - condition_frames, axis=1)
    return np.concatenate([clips[:, :condition_frames], held], axis=1)


def clip_tokens(tokenizer, clips, condition_frames, num_condition_tokens, batch_size=32):
    """Flat tokens [N, t*h*w] of float clips in [0, 1] for frame prediction.

    The first `num_condition_tokens` come from the clip with its future frames hidden
    (`hold_last_condition_frame`), the rest (targets) from the real clip."""
    clips = np.asarray(clips, np.float32)
    held = hold_last_condition_frame(clips, condition_frames)

    def encode(x):
        return np.concatenate([np.asarray(tokenizer.encode(x[i:i + batch_size]))
                               for i in range(0, len(x), batch_size)]).reshape(len(x), -1)

    tokens = encode(clips)
    tokens[:, :num_condition_tokens] = encode(held)[:, :num_condition_tokens]
    return tokens
