import json

import numpy as np
from PIL import Image

from magnets_tf.models.presets import build_transformer
from tests.tool_runner import run_tool


def _run(*args):
    return run_tool("sample", *args, timeout=600)


def test_samples_from_a_saved_transformer(tmp_path):
    model = build_transformer("tiny", codebook_size=32, num_classes=10, num_tokens=16)
    (tmp_path / "transformer_config.json").write_text(json.dumps(model.get_config()))
    model.save_weights(str(tmp_path / "transformer.weights.h5"))
    out = tmp_path / "out" / "grid.png"
    result = _run(f"--model_dir={tmp_path}", "--steps=4", "--schedule=4:2,1:2",
                  "--cfg_last=1", "--guidance_scale=1.5", "--class_ids=0,3,5", "--batch_size=2",
                  "--cell=4", "--nojit", f"--output={out}", f"--output_tokens={tmp_path / 't.npy'}")
    assert result.returncode == 0, result.stderr
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.shape == (3, 4, 4) and tokens.min() >= 0 and tokens.max() < 32
    image = np.asarray(Image.open(out))
    assert image.shape == (2 * 16 + 2, 2 * 16 + 2, 3)  # 2x2 cells of 4x4 tokens, 2px gaps
    assert "wrote 3 samples" in result.stdout


def test_bad_inputs_are_clear_errors(tmp_path):
    result = _run(f"--model_dir={tmp_path}", f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0
    assert "transformer_config.json not found" in result.stderr
    result = _run("--random_init", "--grid=4", "--num_classes=10", "--codebook_size=32",
                  "--steps=4", "--schedule=8:3", f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "covers 3 steps" in result.stderr
    assert not (tmp_path / "x.png").exists()


def _video_dirs(tmp_path, condition_tokens, num_classes=10):
    from tests.video_helpers import tiny_video_tokenizer
    from magnets_tf.models.saving import save_tokenizer
    from magnets_tf.models.saving import save_transformer

    tokenizer = tiny_video_tokenizer(size=32, spatial_downsample=(True, True))
    save_tokenizer(tokenizer, str(tmp_path / "tok"))
    model = build_transformer("tiny", codebook_size=16, num_classes=num_classes,
                              num_tokens=2 * 8 * 8,
                              num_condition_tokens=condition_tokens)
    save_transformer(model, str(tmp_path / "tr"))
    return tmp_path / "tok", tmp_path / "tr", tokenizer


def test_video_frame_prediction_keeps_the_real_first_frames(tmp_path):
    tok_dir, tr_dir, tokenizer = _video_dirs(tmp_path, condition_tokens=64)
    out = tmp_path / "clips.png"
    result = _run(f"--model_dir={tr_dir}", f"--tokenizer_dir={tok_dir}",
                  "--condition_data=moving_mnist:test", "--steps=4", "--schedule=2:2,1:2",
                  "--cfg_last=0", "--class_ids=0,0,0", "--nojit", f"--output={out}",
                  f"--output_tokens={tmp_path / 't.npy'}")
    assert result.returncode == 0, result.stderr
    from magnets_tf.data.video import moving_mnist_arrays
    from magnets_tf.data.video import hold_last_condition_frame
    clips, _ = moving_mnist_arrays("moving_mnist", "test", 3, 4, (32, 32))
    # Condition tokens see only the first 2 frames (the rest hold frame 2).
    held = hold_last_condition_frame(clips.astype(np.float32) / 255.0, 2)
    real = np.asarray(tokenizer.encode(held)).reshape(3, -1)
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.shape == (3, 2, 8, 8)
    np.testing.assert_array_equal(tokens.reshape(3, -1)[:, :64], real[:, :64])
    # Rows: each real clip, then its prediction; columns: the 4 frames.
    assert np.asarray(Image.open(out)).shape == (6 * 32 + 5 * 2, 4 * 32 + 3 * 2)  # clip rows


def test_video_generation_needs_condition_data_when_the_model_predicts(tmp_path):
    tok_dir, tr_dir, _ = _video_dirs(tmp_path, condition_tokens=64)
    result = _run(f"--model_dir={tr_dir}", f"--tokenizer_dir={tok_dir}", "--steps=4",
                  "--schedule=1:4", "--cfg_last=0", f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "--condition_data" in result.stderr
    result = _run(f"--model_dir={tr_dir}", f"--tokenizer_dir={tok_dir}", "--steps=4",
                  "--schedule=1:4", "--cfg_last=0", "--condition_data=nothing:test",
                  f"--output={tmp_path / 'x.png'}")
    assert result.returncode != 0 and "unknown video data set 'nothing'" in result.stderr


def test_video_gif_beside_the_strip_and_class_agnostic_prediction(tmp_path):
    from PIL import ImageSequence

    tok_dir, tr_dir, _ = _video_dirs(tmp_path, condition_tokens=64, num_classes=0)
    gif = tmp_path / "clips.gif"
    common = [f"--model_dir={tr_dir}", f"--tokenizer_dir={tok_dir}",
              "--condition_data=moving_mnist:test", "--steps=2", "--schedule=1:2",
              "--cfg_last=0", "--nojit", f"--output={tmp_path / 'clips.png'}"]
    result = _run(*common, "--class_ids=0,0,0", "--condition_frames=1",
                  f"--output_gif={gif}", "--gif_fps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 6 clips to" in result.stdout
    with Image.open(gif) as animation:
        frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(animation)]
        assert animation.info["duration"] == 250
    # 4 frames; each a grid of 3 rows (clips) x 2 columns (real, predicted), 2px gaps.
    assert len(frames) == 4 and frames[0].shape == (3 * 32 + 2 * 2, 2 * 32 + 2)
    # A class-agnostic model has no classes to ask for.
    result = _run(*common, "--class_ids=1")
    assert result.returncode != 0 and "class-agnostic (num_classes 0); give zeros" in \
        result.stderr
