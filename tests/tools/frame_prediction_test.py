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
def test_condition_frames_must_match_the_temporal_factor(tokenizer_dir, tmp_path):
    out = _run(f"--tokenizer_dir={tokenizer_dir}", f"--model_dir={tmp_path / 'm'}",
               "--condition_frames=3")
    assert out.returncode != 0 and "temporal factor 2" in out.stderr
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
