"""The MaskGIT VQGAN image tokenizer: conv encoder, L2 vector quantizer, conv decoder.

Follows the structure of the official MaskGIT tokenizer (google-research/maskgit,
`nets/vqgan_tokenizer.py`) so that its flax checkpoints map one-to-one onto these layers:
GroupNorm + swish residual blocks without conv biases, average-pool downsampling (or a
strided 4x4 conv), nearest upsampling followed by a 3x3 conv, a 1x1 conv to the code
dimension. Faithful to one quirk of the official block: when a residual block changes the
channel count, its shortcut convolution is applied to the block's *output*, not its
input (`x + conv_1x1(x)`), see `ResBlock`.

Images are float in [0, 1]. `image_shape` may be smaller than the convolutional input
(`padded_size`): e.g. 28x28 Fashion-MNIST is zero-padded to 32x32 so that two
downsamplings give an 8x8 token grid; decoding crops back to 28x28.
"""
import gin
import keras
import numpy as np
import tensorflow as tf

GROUP_NORM_EPSILON = 1e-6  # flax.linen.GroupNorm default, used by the official tokenizer.

_ACTIVATIONS = {"swish": tf.nn.silu, "relu": tf.nn.relu}


def _activation(name):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]


def _group_norm(channels, groups, name):
    if channels % groups:
        raise ValueError(f"norm_groups={groups} does not divide {channels} channels ({name})")
    return keras.layers.GroupNormalization(groups=groups, epsilon=GROUP_NORM_EPSILON, name=name)


@keras.saving.register_keras_serializable("magnets_tf")
class ResBlock(keras.layers.Layer):
    """GroupNorm -> act -> conv3x3 -> GroupNorm -> act -> conv3x3, plus a shortcut.

    If the channel count changes, the official MaskGIT block computes the shortcut from
    the block's output h (`h + conv(h)`), not from its input; reproduced here so that
    official weights give official outputs. Otherwise the shortcut is the identity.
    """

    def __init__(self, filters, norm_groups=32, activation="swish", use_conv_shortcut=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self.use_conv_shortcut = bool(use_conv_shortcut)
        self._act = _activation(activation)

    def build(self, input_shape):
        self.input_dim = int(input_shape[-1])
        self.norm0 = _group_norm(self.input_dim, self.norm_groups, "norm0")
        self.conv0 = keras.layers.Conv2D(self.filters, 3, padding="same", use_bias=False,
                                         name="conv0")
        self.norm1 = _group_norm(self.filters, self.norm_groups, "norm1")
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", use_bias=False,
                                         name="conv1")
        self.norm0.build(input_shape)
        self.conv0.build(input_shape)
        out_shape = tuple(input_shape[:-1]) + (self.filters,)
        self.norm1.build(out_shape)
        self.conv1.build(out_shape)
        self.shortcut = None
        if self.input_dim != self.filters:
            size = 3 if self.use_conv_shortcut else 1
            self.shortcut = keras.layers.Conv2D(self.filters, size, padding="same",
                                                use_bias=False, name="shortcut")
            self.shortcut.build(out_shape)
        self.built = True

    def call(self, x):
        h = self.conv0(self._act(self.norm0(x)))
        h = self.conv1(self._act(self.norm1(h)))
        residual = x if self.shortcut is None else self.shortcut(h)  # Official quirk.
        return h + residual

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, norm_groups=self.norm_groups,
                      activation=self.activation, use_conv_shortcut=self.use_conv_shortcut)
        return config


def _half(size):
    return None if size is None else (size + 1) // 2


def _double(size):
    return None if size is None else 2 * size


def _avg_downsample(x):
    return tf.nn.avg_pool2d(x, 2, 2, "SAME")


def _nearest_upsample(x):
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


@keras.saving.register_keras_serializable("magnets_tf")
class Encoder(keras.layers.Layer):
    """Image [B, H, W, C] -> latents [B, H/2^(L-1), W/2^(L-1), embedding_dim]."""

    def __init__(self, filters, channel_multipliers, num_res_blocks, embedding_dim,
                 norm_groups=32, activation="swish", conv_downsample=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.channel_multipliers = tuple(int(m) for m in channel_multipliers)
        self.num_res_blocks = int(num_res_blocks)
        self.embedding_dim = int(embedding_dim)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self.conv_downsample = bool(conv_downsample)
        self._act = _activation(activation)
        self.conv_in = keras.layers.Conv2D(self.filters, 3, padding="same", use_bias=False,
                                           name="conv_in")
        self.levels = []
        for i, mult in enumerate(self.channel_multipliers):
            blocks = [ResBlock(self.filters * mult, self.norm_groups, activation,
                               name=f"level{i}_block{j}") for j in range(self.num_res_blocks)]
            down = None
            if i < len(self.channel_multipliers) - 1 and self.conv_downsample:
                down = keras.layers.Conv2D(self.filters * mult, 4, strides=2, padding="same",
                                           name=f"level{i}_downsample")
            self.levels.append((blocks, down))
        top = self.filters * self.channel_multipliers[-1]
        self.mid_blocks = [ResBlock(top, self.norm_groups, activation, name=f"mid_block{j}")
                           for j in range(self.num_res_blocks)]
        self.norm_out = _group_norm(top, self.norm_groups, "norm_out")
        self.conv_out = keras.layers.Conv2D(self.embedding_dim, 1, name="conv_out")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv_in.build(shape)
        shape = shape[:-1] + (self.filters,)
        for i, (blocks, down) in enumerate(self.levels):
            for block in blocks:
                block.build(shape)
                shape = block.compute_output_shape(shape)
            if i < len(self.levels) - 1:
                if down is not None:
                    down.build(shape)
                shape = (shape[0], _half(shape[1]), _half(shape[2]), shape[3])
        for block in self.mid_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.norm_out.build(shape)
        self.conv_out.build(shape)
        self.built = True

    def call(self, x):
        x = self.conv_in(x)
        for i, (blocks, down) in enumerate(self.levels):
            for block in blocks:
                x = block(x)
            if i < len(self.levels) - 1:
                x = down(x) if down is not None else _avg_downsample(x)
        for block in self.mid_blocks:
            x = block(x)
        return self.conv_out(self._act(self.norm_out(x)))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, channel_multipliers=self.channel_multipliers,
                      num_res_blocks=self.num_res_blocks, embedding_dim=self.embedding_dim,
                      norm_groups=self.norm_groups, activation=self.activation,
                      conv_downsample=self.conv_downsample)
        return config


@keras.saving.register_keras_serializable("magnets_tf")
class Decoder(keras.layers.Layer):
    """Quantized latents [B, h, w, D] -> image [B, h*2^(L-1), w*2^(L-1), out_channels]."""

    def __init__(self, filters, channel_multipliers, num_res_blocks, out_channels,
                 norm_groups=32, activation="swish", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.channel_multipliers = tuple(int(m) for m in channel_multipliers)
        self.num_res_blocks = int(num_res_blocks)
        self.out_channels = int(out_channels)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self._act = _activation(activation)
        top = self.filters * self.channel_multipliers[-1]
        self.conv_in = keras.layers.Conv2D(top, 3, padding="same", name="conv_in")
        self.mid_blocks = [ResBlock(top, self.norm_groups, activation, name=f"mid_block{j}")
                           for j in range(self.num_res_blocks)]
        self.levels = []  # Top (coarsest) level first, as executed.
        for i in reversed(range(len(self.channel_multipliers))):
            width = self.filters * self.channel_multipliers[i]
            blocks = [ResBlock(width, self.norm_groups, activation, name=f"level{i}_block{j}")
                      for j in range(self.num_res_blocks)]
            up = (keras.layers.Conv2D(width, 3, padding="same", name=f"level{i}_upsample")
                  if i > 0 else None)
            self.levels.append((blocks, up))
        self.norm_out = _group_norm(self.filters * self.channel_multipliers[0],
                                    self.norm_groups, "norm_out")
        self.conv_out = keras.layers.Conv2D(self.out_channels, 3, padding="same",
                                            name="conv_out")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv_in.build(shape)
        shape = shape[:-1] + (self.filters * self.channel_multipliers[-1],)
        for block in self.mid_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        for blocks, up in self.levels:
            for block in blocks:
                block.build(shape)
                shape = block.compute_output_shape(shape)
            if up is not None:
                shape = (shape[0], _double(shape[1]), _double(shape[2]), shape[3])
                up.build(shape)
        self.norm_out.build(shape)
        self.conv_out.build(shape)
        self.built = True

    def call(self, x):
        x = self.conv_in(x)
        for block in self.mid_blocks:
            x = block(x)
        for blocks, up in self.levels:
            for block in blocks:
                x = block(x)
            if up is not None:
                x = up(_nearest_upsample(x))
        return self.conv_out(self._act(self.norm_out(x)))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, channel_multipliers=self.channel_multipliers,
                      num_res_blocks=self.num_res_blocks, out_channels=self.out_channels,
                      norm_groups=self.norm_groups, activation=self.activation)
        return config


@keras.saving.register_keras_serializable("magnets_tf")
def code_perplexity(counts):
    """exp(entropy) of the code distribution given by `counts` [codebook_size]: the
    number of equally used codes with the same entropy (1: one code; codebook_size: all
    used equally)."""
    probs = counts / tf.maximum(tf.reduce_sum(counts), 1.0)
    entropy = -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probs), probs))
    return tf.exp(entropy)


class VectorQuantizer(keras.layers.Layer):
    """L2 nearest-neighbour codebook lookup with straight-through gradients.

    Losses (VQ-VAE, as in MaskGIT): codebook loss ||sg(z) - e||^2 moves codes to the
    encoder outputs, commitment loss beta * ||z - sg(e)||^2 keeps the encoder near its
    codes. `usage` counts how often each code was chosen (a decayed running count, so
    that codes the encoder stopped using become "dead" and can be restarted on encoder
    outputs with `restart_dead_codes`).
    """

    def __init__(self, codebook_size, embedding_dim, commitment_cost=0.25, usage_decay=0.99,
                 **kwargs):
        super().__init__(**kwargs)
        if int(codebook_size) < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size!r}")
        self.codebook_size = int(codebook_size)
        self.embedding_dim = int(embedding_dim)
        self.commitment_cost = float(commitment_cost)
        self.usage_decay = float(usage_decay)

    def build(self, input_shape=None):
        self.codebook = self.add_weight(
            name="codebook", shape=(self.codebook_size, self.embedding_dim),
            initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "uniform"))
        # Decayed count of assignments per code (training statistic, not a parameter).
        # Starts at zero, so codes never chosen before the first restart are restarted.
        self.usage = self.add_weight(name="usage", shape=(self.codebook_size,),
                                     initializer="zeros", trainable=False)
        self.built = True

    def nearest_codes(self, z):
        """Indices int32 [...] of the codes nearest (L2) to latents z [..., D]."""
        flat = tf.reshape(z, [-1, self.embedding_dim])
        codebook = tf.cast(self.codebook, flat.dtype)
        distances = (tf.reduce_sum(flat ** 2, 1, keepdims=True)
                     - 2.0 * tf.matmul(flat, codebook, transpose_b=True)
                     + tf.reduce_sum(codebook ** 2, 1)[None])
        indices = tf.argmin(distances, axis=-1, output_type=tf.int32)
        return tf.reshape(indices, tf.shape(z)[:-1])

    def lookup(self, indices):
        """Code vectors [..., D] of int indices [...]."""
        return tf.gather(self.codebook, tf.cast(indices, tf.int32))

    def call(self, z, training=False):
        """Returns (straight-through quantized z, indices, dict of losses)."""
        indices = self.nearest_codes(z)
        quantized = tf.cast(self.lookup(indices), z.dtype)
        codebook_loss = tf.reduce_mean((quantized - tf.stop_gradient(z)) ** 2)
        commitment_loss = tf.reduce_mean((z - tf.stop_gradient(quantized)) ** 2)
        flat = tf.reshape(indices, [-1])
        counts = tf.math.unsorted_segment_sum(tf.ones_like(flat, tf.float32), flat,
                                              self.codebook_size)
        if training:
            self.usage.assign(self.usage * self.usage_decay + counts * (1 - self.usage_decay))
        straight_through = z + tf.stop_gradient(quantized - z)
        losses = dict(codebook_loss=codebook_loss,
                      commitment_loss=self.commitment_cost * commitment_loss,
                      quantizer_loss=codebook_loss + self.commitment_cost * commitment_loss,
                      batch_codebook_usage=tf.reduce_mean(tf.cast(counts > 0, tf.float32)),
                      batch_codebook_perplexity=code_perplexity(counts))
        return straight_through, indices, losses

    def restart_dead_codes(self, z, threshold, rng=None):
        """Moves codes whose running usage is below `threshold` onto random latents of z.

        Returns the number of restarted codes. Restarted codes get the mean usage of the
        live codes so they are not restarted again before they had a chance to be chosen.
        """
        flat = tf.reshape(tf.cast(z, self.codebook.dtype), [-1, self.embedding_dim])
        dead = self.usage < threshold
        num_dead = tf.reduce_sum(tf.cast(dead, tf.int32))
        if rng is None:
            picks = tf.random.uniform([self.codebook_size], 0, tf.shape(flat)[0], tf.int32)
        else:  # A tf.random.Generator makes restarts reproducible.
            picks = rng.uniform([self.codebook_size], 0, tf.shape(flat)[0], tf.int32)
        replacement = tf.gather(flat, picks)
        self.codebook.assign(tf.where(dead[:, None], replacement, self.codebook))
        alive = tf.cast(tf.logical_not(dead), self.usage.dtype)
        alive_mean = tf.reduce_sum(self.usage * alive) / tf.maximum(tf.reduce_sum(alive), 1.0)
        self.usage.assign(tf.where(dead, tf.maximum(alive_mean, threshold), self.usage))
        return num_dead

    def get_config(self):
        config = super().get_config()
        config.update(codebook_size=self.codebook_size, embedding_dim=self.embedding_dim,
                      commitment_cost=self.commitment_cost, usage_decay=self.usage_decay)
        return config


def codebook_usage(indices, codebook_size):
    """Fraction of the codebook that occurs in an int array of token indices."""
    indices = np.asarray(indices).reshape(-1)
    return float(np.unique(indices).size) / float(codebook_size)


class TokenizerInterface:
    """encode/decode of a VQ tokenizer, shared by VQGAN (images) and VideoTokenizer (clips).

    A subclass has `encoder`, `decoder`, `quantizer`, `grid_shape`, `sample_shape` (one
    input without the batch) and may override `_to_encoder` / `_from_decoder` (VQGAN pads
    and crops); `sample_name` names the inputs in errors."""

    sample_name = "inputs"

    def _to_encoder(self, samples):
        return samples

    def _from_decoder(self, samples):
        return samples

    def _check_samples(self, samples):
        samples = tf.convert_to_tensor(samples)
        if tuple(samples.shape[1:]) != tuple(self.sample_shape):
            raise ValueError(f"expected {self.sample_name} "
                             f"[B, {', '.join(map(str, self.sample_shape))}], "
                             f"got shape {tuple(samples.shape)}")
        return tf.cast(samples, self.compute_dtype)

    def encode_latents(self, samples):
        """Continuous encoder outputs [B, *grid, D] of inputs in [0, 1]."""
        if not self.built:
            self.build()
        return self.encoder(self._to_encoder(self._check_samples(samples)))

    def encode(self, samples):
        """Inputs float [B, *sample_shape] in [0, 1] -> int32 tokens [B, *grid_shape]."""
        return self.quantizer.nearest_codes(self.encode_latents(samples))

    def decode_latents(self, quantized):
        """Unclipped outputs [B, *sample_shape] from quantized latents [B, *grid, D]."""
        if not self.built:
            self.build()
        return self._from_decoder(self.decoder(quantized))

    def decode(self, tokens):
        """Int tokens [B, *grid_shape] (or flat [B, N]) -> outputs float32 in [0, 1]."""
        tokens = tf.convert_to_tensor(tokens)
        if len(tokens.shape) == 2:
            tokens = tf.reshape(tokens, [-1, *self.grid_shape])
        if tuple(tokens.shape[1:]) != tuple(self.grid_shape):
            raise ValueError(f"expected tokens [B, {', '.join(map(str, self.grid_shape))}], "
                             f"got shape {tuple(tokens.shape)}")
        if not self.built:
            self.build()
        samples = self.decode_latents(self.quantizer.lookup(tokens))
        return tf.clip_by_value(tf.cast(samples, tf.float32), 0.0, 1.0)

    def forward(self, samples, training=False):
        """Full pass for training: dict with reconstruction (unclipped), tokens, latents
        and the quantizer losses."""
        latents = self.encode_latents(samples)
        quantized, tokens, losses = self.quantizer(latents, training=training)
        return dict(reconstruction=self.decode_latents(quantized), tokens=tokens,
                    latents=latents, **losses)

    def call(self, samples, training=False):
        """Reconstruction (unclipped) of a batch of inputs."""
        return self.forward(samples, training=training)["reconstruction"]


@keras.saving.register_keras_serializable("magnets_tf")
class VQGAN(TokenizerInterface, keras.Model):
    """Image tokenizer: `encode` images -> int tokens [B, h, w]; `decode` tokens -> images.

    Args:
      image_shape: (H, W, C) of the images given to `encode` and returned by `decode`.
      padded_size: (H', W') the images are zero-padded to (centred) before the encoder,
        or None for no padding. Must be divisible by 2^(levels-1).
      filters, channel_multipliers, num_res_blocks: encoder/decoder widths; one level per
        multiplier, each but the last halving the resolution.
      embedding_dim, codebook_size, commitment_cost: the vector quantizer.
      norm_groups: GroupNorm groups (the official model uses 32).
      conv_downsample: strided 4x4 conv instead of 2x2 average pooling (official: False).
    Defaults are the official MaskGIT ImageNet 256 tokenizer (16x16 grid, 1024 codes).
    """

    def __init__(self, image_shape=(256, 256, 3), padded_size=None, filters=128,
                 channel_multipliers=(1, 1, 2, 2, 4), num_res_blocks=2, embedding_dim=256,
                 codebook_size=1024, commitment_cost=0.25, norm_groups=32,
                 activation="swish", conv_downsample=False, usage_decay=0.99, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        if len(self.image_shape) != 3 or min(self.image_shape) <= 0:
            raise ValueError(f"image_shape must be (H, W, C) positive ints, got {image_shape!r}")
        self.padded_size = (tuple(int(d) for d in padded_size) if padded_size
                            else self.image_shape[:2])
        if len(self.padded_size) != 2 or any(
                p < s for p, s in zip(self.padded_size, self.image_shape[:2])):
            raise ValueError(f"padded_size {padded_size!r} must be (H', W') >= image "
                             f"size {self.image_shape[:2]}")
        self.channel_multipliers = tuple(int(m) for m in channel_multipliers)
        if not self.channel_multipliers:
            raise ValueError("channel_multipliers must not be empty")
        self.downsample = 2 ** (len(self.channel_multipliers) - 1)
        if any(p % self.downsample for p in self.padded_size):
            raise ValueError(f"padded size {self.padded_size} is not divisible by the "
                             f"downsampling factor {self.downsample} of "
                             f"channel_multipliers={self.channel_multipliers}")
        self.grid_shape = tuple(p // self.downsample for p in self.padded_size)
        self.filters = int(filters)
        self.num_res_blocks = int(num_res_blocks)
        self.embedding_dim = int(embedding_dim)
        self.codebook_size = int(codebook_size)
        self.commitment_cost = float(commitment_cost)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self.conv_downsample = bool(conv_downsample)
        self.usage_decay = float(usage_decay)
        self.encoder = Encoder(self.filters, self.channel_multipliers, self.num_res_blocks,
                               self.embedding_dim, self.norm_groups, activation,
                               self.conv_downsample, name="encoder")
        self.quantizer = VectorQuantizer(self.codebook_size, self.embedding_dim,
                                         self.commitment_cost, self.usage_decay,
                                         name="quantizer")
        self.decoder = Decoder(self.filters, self.channel_multipliers, self.num_res_blocks,
                               self.image_shape[2], self.norm_groups, activation,
                               name="decoder")
        top, left = ((p - s) // 2 for p, s in zip(self.padded_size, self.image_shape[:2]))
        self._offsets = (top, left)

    def build(self, input_shape=None):
        padded = (None,) + self.padded_size + (self.image_shape[2],)
        self.encoder.build(padded)
        self.quantizer.build()
        self.decoder.build((None,) + self.grid_shape + (self.embedding_dim,))
        self.built = True

    sample_name = "images"

    @property
    def sample_shape(self):
        return self.image_shape

    def _to_encoder(self, images):
        top, left = self._offsets
        bottom = self.padded_size[0] - self.image_shape[0] - top
        right = self.padded_size[1] - self.image_shape[1] - left
        if top == bottom == left == right == 0:
            return images
        return tf.pad(images, [[0, 0], [top, bottom], [left, right], [0, 0]])

    def _from_decoder(self, images):
        top, left = self._offsets
        return images[:, top:top + self.image_shape[0], left:left + self.image_shape[1]]

    def get_config(self):
        return dict(name=self.name, image_shape=self.image_shape,
                    padded_size=self.padded_size, filters=self.filters,
                    channel_multipliers=self.channel_multipliers,
                    num_res_blocks=self.num_res_blocks, embedding_dim=self.embedding_dim,
                    codebook_size=self.codebook_size, commitment_cost=self.commitment_cost,
                    norm_groups=self.norm_groups, activation=self.activation,
                    conv_downsample=self.conv_downsample, usage_decay=self.usage_decay)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# Small configurations for 28/32-pixel data (name -> VQGAN kwargs).
SMALL_CONFIGS = {
    # 28x28 (padded to 32x32) -> 8x8 tokens.
    "small_8x8": dict(padded_size=(32, 32), filters=32, channel_multipliers=(1, 2, 2),
                      num_res_blocks=1, embedding_dim=32, codebook_size=256, norm_groups=8),
    # 28x28 (padded to 32x32) -> 16x16 tokens.
    "small_16x16": dict(padded_size=(32, 32), filters=32, channel_multipliers=(1, 2),
                        num_res_blocks=1, embedding_dim=32, codebook_size=256, norm_groups=8),
    "tiny_test": dict(padded_size=(8, 8), filters=8, channel_multipliers=(1, 2),
                      num_res_blocks=1, embedding_dim=4, codebook_size=16, norm_groups=4),
}


@gin.configurable
def build_vqgan(config="small_8x8", image_shape=(28, 28, 1), **overrides):
    """A built VQGAN from a named small config (see SMALL_CONFIGS) plus overrides."""
    if config not in SMALL_CONFIGS:
        raise ValueError(f"unknown VQGAN config {config!r}; known: {sorted(SMALL_CONFIGS)}")
    kwargs = dict(SMALL_CONFIGS[config])
    kwargs.update(overrides)
    model = VQGAN(image_shape=image_shape, name=f"vqgan_{config}", **kwargs)
    model.build()
    return model
