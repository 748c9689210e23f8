"""Command-line tests of tools/frame_prediction.py (train, decode both plans, report)."""
import importlib.util
import json

import pytest

from tests.tool_runner import run_tool

HAS_STACK = all(importlib.util.find_spec(m) is not None for m in (
    "magnets_tf.decoding.decoder", "magnets_tf.training.frame_prediction",
    "magnets_tf.training.tokenizer_trainer"))


def _run(*args):
    return run_tool("frame_prediction", *args, timeout=900)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from magnets_tf.models.saving import save_tokenizer
    from tests.video_helpers import tiny_video_tokenizer
    path = tmp_path_factory.mktemp("fp") / "tokenizer"
    save_tokenizer(tiny_video_tokenizer(size=32, frames=8, spatial_downsample=(True, True)),
                   str(path))
    return path


@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers not available")
def test_condition_frames_must_leave_a_latent_frame_to_predict(tokenizer_dir, tmp_path):
    # 7 of 8 frames need all 4 latent frames (2 frames each): nothing left to predict.
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={tmp_path / 'm'}",
               "--condition_frames=7")
    assert out.returncode != 0 and "leave at least one of the 4 latent frames" in \
        out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers not available")
def test_batch_larger_than_the_training_set_is_a_usage_error(tokenizer_dir, tmp_path):
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={tmp_path / 'm'}",
               "--condition_frames=2", "--num_train_videos=4", "--batch_size=8")
    assert out.returncode != 0 and "--batch_size=8 must be in" in out.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers not available")
def test_trains_and_compares_magnets_with_the_full_model(tokenizer_dir, tmp_path):
    model_dir = tmp_path / "model"
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={model_dir}",
               "--condition_frames=2", "--num_train_videos=8", "--num_test_videos=4",
               "--batch_size=4", "--eval_batch_size=2", "--fvd_clips=0", "--steps=4",
               "--schedule=2:2,1:2", "--timing_repeats=1", "--jit_compile=false",
               "--progress=false", "--gin_bindings=build_transformer.preset='tiny'",
               "--gin_bindings=train_frame_prediction.num_steps=2",
               "--gin_bindings=make_optimizer.warmup_steps=1", "--steps_per_loop=2")
    assert out.returncode == 0, out.stderr
    assert "train_frame_prediction.steps_per_loop = 2" in (
        model_dir / "operative_config.gin").read_text()
    from magnets_tf.utils import event_files
    assert event_files.scalar_steps(model_dir / "train")["loss"] == [2]  # One loop of 2.
    metrics = json.loads((model_dir / "metrics.json").read_text())
    ours, full = metrics["magnets"], metrics["full_model_no_cache"]
    assert ours["condition_tokens_unchanged"] and full["condition_tokens_unchanged"]
    # 64 condition tokens of 256 are never processed; the schedule makes MaGNeTS cheaper.
    assert metrics["setting"]["condition_tokens"] == 64
    assert 0 < ours["gflops_exact"] < full["gflops_exact"]
    assert ours["exact_gflops_ratio_vs_full_model"] == pytest.approx(
        full["gflops_exact"] / ours["gflops_exact"])
    assert ours["measured_speedup_vs_full_model"] > 0 and 0 < ours["psnr_db"] < 100
    assert (model_dir / "predictions.png").exists()
    assert "exact_gflops_ratio=" in out.stdout


_EVAL_FLAGS = ("--num_test_videos=4", "--eval_batch_size=2", "--fvd_clips=0", "--steps=4",
               "--schedule=2:2,1:2", "--timing_repeats=1", "--jit_compile=false",
               "--progress=false")


@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers not available")
def test_notrain_evaluates_the_transformer_in_model_dir(tokenizer_dir, tmp_path):
    """--notrain evaluates a saved transformer (as tools/train.py leaves it) without
    training; its condition tokens must be those of --condition_frames."""
    from magnets_tf.models.presets import build_transformer
    from magnets_tf.models.saving import save_transformer
    model_dir = tmp_path / "model"
    save_transformer(build_transformer("tiny", codebook_size=16, num_classes=10,
                                       num_tokens=4 * 8 * 8, num_condition_tokens=64),
                     str(model_dir))
    # 3 condition frames are covered by 2 latent frames = 128 tokens: not this model's.
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={model_dir}", "--notrain",
               "--condition_frames=3", *_EVAL_FLAGS)
    assert out.returncode != 0 and "predicts from 64 condition tokens" in out.stderr
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={model_dir}", "--notrain",
               "--condition_frames=1", *_EVAL_FLAGS)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["setting"]["condition_frames"] == 1
    assert metrics["setting"]["condition_tokens"] == 64
    assert not (model_dir / "checkpoints").exists()  # nothing was trained


@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers not available")
def test_compare_unguided_decodes_four_plans_into_output_dir(tokenizer_dir, tmp_path):
    from magnets_tf.models.presets import build_transformer
    from magnets_tf.models.saving import save_transformer
    model_dir, out_dir = tmp_path / "model", tmp_path / "eval"
    save_transformer(build_transformer("tiny", codebook_size=16, num_classes=10,
                                       num_tokens=4 * 8 * 8, num_condition_tokens=64),
                     str(model_dir))
    common = (f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={model_dir}", "--notrain",
              "--condition_frames=1", f"--output_dir={out_dir}", "--compare_unguided",
              *_EVAL_FLAGS)
    out = _run(*common)  # no guidance in the plan: nothing to compare
    assert out.returncode != 0 and "--compare_unguided needs a guided plan" in out.stderr
    assert not out_dir.exists()
    out = _run(*common, "--guidance_scale=3", "--guidance_steps=2")
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert not (model_dir / "metrics.json").exists()
    guided, unguided = metrics["magnets"], metrics["magnets_unguided"]
    assert (guided["guidance_scale"], guided["guidance_steps"]) == (3.0, 2)
    assert (unguided["guidance_scale"], unguided["guidance_steps"]) == (0.0, 0)
    assert guided["uncond_input"] == "masked_condition"
    assert metrics["full_model_no_cache_unguided"]["guidance_scale"] == 0.0
    # Guidance runs a second (unconditional) pass on its steps: more GFLOPs, other tokens.
    assert guided["gflops_exact"] > unguided["gflops_exact"]
    assert unguided["exact_gflops_ratio_vs_full_model"] > 1
    assert unguided["measured_speedup_vs_full_model"] > 0
    assert guided["mse"] != unguided["mse"]
    assert (out_dir / "predictions.png").exists()
    assert "magnets_unguided: speedup=" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers not available")
def test_tokenize_train_and_evaluate_moving_mnist_frame_prediction(tokenizer_dir, tmp_path):
    """The documented path: tools/tokenize_dataset.py -> tools/train.py with
    gin/moving_mnist/magnets_frame_prediction.gin -> tools/frame_prediction.py --notrain."""
    from tests.tool_runner import ROOT
    tokens = tmp_path / "tokens"
    out = run_tool("tokenize_dataset", f"--tokenizer_dir={tokenizer_dir}",
                   "--dataset=moving_mnist", "--splits=train", "--num_videos=16",
                   "--condition_frames=2", f"--output_dir={tokens}", "--num_shards=2")
    assert out.returncode == 0, out.stderr[-3000:]
    model_dir = tmp_path / "model"
    out = run_tool("train", f"--gin_file={ROOT / 'gin/moving_mnist/magnets_frame_prediction.gin'}",
                   f"--model_dir={model_dir}", "--train_steps=2", "--noprogress",
                   f"--gin_bindings=TOKENS_DIR='{tokens / 'train'}'",
                   "--gin_bindings=build_transformer.num_layers=1",
                   "--gin_bindings=train.batch_size=4", "--gin_bindings=train.sample_every=2",
                   "--gin_bindings=train.sample_steps=2", "--gin_bindings=train.num_samples=2",
                   "--gin_bindings=make_optimizer.warmup_steps=1", timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (model_dir / "samples" / "step00000002_p8.png").exists()
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={model_dir}", "--notrain",
               "--condition_frames=2", *_EVAL_FLAGS)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["setting"]["condition_tokens"] == 64
    assert metrics["magnets"]["condition_tokens_unchanged"]
