"""Nested MLP: sub-model p uses the first mlp_dim/p hidden units."""
import keras

from magnets_tf.layers.nested import DEFAULT_FACTORS, NestedDense, validate_factors


def gelu_tanh(x):
    """MaskGIT/BERT GELU with the tanh approximation."""
    return keras.activations.gelu(x, approximate=True)


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
                                        factors=self.factors, name="intermediate")
        self.output_dense = NestedDense(self.mlp_dim, self.hidden_size, nested="input",
                                        factors=self.factors, name="output")

    def build(self, input_shape=None):
        self.intermediate.build()
        self.output_dense.build()
        self.built = True

    def call(self, x, factor=1):
        return self.output_dense(gelu_tanh(self.intermediate(x, factor=factor)), factor=factor)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_size=self.hidden_size, mlp_dim=self.mlp_dim, factors=self.factors)
        return config
