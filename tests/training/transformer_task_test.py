"""The transformer task through `train` (tools/train.py's entry): what a run writes,
TensorBoard content, NaN handling, per-replica batches and the resumed data position."""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.data import tokenized
from magnets_tf.models import saving
from magnets_tf.training import distribute, loop, transformer_task
from magnets_tf.training.token_data import TokenArrays, TokenShards
from magnets_tf.utils import event_files
from tests.resume_helpers import StopAt


def _train(model_dir, steps, tokens_dir, strategy=None, **kwargs):
    kwargs = dict(dict(batch_size=8, progress=False), **kwargs)
    return transformer_task.train(model_dir, strategy or tf.distribute.get_strategy(), steps,
                                  tokens_dir=tokens_dir, **kwargs)


@pytest.fixture(autouse=True)
def tiny_gin():
    gin.clear_config()
    gin.bind_parameter("build_transformer.preset", "tiny")
    gin.bind_parameter("build_transformer.num_layers", 1)
    gin.bind_parameter("make_optimizer.warmup_steps", 2)
    yield
    gin.clear_config()


def _tags(model_dir):
    tags = set()
    for root, _, files in os.walk(model_dir):
        for name in files:
            if name.startswith("events.out.tfevents"):
                for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                    tags.update(v.tag for v in event.summary.value)
    return tags


@pytest.mark.slow
def test_run_writes_state_and_tensorboard(tmp_path, tokens_dir):
    model_dir = str(tmp_path / "model")
    summary = _train(model_dir, 4, tokens_dir, checkpoint_every=2, log_every=2,
                     sample_every=4, num_samples=4, sample_steps=2)
    assert summary["final_step"] == 4 and np.isfinite(summary["logs"]["loss"])
    written = set(os.listdir(model_dir))
    assert {"checkpoints", "operative_config.gin", "transformer_config.json",
            "transformer.weights.h5", "train", "samples", "train_summary.json"} <= written
    assert "build_transformer.num_layers = 1" in open(os.path.join(model_dir,
                                                                   "operative_config.gin")).read()
    assert sorted(os.listdir(os.path.join(model_dir, "samples"))) == [
        f"step00000004_p{p}.png" for p in (1, 2, 4, 8)]
    tags = _tags(model_dir)
    for p in (1, 2, 4, 8):
        assert {f"loss/loss_p{p}", f"accuracy/accuracy_p{p}", f"sample_tokens/p{p}"} <= tags
    assert {"loss", "alpha", "grad_norm", "learning_rate",
            "throughput/steps_per_second"} <= tags
    assert any(tag.startswith("config/operative_gin") for tag in tags), tags
    assert any(tag.startswith("_hparams_") for tag in tags)
    model = saving.load_transformer(model_dir)
    assert model.codebook_size == 16 and model.num_tokens == 4
    # Running again with the same step count resumes at the end and changes nothing.
    again = _train(model_dir, 4, tokens_dir)
    assert again["start_step"] == 4 and again["final_step"] == 4


@pytest.mark.slow
def test_non_finite_training_stops_and_keeps_last_good_checkpoint(tmp_path, tokens_dir):
    model_dir = str(tmp_path / "model")
    _train(model_dir, 2, tokens_dir, checkpoint_every=1)
    good = saving.load_transformer(model_dir).get_weights()
    # Continue with a NaN learning rate: step 3 computes a finite loss but NaN weights,
    # step 4 would report a NaN loss; neither may reach the checkpoint or the export.
    gin.bind_parameter("make_optimizer.learning_rate", float("nan"))
    with pytest.raises(loop.NonFiniteLossError, match=r"step 3: the weights became nan.*"
                                                      r"Nothing of that step was saved.*ckpt-2"):
        _train(model_dir, 5, tokens_dir, checkpoint_every=1)
    state = open(os.path.join(model_dir, "checkpoints", "checkpoint")).read()
    assert 'model_checkpoint_path: "ckpt-2"' in state and "ckpt-3" not in state
    for a, b in zip(good, saving.load_transformer(model_dir).get_weights()):
        np.testing.assert_array_equal(a, b)
    # The weights are checked after every step, also without checkpoints in between.
    with pytest.raises(loop.NonFiniteLossError, match=r"step 1: the weights became nan"):
        _train(str(tmp_path / "other"), 5, tokens_dir, checkpoint_every=0)


def test_bad_batch_and_missing_data(tmp_path, tokens_dir, mirrored):
    with pytest.raises(ValueError, match="not divisible by the 2 replicas"):
        _train(str(tmp_path / "m"), 2, tokens_dir, strategy=mirrored, batch_size=7)
    with pytest.raises(tokenized.TokenShardError, match="does not exist"):
        _train(str(tmp_path / "m"), 2, str(tmp_path / "none"))


def _sources(tmp_path):
    """The same 40 examples as arrays and as token shards; labels are example indices."""
    tokens = np.random.default_rng(1).integers(0, 16, (40, 2, 2))
    tokenized.write_token_shards(str(tmp_path / "shards"), [(tokens, np.arange(40))],
                                 dict(codebook_size=16, grid=[2, 2], num_classes=40,
                                      tokenizer=""), num_shards=2)
    return {"arrays": TokenArrays(tokens, np.arange(40), 16, 40),
            "shards": TokenShards(str(tmp_path / "shards"))}


@pytest.mark.parametrize("source", ["arrays", "shards"])
def test_replicas_split_each_global_batch_and_a_resumed_run_reads_on(tmp_path, source,
                                                                      mirrored):
    task = transformer_task.TransformerTask(_sources(tmp_path)[source], global_batch_size=8,
                                            seed=2)

    def global_batches(strategy, start_step, steps):
        iterator = iter(distribute.distribute_dataset(
            strategy, lambda context: task.dataset(context, start_step)))
        batches = []
        for _ in range(steps):
            parts = strategy.experimental_local_results(next(iterator)["label"])
            batches.append(np.concatenate([p.numpy() for p in parts]).tolist())
        return batches

    default = tf.distribute.get_strategy()
    reference = global_batches(default, 0, 7)  # 56 examples: crosses an epoch.
    assert sorted(sum(reference[:5], [])) == list(range(40))
    assert global_batches(mirrored, 0, 7) == reference
    assert global_batches(mirrored, 3, 4) == reference[3:]
    assert global_batches(default, 6, 1) == reference[6:]


@pytest.mark.slow
def test_steps_per_loop_4_gives_the_weights_of_steps_per_loop_1(tmp_path, tokens_dir):
    """8 steps of the nested trainer (dropout on, masks and alpha per step) in loops of
    4 steps reach the weights of 8 single-step loops; the logs are the loop means."""
    gin.bind_parameter("build_transformer.dropout", 0.1)
    models = {}
    for steps_per_loop in (1, 4):
        model_dir = str(tmp_path / f"spl{steps_per_loop}")
        summary = _train(model_dir, 8, tokens_dir, steps_per_loop=steps_per_loop,
                         checkpoint_every=4, log_every=4)
        assert summary["final_step"] == 8 and np.isfinite(summary["logs"]["loss"])
        models[steps_per_loop] = saving.load_transformer(model_dir)
    for a, b in zip(models[1].weights, models[4].weights):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=a.path)
    state = tf.train.get_checkpoint_state(str(tmp_path / "spl4" / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-4",
                                                                              "ckpt-8"]
    # The weights moved between the two boundaries (the comparison above means something).
    at_4, at_8 = (tf.train.load_checkpoint(p) for p in state.all_model_checkpoint_paths)
    model_keys = [k for k, _ in tf.train.list_variables(state.all_model_checkpoint_paths[0])
                  if k.startswith("model/") and "kernel" in k]
    assert model_keys and any(not np.array_equal(at_4.get_tensor(k), at_8.get_tensor(k))
                              for k in model_keys)


def test_dtype_policy_is_checked_and_reported():
    tokens = TokenArrays(np.zeros((4, 2, 2), np.int32), np.zeros(4, np.int32), 8, 2)
    with pytest.raises(ValueError, match="unknown dtype_policy 'bfloat16'"):
        transformer_task.TransformerTask(tokens, 8, dtype_policy="bfloat16")
    task = transformer_task.TransformerTask(tokens, 8, dtype_policy="mixed_float16")
    task.build(tf.distribute.get_strategy(), train_steps=4)
    assert task.transformer.compute_dtype == "float16"
    assert isinstance(task.trainer.optimizer, tf.keras.optimizers.LossScaleOptimizer)
    assert task.hparams()["dtype_policy"] == "mixed_float16"


def test_tensorboard_runs_train_eval_and_hparams_of_a_short_run(tmp_path, tokens_dir,
                                                                 held_out_dir):
    """A run shorter than log_every: train scalars at its first and last step, held-out
    evaluation in the eval run, sample grids, the gin text and true hparams."""
    model_dir = tmp_path / "magnets"
    _train(str(model_dir), 5, tokens_dir, log_every=100, eval_tokens_dir=held_out_dir,
           eval_every=2, eval_batch_size=8, eval_batches=2, sample_every=5, num_samples=2,
           sample_steps=2)
    assert event_files.run_dirs(model_dir) == [".", "eval", "train"]
    train = event_files.scalar_steps(model_dir / "train")
    factors = (1, 2, 4, 8)
    expected = {"loss", "alpha", "grad_norm", "learning_rate",
                *(f"loss/loss_p{p}" for p in factors), *(f"accuracy/accuracy_p{p}"
                                                         for p in factors)}
    assert expected <= set(train)
    assert all(train[tag] == [1, 5] for tag in expected), train
    assert train["throughput/steps_per_second"] == [5]
    assert train["throughput/examples_per_second"] == [5]
    evaluation = event_files.scalar_steps(model_dir / "eval")
    assert set(evaluation) == {f"{m}/{m}_p{p}" for m in ("gt_loss", "accuracy")
                               for p in factors}
    assert all(steps == [2, 4, 5] for steps in evaluation.values()), evaluation
    assert event_files.plugin_tags(model_dir / "train", "images") == [
        f"sample_tokens/p{p}" for p in factors]
    assert event_files.plugin_tags(model_dir / "train", "text") == ["config/operative_gin"]
    name, hparams = event_files.session_hparams(model_dir)
    assert name == "magnets"
    assert hparams["model"] == "magnets" and hparams["preset"] == "tiny"
    assert hparams["num_layers"] == 1 and hparams["loss_mode"] == "magnets"
    assert hparams["alpha_decay_steps"] == "None" and hparams["factors"] == "1,2,4,8"


def test_maskgit_baseline_hparams_say_so(tmp_path, tokens_dir):
    gin.bind_parameter("build_transformer.factors", (1,))
    model_dir = tmp_path / "maskgit"
    _train(str(model_dir), 2, tokens_dir, log_every=100)
    name, hparams = event_files.session_hparams(model_dir)
    assert name == "maskgit" and hparams["model"] == "maskgit++"
    assert hparams["loss_mode"] == "gt_only" and hparams["alpha_decay_steps"] == "unused"
    assert hparams["factors"] == "1"
    train = event_files.scalar_steps(model_dir / "train")
    assert "alpha" not in train and train["loss/loss_p1"] == [1, 2]


def test_eval_every_without_held_out_tokens_is_refused(tmp_path, tokens_dir):
    with pytest.raises(ValueError, match="eval_every=2 needs train.eval_tokens_dir"):
        _train(str(tmp_path / "m"), 2, tokens_dir, eval_every=2)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow  # Four tiny trainings (~1 min on the loaded 2-core machine).
def test_a_run_in_legs_ends_with_the_weights_of_the_uninterrupted_run(tmp_path, tokens_dir):
    """`train(..., stop_at_step=N)`, tools/train.py's entry: the learning-rate schedule,
    the alpha anneal, masks, dropout and data order are the whole run's, so legs that
    stop at steps 2 and 5 and a last one reach the uninterrupted run's weights."""
    gin.bind_parameter("build_transformer.dropout", 0.1)
    reference_dir, legs_dir = str(tmp_path / "reference"), str(tmp_path / "legs")
    _train(reference_dir, 6, tokens_dir, checkpoint_every=4)
    first = _train(legs_dir, 6, tokens_dir, checkpoint_every=4, stop_at_step=2)
    assert (first["final_step"], first["stopped"]["reason"]) == (2, "stop_at_step")
    at_2 = saving.load_transformer(legs_dir)  # The export of the stopped leg.
    second = _train(legs_dir, 6, tokens_dir, checkpoint_every=4, stop_at_step=5)
    assert (second["start_step"], second["final_step"]) == (2, 5)
    last = _train(legs_dir, 6, tokens_dir, checkpoint_every=4)
    assert (last["start_step"], last["final_step"], last["complete"]) == (5, 6, True)
    state = tf.train.get_checkpoint_state(os.path.join(legs_dir, "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        "ckpt-4", "ckpt-5", "ckpt-6"]
    reference, legs = (saving.load_transformer(d) for d in (reference_dir, legs_dir))
    for a, b in zip(reference.weights, legs.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6, err_msg=a.path)
    assert any(not np.allclose(a.numpy(), b.numpy(), atol=1e-4)  # It trained after step 2.
               for a, b in zip(at_2.weights, legs.weights))


def _video_shards(path, condition_tokens, examples=24):
    """Random 2x2x2 clip tokens (codebook 16, 3 classes); condition_tokens > 0 writes the
    frame-prediction layout (the first latent frame = 4 tokens)."""
    rng = np.random.default_rng(0)
    tokenized.write_token_shards(
        str(path), [(rng.integers(0, 16, (examples, 2, 2, 2)), rng.integers(0, 3, examples))],
        dict(codebook_size=16, grid=[2, 2, 2], num_classes=3, tokenizer="",
             num_condition_frames=2 if condition_tokens else 0,
             num_condition_tokens=condition_tokens), num_shards=2)
    return str(path)


def test_video_frame_prediction_trains_previews_and_resumes(tmp_path):
    """A frame-prediction run on video shards, interrupted after its step-2 checkpoint,
    resumes there and finishes; the transformer has the shards' layout and the preview
    strip keeps each real clip's first latent frame. (Exact weights: the slow tests.)"""
    from PIL import Image

    gin.bind_parameter("build_transformer.factors", (1, 2))
    tokens_dir = _video_shards(tmp_path / "tokens", 4)
    model_dir = str(tmp_path / "model")
    with pytest.raises(KeyboardInterrupt):
        _train(model_dir, 4, tokens_dir, checkpoint_every=2, sample_every=2, num_samples=2,
               sample_steps=2, extra_callbacks=[StopAt(3)])
    summary = _train(model_dir, 4, tokens_dir, checkpoint_every=2)
    assert summary["start_step"] == 2 and summary["final_step"] == 4
    model = saving.load_transformer(model_dir)
    assert (model.num_tokens, model.num_condition_tokens, model.num_classes) == (8, 4, 3)
    strip = np.asarray(Image.open(os.path.join(model_dir, "samples", "step00000002_p2.png")))
    assert strip.shape == (4 * 16 + 3, 2 * 16 + 1, 3)
    np.testing.assert_array_equal(strip[:16, :16], strip[17:33, :16])


@pytest.mark.slow
@pytest.mark.parametrize("condition_tokens", [4, 0])
def test_video_shards_train_preview_and_resume(tmp_path, condition_tokens):
    """Frame prediction (4 condition tokens) and class-conditional video generation (0)
    from video shards through `train`: the transformer takes the shards' layout, the
    preview is a strip of real and generated clips, and an interrupted run resumes to the
    uninterrupted run's weights."""
    from PIL import Image

    gin.bind_parameter("build_transformer.factors", (1, 2))
    tokens_dir = _video_shards(tmp_path / "tokens", condition_tokens)
    reference = str(tmp_path / "reference")
    _train(reference, 4, tokens_dir, checkpoint_every=2, sample_every=4, num_samples=2,
           sample_steps=2)
    model = saving.load_transformer(reference)
    assert (model.num_tokens, model.num_condition_tokens, model.num_classes) == (
        8, condition_tokens, 3)
    resumed = str(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        _train(resumed, 4, tokens_dir, checkpoint_every=2, extra_callbacks=[StopAt(3)])
    summary = _train(resumed, 4, tokens_dir, checkpoint_every=2)
    assert summary["start_step"] == 2 and summary["final_step"] == 4
    for a, b in zip(model.weights, saving.load_transformer(resumed).weights):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=a.path)
    # Token maps (no tokenizer): rows real clip 0, its sample, real clip 1, its sample;
    # columns the 2 latent frames of 2x2 tokens at 8 pixels per token; 1-pixel gaps.
    strip = np.asarray(Image.open(os.path.join(reference, "samples", "step00000004_p1.png")))
    assert strip.shape == (4 * 16 + 3, 2 * 16 + 1, 3)
    same_first_frame = np.array_equal(strip[:16, :16], strip[17:33, :16])
    if condition_tokens:  # the prediction keeps the real clip's first latent frame
        assert same_first_frame
    assert {"sample_tokens/p1", "sample_tokens/p2"} <= _tags(reference)


def test_held_out_video_shards_must_match_the_training_layout(tmp_path):
    tokens_dir = _video_shards(tmp_path / "tokens", 4)
    other = _video_shards(tmp_path / "other", 0)
    with pytest.raises(ValueError, match="held-out tokens .* do not match the training"):
        _train(str(tmp_path / "model"), 2, tokens_dir, eval_tokens_dir=other, eval_every=1)
