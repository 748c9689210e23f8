"""Width-sliced dense projections: the building block of nested (MatFormer-style) models.

A nested projection owns one full kernel; sub-model p uses a leading slice of one of
its axes, so every sub-model shares the full model's weights (paper section 3).
"""
import keras
import tensorflow as tf

DEFAULT_FACTORS = (1, 2, 4, 8)


def validate_factors(factors, **dims):
    """Returns `factors` as a sorted tuple; ValueError naming the bad factor or dim.

    Every factor must be a positive int that divides every named dimension, and 1 (the
    full model) must be present so that the full weights are trained.
    """
    try:
        factors = tuple(sorted({int(f) for f in factors}))
    except (TypeError, ValueError):
        raise ValueError(f"factors must be a sequence of positive ints, got {factors!r}") from None
    if not factors or factors[0] < 1:
        raise ValueError(f"factors must be positive ints, got {factors!r}")
    if factors[0] != 1:
        raise ValueError(f"factors must include 1 (the full model), got {factors!r}")
    for name, dim in dims.items():
        for f in factors:
            if dim % f:
                raise ValueError(
                    f"factor {f} does not divide {name}={dim}: every nested factor must "
                    f"divide it (factors={factors})")
    return factors


def flatten_rows(x):
    """x [..., n] as a matrix [R, n] (R = product of the leading dims)."""
    return tf.reshape(x, [-1, x.shape[-1]])


def unflatten_rows(matrix, like):
    """matrix [R, n] back to `like`'s leading dims: [..., n] (static where they are)."""
    lead = like.shape[:-1]
    if lead.is_fully_defined():
        return tf.reshape(matrix, lead.as_list() + [matrix.shape[-1]])
    return tf.reshape(matrix, tf.concat([tf.shape(like)[:-1], tf.shape(matrix)[-1:]], axis=0))


def cast_floats(structure, dtype):
    """`structure` (a nest of tensors, variables and ints) with float tensors cast to dtype.

    Decoding runs the layers' `call_with_cache` outside Keras' autocast: a decoder casts
    the fused weights once per decode with this, and the compute dtype then flows from
    the weights. Leaves already in `dtype` (and ints) are returned unchanged."""
    dtype = tf.as_dtype(dtype)

    def cast(leaf):
        leaf_dtype = getattr(leaf, "dtype", None)
        if leaf_dtype is None or not tf.as_dtype(leaf_dtype).is_floating:
            return leaf
        return leaf if tf.as_dtype(leaf_dtype) == dtype else tf.cast(leaf, dtype)

    return tf.nest.map_structure(cast, structure)


def apply_dropout(layer, x, training):
    """`layer(x)` when training, x itself otherwise (a dropout layer of another dtype
    policy would cast x to its own compute dtype even when it does nothing)."""
    return layer(x, training=True) if training else x


def nested_width(dim, factor, factors):
    """Width of a `dim`-wide axis in sub-model `factor`; ValueError if not configured."""
    if factor not in factors:
        raise ValueError(f"factor {factor!r} is not one of the configured factors {factors}")
    return dim // factor


class NestedDense(keras.layers.Layer):
    """Dense projection [*in_dims] -> [*out_dims] with one nested (sliceable) axis.

    `nested="output"`: kernel [in_dim, *out_dims]; sub-model p keeps the first
    out_dims[-1]/p features of the last output axis (and of the bias).
    `nested="input"`: kernel [*in_dims, out_dim]; sub-model p reads only the first
    in_dims[-1]/p features of the last input axis. The bias is full.
    """

    def __init__(self, in_dims, out_dims, nested="output", factors=DEFAULT_FACTORS,
                 use_bias=True, kernel_initializer="truncated_normal_0.02", **kwargs):
        super().__init__(**kwargs)
        self.in_dims = tuple(int(d) for d in _as_tuple(in_dims))
        self.out_dims = tuple(int(d) for d in _as_tuple(out_dims))
        if nested not in ("output", "input"):
            raise ValueError(f"nested must be 'output' or 'input', got {nested!r}")
        self.nested = nested
        if nested == "output" and len(self.in_dims) != 1:
            raise ValueError(f"nested='output' takes one input axis, got in_dims={self.in_dims}")
        if nested == "input" and len(self.out_dims) != 1:
            raise ValueError(f"nested='input' takes one output axis, got out_dims={self.out_dims}")
        sliced = self.out_dims[-1] if nested == "output" else self.in_dims[-1]
        self.factors = validate_factors(factors, **{f"{nested} width": sliced})
        self.use_bias = use_bias
        self._kernel_initializer_name = kernel_initializer
        self.kernel_initializer = _initializer(kernel_initializer)

    def build(self, input_shape=None):
        self.kernel = self.add_weight(
            name="kernel", shape=self.in_dims + self.out_dims,
            initializer=self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=self.out_dims, initializer="zeros")
        self.built = True

    def sliced_weights(self, factor):
        """(kernel, bias) of sub-model `factor`, as a standalone layer would hold them."""
        if not self.built:
            self.build()
        if self.nested == "output":
            width = nested_width(self.out_dims[-1], factor, self.factors)
            kernel = self.kernel[..., :width]
            bias = self.bias[..., :width] if self.use_bias else None
        else:
            width = nested_width(self.in_dims[-1], factor, self.factors)
            kernel = self.kernel[..., :width, :]
            bias = self.bias if self.use_bias else None
        return kernel, bias

    def call(self, x, factor=1):
        kernel, bias = self.sliced_weights(factor)
        kernel = tf.cast(kernel, x.dtype)
        n_in = len(self.in_dims)
        in_shape = kernel.shape[:n_in]
        out_shape = kernel.shape[n_in:]
        flat_in = 1
        for d in in_shape:
            flat_in *= d
        if x.shape[-n_in:] != in_shape:
            raise ValueError(
                f"{self.name}: input feature shape {tuple(x.shape[-n_in:])} does not match "
                f"sub-model {factor}'s {tuple(in_shape)}")
        lead = tf.shape(x)[:-n_in]
        y = tf.matmul(tf.reshape(x, [-1, flat_in]), tf.reshape(kernel, [flat_in, -1]))
        if bias is not None:
            y = y + tf.reshape(tf.cast(bias, y.dtype), [-1])
        return tf.reshape(y, tf.concat([lead, list(out_shape)], axis=0))

    def get_config(self):
        config = super().get_config()
        config.update(in_dims=self.in_dims, out_dims=self.out_dims, nested=self.nested,
                      factors=self.factors, use_bias=self.use_bias,
                      kernel_initializer=self._kernel_initializer_name)
        return config


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _initializer(name):
    """BERT/MaskGIT initialiser: truncated normal with stddev 0.02 unless given."""
    if name == "truncated_normal_0.02":
        return keras.initializers.TruncatedNormal(stddev=0.02)
    return keras.initializers.get(name)
