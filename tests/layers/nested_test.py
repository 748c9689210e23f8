import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.layers.nested import NestedDense, nested_width, validate_factors


def test_output_nested_equals_sliced_dense():
    layer = NestedDense(16, (4, 8), nested="output")
    layer.build()
    x = tf.random.normal([3, 5, 16])
    kernel = layer.kernel.numpy()
    bias = layer.bias.numpy()
    for p in (1, 2, 4, 8):
        w = 8 // p
        want = np.einsum("bti,ihd->bthd", x.numpy(), kernel[:, :, :w]) + bias[:, :w]
        np.testing.assert_allclose(layer(x, factor=p).numpy(), want, atol=1e-5)


def test_input_nested_reads_partial_features():
    layer = NestedDense((4, 8), 16, nested="input")
    layer.build()
    for p in (1, 2, 4, 8):
        w = 8 // p
        x = tf.random.normal([2, 3, 4, w])
        want = np.einsum("bthd,hdo->bto", x.numpy(), layer.kernel.numpy()[:, :w]) + layer.bias.numpy()
        np.testing.assert_allclose(layer(x, factor=p).numpy(), want, atol=1e-5)


def test_wrong_input_width_is_a_clear_error():
    layer = NestedDense((4, 8), 16, nested="input")
    with pytest.raises(ValueError, match="does not match"):
        layer(tf.zeros([2, 4, 8]), factor=2)


@pytest.mark.parametrize("factors, message", [
    ((1, 3), "factor 3 does not divide"),
    ((2, 4), "must include 1"),
    ((0, 1), "positive"),
    (("a",), "positive ints"),
])
def test_bad_factors(factors, message):
    with pytest.raises(ValueError, match=message):
        validate_factors(factors, width=8)


def test_unconfigured_factor_is_rejected():
    with pytest.raises(ValueError, match="not one of the configured factors"):
        nested_width(8, 16, (1, 2, 4, 8))
    layer = NestedDense(8, 8, factors=(1, 2))
    with pytest.raises(ValueError, match="factor 4"):
        layer(tf.zeros([1, 8]), factor=4)


def test_bad_nested_axis():
    with pytest.raises(ValueError, match="nested must be"):
        NestedDense(8, 8, nested="middle")


def test_config_round_trip():
    layer = NestedDense(16, (4, 8), nested="output", factors=(1, 2), name="q")
    clone = NestedDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
