"""tools/tokenize_dataset.py: image and video shards readable by token_dataset, equal to
the tokenizer's encoding; video flags checked against the tokenizer."""
import os
from collections import Counter

import numpy as np
import pytest

from magnets_tf.data.datasets import load_arrays
from magnets_tf.data.tokenized import read_metadata, token_dataset, verify_token_shards
from magnets_tf.models.vqgan import build_vqgan
from magnets_tf.models.saving import save_tokenizer
from tests.tool_runner import run_tool


def _run(*args):
    return run_tool("tokenize_dataset", *args, timeout=300)


def test_tokenizes_a_split_into_valid_shards(tmp_path):
    model = build_vqgan("small_8x8", filters=8, norm_groups=4, embedding_dim=4,
                        codebook_size=16)
    save_tokenizer(model, str(tmp_path / "tok"))
    out = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=mnist5k", "--splits=test",
               f"--output_dir={tmp_path / 'tokens'}", "--num_shards=2")
    assert out.returncode == 0, out.stderr[-3000:]
    path = str(tmp_path / "tokens" / "test")
    meta = read_metadata(path, expected_codebook_size=16, expected_grid=[8, 8])
    assert meta["num_examples"] == 1000 and meta["num_classes"] == 10
    ds = token_dataset(path, 1000, shuffle=False, repeat=False, expected_codebook_size=16,
                       expected_grid=[8, 8], drop_remainder=False)
    batch = next(iter(ds))
    images, labels = load_arrays("mnist5k", "test")
    expected = model.encode(images.astype(np.float32) / 255.0).numpy()
    # Shards are filled round-robin: compare as multisets of (label, tokens) rows. A random
    # tokenizer has near-ties between codes that another batch size (another oneDNN
    # blocking) may break the other way, so up to 1% of the rows may differ.
    got = Counter(zip(batch["label"].numpy().tolist(),
                      map(tuple, batch["tokens"].numpy().reshape(1000, -1).tolist())))
    want = Counter(zip(labels.tolist(), map(tuple, expected.reshape(1000, -1).tolist())))
    assert sorted(label for label, _ in got.elements()) == sorted(labels.tolist())
    assert sum((got - want).values()) <= 10, sum((got - want).values())
    # Existing output is not overwritten without --overwrite.
    again = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=mnist5k", "--splits=test",
                 f"--output_dir={tmp_path / 'tokens'}")
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    out = _run(f"--tokenizer_dir={tmp_path}", f"--output_dir={tmp_path / 'x'}")
    assert out.returncode != 0 and "not a trained tokenizer" in out.stderr


def test_max_examples_limits_each_split(tmp_path):
    model = build_vqgan("small_8x8", filters=8, norm_groups=4, embedding_dim=4,
                        codebook_size=16)
    save_tokenizer(model, str(tmp_path / "tok"))
    out = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=mnist5k", "--splits=test",
               f"--output_dir={tmp_path / 'tokens'}", "--num_shards=1", "--batch_size=50",
               "--max_examples=130")
    assert out.returncode == 0, out.stderr[-3000:]
    assert read_metadata(str(tmp_path / "tokens" / "test"))["num_examples"] == 130
    bad = _run(f"--tokenizer_dir={tmp_path / 'tok'}", f"--output_dir={tmp_path / 'x'}",
               "--max_examples=-1")
    assert bad.returncode != 0 and "--max_examples must be >= 0" in bad.stderr


# ---------------------------------------------------------------------------- video
def _video_tokenizer(path, size=32, channels=1):
    """A tiny random VideoTokenizer (4 frames; time 2x, space 4x) saved to `path`."""
    import keras

    from tests.video_helpers import tiny_video_tokenizer

    keras.utils.set_random_seed(0)
    model = tiny_video_tokenizer(size=size, spatial_downsample=(True, True),
                                 channels=channels)
    save_tokenizer(model, str(path))
    return model


def _by_label(tokens, labels):
    return Counter(zip(np.asarray(labels).tolist(),
                       map(tuple, np.asarray(tokens).reshape(len(labels), -1).tolist())))


def test_moving_mnist_frame_prediction_shards(tmp_path):
    from magnets_tf.data import video

    model = _video_tokenizer(tmp_path / "tok")
    out = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=moving_mnist",
               "--splits=test", "--num_videos=6", "--condition_frames=2", "--batch_size=6",
               f"--output_dir={tmp_path / 'tokens'}", "--num_shards=2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "condition 2 frames = 64 tokens" in out.stdout
    path = str(tmp_path / "tokens" / "test")
    meta = verify_token_shards(path, expected_codebook_size=16, expected_grid=[2, 8, 8])
    assert meta["num_examples"] == 6 and meta["num_classes"] == 10
    assert (meta["num_condition_frames"], meta["num_condition_tokens"]) == (2, 64)
    assert meta["clip_shape"] == [4, 32, 32, 1] and meta["dataset"] == "moving_mnist"
    batch = next(iter(token_dataset(path, 6, shuffle=False, repeat=False)))
    clips, labels = video.clip_arrays("moving_mnist", "test", 4, 32, num_videos=6)
    expected = video.clip_tokens(model, clips.astype(np.float32) / 255.0, 2, 64)
    got = _by_label(batch["tokens"].numpy(), batch["label"].numpy())
    want = _by_label(expected, labels)
    # A random tokenizer has near-ties between codes; allow one differing clip of six.
    assert sum((got - want).values()) <= 1, (got, want)


def _video_flag_errors(tmp_path, cases):
    """Runs the tool once per (flag, expected message) on a tiny video tokenizer."""
    if not (tmp_path / "tok").exists():
        _video_tokenizer(tmp_path / "tok")
    base = [f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=moving_mnist", "--splits=test",
            f"--output_dir={tmp_path / 'tokens'}", "--num_videos=2"]
    for flags, message in cases:
        out = _run(*base, *flags)
        assert out.returncode != 0 and message in out.stderr, (flags, out.stderr[-2000:])
    assert not (tmp_path / "tokens" / "test").exists()


def test_video_flags_that_disagree_with_the_tokenizer_are_usage_errors(tmp_path):
    _video_flag_errors(tmp_path, [
        (["--num_frames=8"], "--num_frames=8 but the tokenizer"),
        (["--condition_frames=4"], "leave at least one of the 2 latent frames")])


@pytest.mark.slow
def test_more_video_flag_errors(tmp_path):
    from magnets_tf.data import video

    cases = [(["--image_size=64"], "--image_size=64 but the tokenizer"),
             (["--condition_frames=-1"], "must be positive"),
             (["--frame_stride=2"], "--frame_stride does not apply to moving_mnist")]
    if os.path.exists(os.path.join(video.OPENCV_DATA_DIR, video.OPENCV_VIDEOS[0])):
        # Frames of the wrong channel count name both counts (opencv-doc clips are RGB).
        cases.append((["--dataset=opencv_clips", "--max_examples=1"],
                      "3-channel frames; the tokenizer takes 1"))
    _video_flag_errors(tmp_path, cases)
    # Video flags with an image tokenizer.
    model = build_vqgan("small_8x8", filters=8, norm_groups=4, embedding_dim=4,
                        codebook_size=16)
    save_tokenizer(model, str(tmp_path / "image_tok"))
    out = _run(f"--tokenizer_dir={tmp_path / 'image_tok'}", "--dataset=mnist5k",
               f"--output_dir={tmp_path / 'x'}", "--condition_frames=2")
    assert out.returncode != 0 and "--condition_frames applies to video tokenizers" in out.stderr


def test_opencv_clips_class_agnostic_shards(tmp_path):
    from magnets_tf.data import video

    if not os.path.exists(os.path.join(video.OPENCV_DATA_DIR, video.OPENCV_VIDEOS[0])):
        pytest.skip(f"opencv-doc videos absent ({video.OPENCV_DATA_DIR}; scripts/setup.sh "
                    f"installs the Debian package opencv-doc)")
    _video_tokenizer(tmp_path / "tok", size=16, channels=3)
    out = _run(f"--tokenizer_dir={tmp_path / 'tok'}", "--dataset=opencv_clips",
               "--splits=test", "--frame_stride=4", "--max_examples=5", "--num_classes=0",
               f"--output_dir={tmp_path / 'tokens'}", "--num_shards=1")
    assert out.returncode == 0, out.stderr[-3000:]
    meta = verify_token_shards(str(tmp_path / "tokens" / "test"), expected_grid=[2, 4, 4])
    assert meta["num_examples"] == 5 and meta["num_classes"] == 0
    assert meta["num_condition_tokens"] == 0 and meta["frame_stride"] == 4
    batch = next(iter(token_dataset(str(tmp_path / "tokens" / "test"), 5, shuffle=False,
                                    repeat=False)))
    assert batch["label"].numpy().tolist() == [0] * 5  # class-agnostic: labels not kept


_MOCKED_TOOL = """
import runpy, sys
import tensorflow_datasets as tfds
with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_ucf101_through_tfds_mock_data(tmp_path):
    """The tfds path of the tool, on tfds' generated stand-in for UCF101 (offline)."""
    import subprocess
    import sys

    from tests.tool_runner import ROOT, tool_env

    _video_tokenizer(tmp_path / "tok", size=16, channels=3)
    argv = [str(ROOT / "tools" / "tokenize_dataset.py"), f"--tokenizer_dir={tmp_path / 'tok'}",
            "--dataset=ucf101", "--splits=train", "--frame_stride=2", "--condition_frames=1",
            f"--output_dir={tmp_path / 'tokens'}", "--num_shards=2", "--batch_size=2"]
    out = subprocess.run([sys.executable, "-c", _MOCKED_TOOL.replace(
        "sys.argv[0]", repr(argv[0])), *argv[1:]], env=tool_env(), capture_output=True,
        text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    meta = verify_token_shards(str(tmp_path / "tokens" / "train"), expected_codebook_size=16,
                               expected_grid=[2, 4, 4])
    assert meta["num_examples"] == 5 and meta["num_classes"] == 101
    # One condition frame of a 2x temporal tokenizer: the first latent frame (16 tokens).
    assert (meta["num_condition_frames"], meta["num_condition_tokens"]) == (1, 16)
    labels = next(iter(token_dataset(str(tmp_path / "tokens" / "train"), 5, shuffle=False,
                                     repeat=False)))["label"].numpy()
    assert labels.min() >= 0 and labels.max() < 101
