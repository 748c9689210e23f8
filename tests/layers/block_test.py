import keras
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.layers.block import LayerNorm, NestedTransformerBlock


def _layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("p", [1, 8])
def test_post_ln_structure(p):
    block = NestedTransformerBlock(32, 4, 64, dropout=0.5, attention_dropout=0.5)
    block.build()
    # Non-trivial norm parameters so that a pre-LN or misplaced norm would show.
    for norm in (block.attention_norm, block.mlp_norm):
        norm.gamma.assign(tf.random.uniform([32], 0.5, 1.5))
        norm.beta.assign(tf.random.normal([32]))
    x = tf.random.normal([2, 6, 32])
    out = block(x, factor=p, training=False)
    a = block.attention(x, factor=p)
    h = _layer_norm((x + a).numpy(), block.attention_norm.gamma.numpy(), block.attention_norm.beta.numpy())
    m = block.mlp(tf.constant(h), factor=p).numpy()
    want = _layer_norm(h + m, block.mlp_norm.gamma.numpy(), block.mlp_norm.beta.numpy())
    np.testing.assert_allclose(out.numpy(), want, atol=1e-4)
    assert block.attention_norm.epsilon == 1e-12


def test_dropout_only_in_training():
    block = NestedTransformerBlock(32, 4, 64, dropout=0.5)
    x = tf.random.normal([2, 6, 32])
    a = block(x, training=False)
    np.testing.assert_allclose(a.numpy(), block(x, training=False).numpy())
    assert not np.allclose(a.numpy(), block(x, training=True).numpy())


@pytest.mark.parametrize("p", [1, 4])
def test_cached_call_on_a_suffix_equals_the_full_call(p):
    block = NestedTransformerBlock(32, 4, 64)
    block.build()
    x = tf.random.normal([2, 7, 32])
    weights = block.fused_weights(p)
    full, (k, v) = block.call_with_cache(x, weights)
    np.testing.assert_allclose(full.numpy(), block(x, factor=p).numpy(), atol=1e-6)
    # Rows 0-3 of the buffers hold their K/V; the 3 query rows hold garbage.
    garbage = tf.random.normal(k.shape)
    keep_row = tf.range(7)[None, None, :, None] < 4
    cache = (tf.where(keep_row, k, garbage), tf.where(keep_row, v, garbage))
    suffix, (k2, v2) = block.call_with_cache(x[:, 4:], weights, kv_cache=cache)
    np.testing.assert_allclose(suffix.numpy(), full[:, 4:].numpy(), atol=1e-5)
    np.testing.assert_allclose(k2.numpy(), k.numpy(), atol=1e-6)
    np.testing.assert_allclose(v2.numpy(), v.numpy(), atol=1e-6)


def test_layer_norm_formula_and_keras_equivalence():
    norm = LayerNorm(epsilon=1e-12)
    norm.build((None, 32))
    norm.gamma.assign(tf.random.uniform([32], 0.5, 1.5))
    norm.beta.assign(tf.random.normal([32]))
    x = tf.random.normal([3, 5, 32]) * 4.0 + 1.0
    want = _layer_norm(x.numpy(), norm.gamma.numpy(), norm.beta.numpy())
    np.testing.assert_allclose(norm(x).numpy(), want, atol=1e-5)
    keras_norm = keras.layers.LayerNormalization(epsilon=1e-12)
    keras_norm.build((None, 32))
    keras_norm.set_weights(norm.get_weights())
    np.testing.assert_allclose(norm(x).numpy(), keras_norm(x).numpy(), atol=1e-5)
    assert [w.name for w in norm.weights] == ["gamma", "beta"]


def test_config_round_trip():
    block = NestedTransformerBlock(32, 4, 64, factors=(1, 2, 4), dropout=0.1, name="b")
    clone = NestedTransformerBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
