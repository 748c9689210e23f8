"""Frame prediction: condition tokens stay visible in training, never change and are never
re-queried in decoding; nested loss."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.decoding.decoder import Decoder
from magnets_tf.decoding.schedule import make_plan
from magnets_tf.models import saving
from magnets_tf.models.presets import build_transformer
from magnets_tf.training import frame_prediction as fp

N, C = 32, 16  # 2x4x4 video tokens; the first temporal slice is the condition.


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


def test_training_never_masks_condition_tokens(model, tmp_path):
    trainer = fp.FramePredictionTrainer(model, str(tmp_path), num_steps=10).build_trainer(64)
    counts = set()
    for step in range(3):
        _, _, mask = trainer.masked_inputs(_batch(64), tf.constant(step, tf.int64))
        mask = mask.numpy()
        assert mask.shape == (64, N) and not mask[:, :C].any()
        counts |= set(mask[:, C:].sum(1))
    assert min(counts) >= 1 and max(counts) <= N - C and len(counts) > 5


def test_uses_the_general_eq3_update(model, tmp_path):
    trainer = fp.FramePredictionTrainer(model, str(tmp_path), num_steps=10).build_trainer(8)
    total, per_model, _, _, _ = trainer.compute_losses(_batch(), tf.constant(0, tf.int64),
                                                       training=False)
    assert total.shape == (8,) and set(per_model) == {1, 2, 4, 8}
    # Step 0: alpha = 1, so eq. 3 is the mean of the ground-truth CEs of every sub-model.
    np.testing.assert_allclose(total, sum(per_model.values()) / 4, rtol=1e-5)


def test_bad_training_arrays_are_clear_errors(model, tmp_path):
    trainer = fp.FramePredictionTrainer(model, str(tmp_path), num_steps=2)
    batch = _batch()
    tokens, labels = batch["tokens"].numpy(), batch["label"].numpy()
    with pytest.raises(ValueError, match="batch_size=16"):
        trainer.train(tokens, labels, batch_size=16, progress=False)
    with pytest.raises(ValueError, match="tokens must be"):
        trainer.train(tokens[:, :-1], labels, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="class_ids must be"):
        trainer.train(tokens, labels[:3], batch_size=4, progress=False)


@pytest.mark.slow
def test_a_few_training_steps_reduce_the_loss(model, tmp_path):
    batch = _batch()
    clone = build_transformer("tiny", codebook_size=16, num_classes=10, num_tokens=N,
                              num_condition_tokens=C, dropout=0.0, attention_dropout=0.0)
    clone.set_weights(model.get_weights())
    trainer = fp.FramePredictionTrainer(clone, str(tmp_path), num_steps=20,
                                        learning_rate=3e-3, warmup_steps=2, log_every=20)
    probe = trainer.build_trainer(8)
    step0 = tf.constant(0, tf.int64)
    before = float(tf.reduce_mean(probe.compute_losses(batch, step0, training=False)[0]))
    logged = trainer.train(batch["tokens"].numpy(), batch["label"].numpy(), batch_size=8,
                           progress=False)
    after = float(tf.reduce_mean(probe.compute_losses(batch, step0, training=False)[0]))
    assert after < 0.8 * before, (before, after)
    assert {"loss", "loss_p1", "accuracy_p8", "steps_per_second"} <= set(logged)
    assert (tmp_path / "train").exists()
    trainer.save()
    loaded = saving.load_transformer(str(tmp_path))
    assert loaded.num_condition_tokens == C
    ids = model.input_ids(batch["tokens"], batch["label"])
    np.testing.assert_allclose(loaded(ids), clone(ids), atol=1e-5)


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
