"""Nested trainer: mirrored == default strategy, XLA step == graph step, per-replica
dropout, eq. 3 wiring."""
import gin
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
    assert set(default_logs[0]) == {"loss", "alpha", "grad_norm"} | {f"{m}_p{p}" for m in ("loss", "accuracy")
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


@pytest.fixture
def deterministic_masks():
    """Every generated token masked and no class dropped: the masks no longer depend on
    random draws (XLA's stateless RNG draws other numbers than TF's kernels)."""
    with gin.unlock_config():
        gin.bind_parameter("mask_batch.min_mask_ratio", 1.0)
        gin.bind_parameter("mask_batch.class_drop_rate", 0.0)
    yield
    gin.clear_config()


def test_xla_train_step_matches_the_graph_step(deterministic_masks):
    """fp32; the bf16 case comes with the dtype policy (issue #22, mixed precision)."""
    steps = 3
    graph_model, graph_logs = _train(tf.distribute.get_strategy(), steps, jit_compile=False)
    xla_model, xla_logs = _train(tf.distribute.get_strategy(), steps, jit_compile=True)
    for graph, xla in zip(graph_logs, xla_logs):
        assert graph.keys() == xla.keys()
        for key in graph:
            assert xla[key] == pytest.approx(graph[key], rel=1e-5, abs=1e-6), key
    for a, b in zip(graph_model.weights, xla_model.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5, err_msg=a.path)
    assert graph_logs[0]["loss"] != graph_logs[-1]["loss"]  # It trained.


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


def test_each_replica_draws_its_own_dropout_and_replays_it(mirrored):
    model, trainer = _build(mirrored, dropout=0.5)
    ids = model.input_ids(tf.constant(np.arange(8).reshape(2, 4) % CODEBOOK, tf.int32),
                          tf.constant([1, 2], tf.int32))

    @tf.function
    def forward(step):
        def replica_fn():
            trainer._seed_dropout(step)
            return model(ids, factor=1, training=True)
        return mirrored.run(replica_fn)

    def outputs(step):
        return [r.numpy() for r in mirrored.experimental_local_results(forward(step))]

    first, second = outputs(tf.constant(5, tf.int64))
    assert not np.allclose(first, second)  # Same input, other dropout masks.
    again = outputs(tf.constant(5, tf.int64))  # A resumed run replays (seed, step).
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    assert not np.allclose(outputs(tf.constant(6, tf.int64))[0], first)  # New step, new masks.
    # Replica 0 keeps the single-device streams (runs from before stay reproducible).
    trainer._seed_dropout(tf.constant(5, tf.int64))
    np.testing.assert_allclose(model(ids, factor=1, training=True).numpy(), first, atol=1e-6)
    # Without dropout the replicas agree: the difference above is dropout's.
    model_0, trainer_0 = _build(mirrored, dropout=0.0)
    plain = mirrored.experimental_local_results(mirrored.run(
        tf.function(lambda: model_0(ids, factor=1, training=True))))
    np.testing.assert_allclose(plain[0].numpy(), plain[1].numpy(), atol=1e-6)


def _one_step(policy, jit_compile):
    """(loss, updated weights) of one train step of the tiny preset under `policy`,
    traced as a plain graph or XLA-compiled."""
    tf.keras.utils.set_random_seed(1)
    model = build_transformer("tiny", codebook_size=CODEBOOK, num_classes=CLASSES,
                              num_tokens=TOKENS, factors=(1, 2, 4), dropout=0.0,
                              attention_dropout=0.0, dtype=policy)
    trainer = trainer_lib.NestedMaskGitTrainer(model, global_batch_size=GLOBAL_BATCH, seed=3,
                                               total_steps=4)
    optimizer = optimizer_lib.make_optimizer(10, learning_rate=1e-2, warmup_steps=1)
    trainer.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(1)  # past the warm-up's zero learning rate
    before = [w.numpy() for w in model.trainable_variables]
    batch = {k: tf.constant(v[:GLOBAL_BATCH]) for k, v in _data().items()}
    # Stateless random ops draw differently under XLA on CPU: both compilations get the
    # masked batch drawn outside XLA (everything else of train_step runs as is).
    masked = trainer.masked_inputs(batch, tf.constant(1, tf.int64))
    trainer.masked_inputs = lambda batch, step: masked
    logs = tf.function(trainer.train_step, jit_compile=jit_compile)(batch)
    deltas = [w.numpy() - b for w, b in zip(model.trainable_variables, before)]
    return float(logs["loss"]), deltas, model


@pytest.mark.parametrize("policy, loss_rtol, update_tolerance", [
    ("float32", 1e-5, 1e-3), ("mixed_bfloat16", 1e-2, 0.15)])
def test_xla_train_step_matches_graph_step(policy, loss_rtol, update_tolerance):
    graph_loss, graph_deltas, model = _one_step(policy, jit_compile=False)
    xla_loss, xla_deltas, _ = _one_step(policy, jit_compile=True)
    assert model.compute_dtype == ("bfloat16" if policy == "mixed_bfloat16" else "float32")
    assert {w.dtype for w in model.weights} == {"float32"}
    assert np.isfinite(graph_loss)
    assert xla_loss == pytest.approx(graph_loss, rel=loss_rtol)
    # The updates agree as vectors (Adam normalises each coordinate, so a tiny gradient
    # whose sign differs between the two compilations moves by a full step: compare norms).
    graph_update = np.concatenate([d.ravel() for d in graph_deltas])
    xla_update = np.concatenate([d.ravel() for d in xla_deltas])
    assert np.linalg.norm(graph_update) > 1e-3  # the step moved the weights
    relative = np.linalg.norm(xla_update - graph_update) / np.linalg.norm(graph_update)
    assert relative < update_tolerance, relative


def test_mixed_bfloat16_step_is_close_to_float32_step():
    f32_loss, f32_deltas, _ = _one_step("float32", jit_compile=False)
    bf16_loss, bf16_deltas, _ = _one_step("mixed_bfloat16", jit_compile=False)
    assert bf16_loss == pytest.approx(f32_loss, rel=2e-2)
    assert bf16_loss != f32_loss  # it did compute in bfloat16
    f32_update = np.concatenate([d.ravel() for d in f32_deltas])
    bf16_update = np.concatenate([d.ravel() for d in bf16_deltas])
    cosine = f32_update @ bf16_update / np.linalg.norm(f32_update) / np.linalg.norm(bf16_update)
    assert cosine > 0.9, cosine
