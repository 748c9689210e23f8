import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.layers.block import NestedTransformerBlock


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
    out, _ = block(x, factor=p, training=False)
    a, _ = block.attention(x, factor=p)
    h = _layer_norm((x + a).numpy(), block.attention_norm.gamma.numpy(), block.attention_norm.beta.numpy())
    m = block.mlp(tf.constant(h), factor=p).numpy()
    want = _layer_norm(h + m, block.mlp_norm.gamma.numpy(), block.mlp_norm.beta.numpy())
    np.testing.assert_allclose(out.numpy(), want, atol=1e-4)
    assert block.attention_norm.epsilon == 1e-12


def test_dropout_only_in_training():
    block = NestedTransformerBlock(32, 4, 64, dropout=0.5)
    x = tf.random.normal([2, 6, 32])
    a = block(x, training=False)[0]
    np.testing.assert_allclose(a.numpy(), block(x, training=False)[0].numpy())
    assert not np.allclose(a.numpy(), block(x, training=True)[0].numpy())


def test_config_round_trip():
    block = NestedTransformerBlock(32, 4, 64, factors=(1, 2, 4), dropout=0.1, name="b")
    clone = NestedTransformerBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
