import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.layers.mlp import NestedMLP, gelu_tanh


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("p", [1, 2, 4, 8])
def test_submodel_uses_first_hidden_units(p):
    mlp = NestedMLP(16, 64)
    mlp.build()
    x = np.random.RandomState(0).randn(2, 5, 16).astype("float32")
    m = 64 // p
    w1, b1 = mlp.intermediate.kernel.numpy()[:, :m], mlp.intermediate.bias.numpy()[:m]
    w2, b2 = mlp.output_dense.kernel.numpy()[:m], mlp.output_dense.bias.numpy()
    want = _gelu_tanh(x @ w1 + b1) @ w2 + b2
    np.testing.assert_allclose(mlp(tf.constant(x), factor=p).numpy(), want, atol=1e-5)


def test_gelu_is_tanh_approximation():
    x = np.linspace(-4, 4, 17).astype("float32")
    np.testing.assert_allclose(gelu_tanh(tf.constant(x)).numpy(), _gelu_tanh(x), atol=1e-6)


def test_bad_factor_and_config():
    with pytest.raises(ValueError, match="does not divide mlp_dim=60"):
        NestedMLP(16, 60, factors=(1, 8))
    with pytest.raises(ValueError, match="must be positive"):
        NestedMLP(0, 64)
    mlp = NestedMLP(16, 64, factors=(1, 2), name="mlp")
    assert NestedMLP.from_config(mlp.get_config()).get_config() == mlp.get_config()
