"""Nested trainer: mirrored == default strategy, XLA compile, eq. 3 wiring, save/load."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.models.presets import build_transformer
from magnets_tf.training import distribute, losses, optimizer as optimizer_lib
from magnets_tf.training import trainer as trainer_lib

GLOBAL_BATCH = 8
CODEBOOK, CLASSES, TOKENS = 16, 10, 4


def _data():
    rng = np.random.default_rng(0)
    return {"tokens": rng.integers(0, CODEBOOK, (64, 2, 2)).astype(np.int32),
            "label": rng.integers(0, CLASSES, 64).astype(np.int32)}


def _build(strategy, dropout=0.0, factors=(1, 2, 4)):
    tf.keras.utils.set_random_seed(1)
    with strategy.scope():
        model = build_transformer("tiny", codebook_size=CODEBOOK, num_classes=CLASSES,
                                  num_tokens=TOKENS, num_layers=1, factors=factors,
                                  dropout=dropout, attention_dropout=dropout)
        trainer = trainer_lib.NestedMaskGitTrainer(model, global_batch_size=GLOBAL_BATCH,
                                                   seed=3, total_steps=4)
        optimizer = optimizer_lib.make_optimizer(10, learning_rate=1e-2, warmup_steps=2)
        trainer.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
    return model, trainer


def _train(strategy, steps, jit_compile=False, **kwargs):
    model, trainer = _build(strategy, **kwargs)
    data = _data()

    def dataset_fn(context):
        per_replica = context.get_per_replica_batch_size(GLOBAL_BATCH)
        return tf.data.Dataset.from_tensor_slices(data).batch(per_replica, drop_remainder=True)

    iterator = iter(distribute.distribute_dataset(strategy, dataset_fn))
    step = distribute.make_train_function(trainer.train_step, strategy, jit_compile)
    logs = [{k: float(v) for k, v in step(iterator).items()} for _ in range(steps)]
    return model, logs


def test_mirrored_two_cpus_equals_default_strategy(mirrored):
    assert mirrored.num_replicas_in_sync == 2
    steps = 3
    default_model, default_logs = _train(tf.distribute.get_strategy(), steps)
    mirrored_model, mirrored_logs = _train(mirrored, steps)
    for a, b in zip(default_model.weights, mirrored_model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
    for a, b in zip(default_logs, mirrored_logs):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    # The step counter drives alpha: 1 - step/4 at steps 0, 1, 2.
    assert [log["alpha"] for log in default_logs] == [1.0, 0.75, 0.5]
    assert set(default_logs[0]) == {"loss", "alpha"} | {f"{m}_p{p}" for m in ("loss", "accuracy")
                                                        for p in (1, 2, 4)}
    # The weights moved (the test could fail): compare with a fresh build.
    fresh, _ = _build(tf.distribute.get_strategy())
    assert max(float(np.abs(a.numpy() - b.numpy()).max())
               for a, b in zip(fresh.weights, default_model.weights)) > 1e-3


def test_train_step_compiles_with_xla_under_default_strategy():
    model, logs = _train(tf.distribute.get_strategy(), 2, jit_compile=True, dropout=0.1,
                         factors=(1, 2))
    assert all(np.isfinite(log["loss"]) for log in logs)
    assert logs[0]["loss"] != logs[1]["loss"]


def test_losses_are_eq3_of_the_same_masked_batch():
    model, trainer = _build(tf.distribute.get_strategy())
    batch = {k: v[:GLOBAL_BATCH] for k, v in _data().items()}
    step = tf.constant(2, tf.int64)
    total, per_model, logits, targets, mask = trainer.compute_losses(batch, step,
                                                                     training=False)
    ids, targets2, mask2 = trainer.masked_inputs(batch, step)
    np.testing.assert_array_equal(mask.numpy(), mask2.numpy())
    expected, _ = losses.nested_loss(
        {p: model(ids, factor=p) for p in (1, 2, 4)}, targets2, mask2, alpha=0.5,
        label_smoothing=0.1)
    np.testing.assert_allclose(total.numpy(), expected.numpy(), rtol=1e-5)


def test_maskgit_baseline_and_bad_arguments():
    model, _ = _build(tf.distribute.get_strategy())
    baseline = trainer_lib.NestedMaskGitTrainer(model, 8, factors=(1,), total_steps=5)
    assert baseline.factors == (1,)
    with pytest.raises(ValueError, match="must include 1"):
        trainer_lib.NestedMaskGitTrainer(model, 8, factors=(2, 4), total_steps=5)
    with pytest.raises(ValueError, match="subset"):
        trainer_lib.NestedMaskGitTrainer(model, 8, factors=(1, 8), total_steps=5)
    with pytest.raises(ValueError, match="loss_mode"):
        trainer_lib.NestedMaskGitTrainer(model, 8, loss_mode="x", total_steps=5)
    with pytest.raises(ValueError, match="alpha_decay_steps"):
        trainer_lib.NestedMaskGitTrainer(model, 8)
