"""Nested MLP: sub-model p uses the first mlp_dim/p hidden units."""
from typing import NamedTuple

import keras
import tensorflow as tf

from magnets_tf.layers.nested import (DEFAULT_FACTORS, NestedDense, flatten_rows,
                                      unflatten_rows, validate_factors)


def gelu_tanh(x):
    """MaskGIT/BERT GELU with the tanh approximation."""
    return tf.nn.gelu(x, approximate=True)


class MLPWeights(NamedTuple):
    """Sub-model p's MLP weights: in_kernel [d, m/p], in_bias [m/p], out_kernel [m/p, d],
    out_bias [d]."""
    in_kernel: tf.Tensor
    in_bias: tf.Tensor
    out_kernel: tf.Tensor
    out_bias: tf.Tensor


class NestedMLP(keras.layers.Layer):
    """d -> m/p -> d feed-forward block sharing one [d, m] and one [m, d] kernel."""

    def __init__(self, hidden_size, mlp_dim, factors=DEFAULT_FACTORS, **kwargs):
        super().__init__(**kwargs)
        if hidden_size <= 0 or mlp_dim <= 0:
            raise ValueError(f"hidden_size and mlp_dim must be positive, got "
                             f"hidden_size={hidden_size}, mlp_dim={mlp_dim}")
        self.hidden_size = int(hidden_size)
        self.mlp_dim = int(mlp_dim)
        self.factors = validate_factors(factors, mlp_dim=self.mlp_dim)
        self.intermediate = NestedDense(self.hidden_size, self.mlp_dim, nested="output",
                                        factors=self.factors, dtype=self.dtype_policy,
                                        name="intermediate")
        self.output_dense = NestedDense(self.mlp_dim, self.hidden_size, nested="input",
                                        factors=self.factors, dtype=self.dtype_policy,
                                        name="output")

    def build(self, input_shape=None):
        self.intermediate.build()
        self.output_dense.build()
        self.built = True

    def sliced_weights(self, factor):
        """`MLPWeights` of sub-model `factor`."""
        return MLPWeights(*self.intermediate.sliced_weights(factor),
                          *self.output_dense.sliced_weights(factor))

    def call(self, x, factor=1):
        """x [..., d] -> [..., d] through sub-model `factor`."""
        weights = self.sliced_weights(factor)
        return unflatten_rows(self.unbiased_rows(flatten_rows(x), weights) + weights.out_bias, x)

    def unbiased_rows(self, rows, weights):
        """gelu(rows W1 + b1) W2 for rows [R, d], without the output bias b2.

        The transformer block adds b2 after its residual, (x + y) + b2, outside training
        dropout: one fixed order of the additions wherever the block runs."""
        hidden = gelu_tanh(tf.matmul(rows, weights.in_kernel) + weights.in_bias)
        return tf.matmul(hidden, weights.out_kernel)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, mlp_dim=self.mlp_dim, factors=self.factors)
        return config
