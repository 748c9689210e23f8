"""Frame prediction: condition tokens stay visible in training, never change and are never
re-queried in decoding; nested loss; the run resumes after SIGKILL to the same weights."""
import os
import shutil
import sys
from pathlib import Path

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.decoding.decoder import Decoder
from magnets_tf.decoding.schedule import make_plan
from magnets_tf.models import saving
from magnets_tf.models.presets import build_transformer
from magnets_tf.training import frame_prediction as fp
from magnets_tf.training import trainer as trainer_lib
from magnets_tf.utils import event_files
from tests.resume_helpers import assert_resumes_after_sigkill

N, C = 32, 16  # 2x4x4 video tokens; the first temporal slice is the condition.
WORKER = Path(__file__).resolve().parent / "resume_worker.py"
# A 4-step frame-prediction run written by the code before MAGVIT-style guidance (b8a358f).
OLD_RUN = (Path(__file__).resolve().parents[2] / "checkpoints" / "compat"
           / "frame_prediction_b8a358f")


@pytest.fixture(autouse=True)
def tiny_gin():
    gin.clear_config()
    gin.bind_parameter("build_transformer.preset", "tiny")
    yield
    gin.clear_config()


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=str(Path(__file__).resolve().parents[2]))


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    m = build_transformer("tiny", codebook_size=16, num_classes=10, num_tokens=N,
                          num_condition_tokens=C, dropout=0.0, attention_dropout=0.0)
    emb = m.token_embedding.embeddings
    emb.assign(emb * 20.0)  # Spread random logits.
    return m


def _batch(size=8):
    tokens = tf.random.stateless_uniform([size, N], [1, 2], 0, 16, tf.int32)
    return {"tokens": tokens, "label": tf.range(size) % 10}


def test_training_never_masks_condition_tokens(model):
    trainer = trainer_lib.NestedMaskGitTrainer(model, 64, total_steps=10)
    counts = set()
    for step in range(3):
        _, _, mask = trainer.masked_inputs(_batch(64), tf.constant(step, tf.int64))
        mask = mask.numpy()
        assert mask.shape == (64, N) and not mask[:, :C].any()
        counts |= set(mask[:, C:].sum(1))
    assert min(counts) >= 1 and max(counts) <= N - C and len(counts) > 5


def test_condition_dropout_reaches_the_trainer_inputs(model):
    """gin `mask_batch.condition_drop_rate`: those examples show the trainer the
    unconditional input of frame-prediction guidance (null class, masked condition)."""
    gin.bind_parameter("mask_batch.condition_drop_rate", 0.5)
    gin.bind_parameter("mask_batch.class_drop_rate", 0.0)
    trainer = trainer_lib.NestedMaskGitTrainer(model, 64, total_steps=10)
    batch = _batch(64)
    ids, targets, mask = trainer.masked_inputs(batch, tf.constant(3, tf.int64))
    ids, mask = ids.numpy(), mask.numpy()
    dropped = np.all(ids[:, 1:1 + C] == model.mask_token_id, axis=1)
    assert 16 <= dropped.sum() <= 48  # 64 draws at rate 0.5
    np.testing.assert_array_equal(ids[~dropped, 1:1 + C], batch["tokens"].numpy()[~dropped, :C])
    np.testing.assert_array_equal(ids[:, 0] == model.null_class_id, dropped)
    assert not mask[:, :C].any()  # the loss stays on the generated tokens
    again, _, _ = trainer.masked_inputs(batch, tf.constant(3, tf.int64))
    np.testing.assert_array_equal(again.numpy(), ids)  # a function of (seed, step)


def test_a_run_from_before_guidance_loads_decodes_and_resumes(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    old = saving.load_transformer(str(run))
    assert old.num_condition_tokens == C and old.num_tokens == N
    plan = make_plan(N, num_condition_tokens=C, num_steps=4, model_schedule="2:2,1:2",
                     guidance_scale=2.0, guidance_steps=2)
    assert plan.uncond_input == "masked_condition"
    cond = np.arange(2 * C, dtype=np.int32).reshape(2, C) % 16
    out = Decoder(old, plan, 2, jit_compile=False).generate([1, 2], [0, 0],
                                                            condition_tokens=cond)
    np.testing.assert_array_equal(out[:, :C], cond)
    # The new code (condition dropout on by default) continues it: same configuration.
    for name, value in dict(num_layers=1, hidden_size=32, num_heads=2, mlp_dim=64).items():
        gin.bind_parameter(f"build_transformer.{name}", value)
    tokens = np.random.default_rng(0).integers(0, 16, [16, N]).astype(np.int32)
    summary = fp.train_frame_prediction(
        str(run), tokens, np.arange(16) % 10, codebook_size=16, num_classes=10,
        num_condition_tokens=C, batch_size=4, num_steps=6, checkpoint_every=2,
        keep_checkpoints=1, log_every=2, progress=False)
    assert summary["start_step"] == 4 and summary["final_step"] == 6


def test_uses_the_general_eq3_update(model):
    trainer = trainer_lib.NestedMaskGitTrainer(model, 8, total_steps=10)
    total, per_model, _, _, _ = trainer.compute_losses(_batch(), tf.constant(0, tf.int64),
                                                       training=False)
    assert total.shape == (8,) and set(per_model) == {1, 2, 4, 8}
    # Step 0: alpha = 1, so eq. 3 is the mean of the ground-truth CEs of every sub-model.
    np.testing.assert_allclose(total, sum(per_model.values()) / 4, rtol=1e-5)


def _train(model_dir, batch, **kwargs):
    return fp.train_frame_prediction(
        str(model_dir), batch["tokens"].numpy(), batch["label"].numpy(), codebook_size=16,
        num_classes=10, num_condition_tokens=C, progress=False, **kwargs)


def test_bad_training_arrays_are_clear_errors(tmp_path):
    batch = _batch()
    with pytest.raises(ValueError, match="batch_size=16"):
        _train(tmp_path / "a", batch, batch_size=16, num_steps=2)
    with pytest.raises(ValueError, match="tokens must be"):
        _train(tmp_path / "b", dict(batch, tokens=batch["tokens"][:, 0]), batch_size=4)
    with pytest.raises(ValueError, match="class_ids must be"):
        _train(tmp_path / "c", dict(batch, label=batch["label"][:3]), batch_size=4)
    with pytest.raises(ValueError, match="token ids"):
        _train(tmp_path / "d", dict(batch, tokens=batch["tokens"] + 16), batch_size=4)
    with pytest.raises(ValueError, match="num_condition_tokens > 0"):
        fp.train_frame_prediction(str(tmp_path / "e"), batch["tokens"].numpy(),
                                  batch["label"].numpy(), 16, 10, num_condition_tokens=0)


@pytest.mark.slow
def test_a_few_training_steps_reduce_the_loss(tmp_path):
    gin.bind_parameter("build_transformer.dropout", 0.0)
    gin.bind_parameter("build_transformer.attention_dropout", 0.0)
    gin.bind_parameter("make_optimizer.learning_rate", 1e-2)
    gin.bind_parameter("make_optimizer.warmup_steps", 2)
    gin.bind_parameter("make_optimizer.weight_decay", 0.01)
    gin.bind_parameter("NestedMaskGitTrainer.label_smoothing", 0.0)
    batch = _batch()
    summary = _train(tmp_path, batch, batch_size=8, num_steps=20, log_every=20, seed=5)
    keras.utils.set_random_seed(5)  # The run's seed: its initial weights.
    initial = build_transformer("tiny", codebook_size=16, num_classes=10, num_tokens=N,
                                num_condition_tokens=C, dropout=0.0, attention_dropout=0.0)
    loaded = saving.load_transformer(str(tmp_path))
    assert loaded.num_condition_tokens == C

    def mean_loss(transformer):
        probe = trainer_lib.NestedMaskGitTrainer(transformer, 8, total_steps=20)
        return float(tf.reduce_mean(probe.compute_losses(batch, tf.constant(0, tf.int64),
                                                         training=False)[0]))

    before, after = mean_loss(initial), mean_loss(loaded)
    assert after < 0.8 * before, (before, after)
    assert {"loss", "loss_p1", "accuracy_p8"} <= set(summary["logs"])
    assert summary["final_step"] == 20 and summary["steps_per_second"] > 0
    assert (tmp_path / "checkpoints").exists()
    train = event_files.scalar_steps(tmp_path / "train")  # log_every=20: first and last.
    assert {"loss", "alpha", "grad_norm", "learning_rate", "loss/loss_p8",
            "accuracy/accuracy_p1"} <= set(train)
    assert train["loss"] == [1, 20] and train["accuracy/accuracy_p8"] == [1, 20]


def test_steps_per_loop_and_tensorboard_of_a_short_run(tmp_path):
    """3 steps in loops of 2 (boundaries 2, 3), shorter than log_every: scalars at both
    boundaries; the hparams session is named after the run."""
    model_dir = tmp_path / "frames"
    summary = _train(model_dir, _batch(), batch_size=4, num_steps=3, log_every=100,
                     steps_per_loop=2)
    assert summary["final_step"] == 3
    train = event_files.scalar_steps(model_dir / "train")
    assert train["loss"] == [2, 3] and train["throughput/steps_per_second"] == [3]
    assert event_files.plugin_tags(model_dir / "train", "text") == ["config/operative_gin"]
    name, hparams = event_files.session_hparams(model_dir)
    assert name == "frames" and hparams["steps_per_loop"] == 2


@pytest.mark.slow
def test_sigkill_and_restart_matches_uninterrupted_run(tmp_path):
    def command(model_dir):
        return [sys.executable, str(WORKER), "frame_prediction", str(model_dir), "30"]

    assert_resumes_after_sigkill(command, tmp_path, 30, "transformer.weights.h5", _env())


@pytest.mark.parametrize("schedule,use_cache", [("8:2,1:2", True), ("1:4", False)])
def test_condition_tokens_never_change_and_are_never_requeried(model, schedule, use_cache):
    plan = make_plan(N, 4, schedule, num_condition_tokens=C, use_cache=use_cache)
    decoder = Decoder(model, plan, 3, jit_compile=False, record_steps=True)
    cond = np.random.default_rng(0).integers(0, 16, (3, C)).astype(np.int32)
    out, stats = decoder.generate_with_stats([1, 2, 3], [0, 0], condition_tokens=cond)
    np.testing.assert_array_equal(out[:, :C], cond)
    for step_tokens in stats["tokens_per_step"]:  # unchanged after every step
        np.testing.assert_array_equal(step_tokens[:, :C], cond)
    for k in range(plan.num_steps):
        if plan.refresh_steps[k]:
            assert stats["processed"][k] == N + 1
        else:
            # Only tokens masked at the previous step's input are queried: the condition
            # tokens (never masked) and the class token are read from the cache.
            assert stats["processed"][k] == plan.masked_in[k - 1] <= N - C
            assert stats["processed_were_masked"][k] == stats["processed"][k]
    if use_cache:
        assert not all(plan.refresh_steps)
    assert all(q <= N - C for kind, k, p, q, t, m in decoder.trace_log
               if not plan.refresh_steps[k])
