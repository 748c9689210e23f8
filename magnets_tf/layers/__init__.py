"""Keras layers whose weights hold nested sub-models (width factor p)."""
from magnets_tf.layers.nested import NestedDense, validate_factors, nested_width
from magnets_tf.layers.attention import NestedSelfAttention
from magnets_tf.layers.mlp import NestedMLP
from magnets_tf.layers.block import NestedTransformerBlock
