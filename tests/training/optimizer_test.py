"""Warmup + decay schedule values, AdamW settings, weight-decay exclusions."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.training import optimizer


@pytest.mark.parametrize("decay,middle", [("cosine", 0.5), ("linear", 0.5), ("constant", 1.0)])
def test_schedule_shape(decay, middle):
    schedule = optimizer.WarmupDecaySchedule(1e-3, total_steps=110, warmup_steps=10, decay=decay)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(60)) == pytest.approx(1e-3 * middle)
    assert float(schedule(110)) == pytest.approx(0.0 if decay != "constant" else 1e-3, abs=1e-9)
    restored = optimizer.WarmupDecaySchedule(**schedule.get_config())
    assert float(restored(37)) == float(schedule(37))


def test_end_factor_and_errors():
    schedule = optimizer.WarmupDecaySchedule(1.0, 100, 0, "linear", end_factor=0.1)
    assert float(schedule(100)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown decay"):
        optimizer.WarmupDecaySchedule(1.0, 100, decay="step")
    with pytest.raises(ValueError, match="total_steps"):
        optimizer.WarmupDecaySchedule(1.0, 0)


def test_make_optimizer_maskgit_defaults():
    opt = optimizer.make_optimizer(1000)
    assert opt.beta_2 == 0.96 and opt.weight_decay == pytest.approx(0.045)
    assert opt.schedule.peak_learning_rate == 1e-4 and opt.schedule.warmup_steps == 5000


def _tiny_transformer():
    from magnets_tf.models.presets import build_transformer
    return build_transformer("tiny", codebook_size=16, num_classes=10, num_tokens=4,
                             num_layers=1)


def test_weight_decay_skips_biases_layernorm_and_embeddings():
    model = _tiny_transformer()
    lr, wd, steps = 0.1, 0.5, 3
    opt = optimizer.make_optimizer(100, learning_rate=lr, warmup_steps=0, decay="constant",
                                   weight_decay=wd)
    variables = model.trainable_variables
    opt.build(variables)
    excluded = {v.path.split("/", 1)[1] for v in variables if opt.excluded_from_weight_decay(v)}
    assert excluded == {
        "position_embedding", "head_bias", "token_embedding/embeddings",
        "embedding_norm/gamma", "embedding_norm/beta", "head_dense/bias", "head_norm/gamma",
        "head_norm/beta",
        *(f"block_0/{layer}/bias" for layer in ("attention/query", "attention/key",
                                                "attention/value", "attention/output",
                                                "mlp/intermediate", "mlp/output")),
        *(f"block_0/{norm}/{p}" for norm in ("attention_norm", "mlp_norm")
          for p in ("gamma", "beta"))}
    before = {v.path: v.numpy() for v in variables}
    for _ in range(steps):  # Zero gradients: Adam moves nothing, only decay acts.
        opt.apply_gradients([(tf.zeros_like(v), v) for v in variables])
    for v in variables:
        if opt.excluded_from_weight_decay(v):
            np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
        else:  # Kernels: decoupled decay w -= w * wd * lr per step.
            assert "kernel" in v.path
            np.testing.assert_allclose(v.numpy(), before[v.path] * (1 - wd * lr) ** steps,
                                       rtol=1e-5, err_msg=v.path)


def test_decay_exclusions_are_configurable_and_checked():
    model = _tiny_transformer()
    everything = optimizer.make_optimizer(10, exclude_from_weight_decay=())
    everything.build(model.trainable_variables)
    assert not any(everything.excluded_from_weight_decay(v) for v in model.trainable_variables)
    only_mlp = optimizer.make_optimizer(10, exclude_from_weight_decay=("mlp/",))
    assert {v.path.split("/", 2)[2] for v in model.trainable_variables
            if only_mlp.excluded_from_weight_decay(v)} == {
        "mlp/intermediate/kernel", "mlp/intermediate/bias", "mlp/output/kernel",
        "mlp/output/bias"}
    with pytest.raises(ValueError, match=r"bad regular expression"):
        optimizer.make_optimizer(10, exclude_from_weight_decay=("bias(",))


def test_optimizer_state_keys_match_keras_adamw_so_old_checkpoints_restore(tmp_path):
    from magnets_tf.training import loop

    model = _tiny_transformer()
    new = optimizer.make_optimizer(10)
    new.build(model.trainable_variables)
    # What make_optimizer built before (same schedule, no exclusions).
    old = keras.optimizers.AdamW(new.schedule, weight_decay=0.045)
    old.build(model.trainable_variables)
    old_table = loop.variables_by_path(old.variables, "old")
    new_table = loop.variables_by_path(new.variables, "new")
    assert old_table.keys() == new_table.keys()
    for v in old.variables:
        v.assign(tf.fill(v.shape, tf.cast(3, v.dtype)))
    path = tf.train.Checkpoint(optimizer=old_table).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(optimizer=new_table).read(path).assert_consumed()
    assert all(np.all(v.numpy() == 3) for v in new.variables)
