"""Tests of the MaskGIT VQGAN tokenizer: shapes, the shortcut quirk, the quantizer."""
import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.models.vqgan import (SMALL_CONFIGS, ResBlock, VQGAN, VectorQuantizer,
                                     build_vqgan, codebook_usage)


def _tiny(**overrides):
    return build_vqgan("tiny_test", image_shape=(6, 6, 1), **overrides)


def test_encode_decode_shapes_and_padding():
    model = build_vqgan("small_8x8", image_shape=(28, 28, 1))
    assert model.grid_shape == (8, 8) and model.image_shape == (28, 28, 1)
    images = tf.random.uniform([2, 28, 28, 1], seed=1)
    tokens = model.encode(images)
    assert tokens.dtype == tf.int32 and tuple(tokens.shape) == (2, 8, 8)
    assert int(tf.reduce_max(tokens)) < model.codebook_size
    decoded = model.decode(tokens)
    assert tuple(decoded.shape) == (2, 28, 28, 1)
    assert float(tf.reduce_min(decoded)) >= 0.0 and float(tf.reduce_max(decoded)) <= 1.0
    # Flat token sequences [B, h*w] decode the same as grids.
    np.testing.assert_allclose(model.decode(tf.reshape(tokens, [2, 64])), decoded)


def test_16x16_config_grid():
    assert build_vqgan("small_16x16").grid_shape == (16, 16)


def test_config_round_trip_gives_same_architecture():
    model = _tiny()
    clone = VQGAN.from_config(model.get_config())
    clone.build()
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]
    clone.set_weights(model.get_weights())
    images = tf.random.uniform([3, 6, 6, 1], seed=2)
    np.testing.assert_array_equal(clone.encode(images), model.encode(images))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="not divisible"):
        VQGAN(image_shape=(28, 28, 1), channel_multipliers=(1, 2, 2, 2))
    with pytest.raises(ValueError, match="padded_size"):
        VQGAN(image_shape=(28, 28, 1), padded_size=(16, 16))
    with pytest.raises(ValueError, match="unknown VQGAN config"):
        build_vqgan("huge")
    with pytest.raises(ValueError, match="activation"):
        VQGAN(image_shape=(8, 8, 1), channel_multipliers=(1,), activation="tanh")
    model = _tiny()
    with pytest.raises(ValueError, match="expected images"):
        model.encode(tf.zeros([1, 8, 8, 1]))
    with pytest.raises(ValueError, match="expected tokens"):
        model.decode(tf.zeros([1, 3, 3], tf.int32))


def test_resblock_shortcut_is_applied_to_the_output():
    block = ResBlock(8, norm_groups=4)
    x = tf.random.normal([2, 4, 4, 4], seed=3)
    y = block(x)
    h = block.conv1(tf.nn.silu(block.norm1(block.conv0(tf.nn.silu(block.norm0(x))))))
    np.testing.assert_allclose(y, h + block.shortcut(h), rtol=1e-5, atol=1e-5)
    assert block.shortcut.kernel.shape == (1, 1, 8, 8)  # conv over h (8 ch), not x (4 ch)
    same = ResBlock(4, norm_groups=4)
    y = same(x)
    assert same.shortcut is None
    h = same.conv1(tf.nn.silu(same.norm1(same.conv0(tf.nn.silu(same.norm0(x))))))
    np.testing.assert_allclose(y, h + x, rtol=1e-5, atol=1e-5)


def test_quantizer_nearest_neighbour_losses_and_straight_through():
    vq = VectorQuantizer(16, 3, commitment_cost=0.25)
    vq.build()
    z = tf.random.normal([2, 4, 4, 3], seed=4)
    with tf.GradientTape() as tape:
        tape.watch(z)
        quantized, indices, losses = vq(z)
        loss = tf.reduce_sum(quantized * 2.0)
    codebook = vq.codebook.numpy()
    flat = z.numpy().reshape(-1, 3)
    expected = np.argmin(((flat[:, None] - codebook[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(indices.numpy().reshape(-1), expected)
    np.testing.assert_allclose(quantized, codebook[expected].reshape(2, 4, 4, 3), atol=1e-6)
    # Straight-through: d(sum 2*q)/dz = 2 everywhere.
    np.testing.assert_allclose(tape.gradient(loss, z), np.full(z.shape, 2.0))
    mse = np.mean((codebook[expected] - flat) ** 2)
    np.testing.assert_allclose(losses["codebook_loss"], mse, rtol=1e-5)
    np.testing.assert_allclose(losses["commitment_loss"], 0.25 * mse, rtol=1e-5)


def test_usage_statistics_and_dead_code_restart():
    vq = VectorQuantizer(8, 2, usage_decay=0.0)
    vq.build()
    vq.codebook.assign(np.stack([np.arange(8.0), np.zeros(8)], 1))
    z = tf.constant([[[0.1, 0.0], [0.9, 0.0], [1.1, 0.0]]])  # codes 0, 1, 1
    vq(z, training=True)
    np.testing.assert_allclose(vq.usage, [1, 2, 0, 0, 0, 0, 0, 0])
    latents = tf.constant([[[50.0, 50.0]]])
    restarted = vq.restart_dead_codes(latents, threshold=0.5)
    assert int(restarted) == 6
    codebook = vq.codebook.numpy()
    np.testing.assert_allclose(codebook[2:], np.full((6, 2), 50.0))
    np.testing.assert_allclose(codebook[:2], [[0, 0], [1, 0]])
    assert np.all(vq.usage.numpy()[2:] > 0.5)


def test_codebook_usage_fraction():
    assert codebook_usage(np.array([[0, 1], [1, 3]]), 8) == 0.375


def test_small_configs_build():
    for name in SMALL_CONFIGS:
        model = build_vqgan(name, image_shape=(28, 28, 1)) if name != "tiny_test" else _tiny()
        assert model.codebook_size == SMALL_CONFIGS[name]["codebook_size"]


def test_codes_never_chosen_are_restarted_at_the_first_restart():
    vq = VectorQuantizer(6, 2, usage_decay=0.99)
    vq.build()
    vq.codebook.assign(np.stack([np.arange(6.0), np.zeros(6)], 1))
    vq(tf.constant([[[0.0, 0.0], [1.0, 0.0]]]), training=True)  # only codes 0 and 1
    threshold = 0.03 * float(tf.reduce_mean(vq.usage))
    assert int(vq.restart_dead_codes(tf.constant([[[9.0, 9.0]]]), threshold)) == 4
