"""MAGVIT-style 3D-conv VQ video tokenizer: clip [B, T, H, W, C] <-> tokens [B, t, h, w].

The 3D counterpart of `vqgan.VQGAN` (same interface, so the tokenizer trainer, the
token writer and the transformer see a tokenizer, not a modality): 3x3x3 residual
blocks with GroupNorm + swish (MAGVIT, Yu et al. 2023), per-level downsampling that is
configurable separately in time and space (2x2x2 or 1x2x2 average pooling, or a strided
4x4x4 conv), the same L2 `VectorQuantizer` with straight-through gradients, and a
mirrored decoder with nearest-neighbour upsampling followed by a 3x3x3 conv.
Paper scale: 16x128x128 clips -> 4x16x16 tokens (`PAPER_CONFIG`); small CPU configs in
`SMALL_CONFIGS` (16x64x64 -> 4x8x8, 8x32x32 -> 2x8x8).
Unlike the official 2D MaskGIT block, the channel-changing shortcut is a 1x1x1 conv of
the block's input (MAGVIT's choice; no checkpoint to stay compatible with).
"""
import gin
import keras
import tensorflow as tf

from magnets_tf.models.vqgan import (TokenizerInterface, VectorQuantizer, _activation,
                                     _group_norm)


@keras.saving.register_keras_serializable("magnets_tf")
class ResBlock3D(keras.layers.Layer):
    """GroupNorm -> act -> conv3x3x3 -> GroupNorm -> act -> conv3x3x3, plus a shortcut
    (identity, or a 1x1x1 conv of the input when the channel count changes)."""

    def __init__(self, filters, norm_groups=32, activation="swish", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self._act = _activation(activation)

    def build(self, input_shape):
        self.input_dim = int(input_shape[-1])
        out_shape = tuple(input_shape[:-1]) + (self.filters,)
        self.norm0 = _group_norm(self.input_dim, self.norm_groups, "norm0")
        self.conv0 = keras.layers.Conv3D(self.filters, 3, padding="same", use_bias=False,
                                         name="conv0")
        self.norm1 = _group_norm(self.filters, self.norm_groups, "norm1")
        self.conv1 = keras.layers.Conv3D(self.filters, 3, padding="same", use_bias=False,
                                         name="conv1")
        self.norm0.build(input_shape)
        self.conv0.build(input_shape)
        self.norm1.build(out_shape)
        self.conv1.build(out_shape)
        self.shortcut = None
        if self.input_dim != self.filters:
            self.shortcut = keras.layers.Conv3D(self.filters, 1, use_bias=False,
                                                name="shortcut")
            self.shortcut.build(input_shape)
        self.built = True

    def call(self, x):
        h = self.conv0(self._act(self.norm0(x)))
        h = self.conv1(self._act(self.norm1(h)))
        return h + (x if self.shortcut is None else self.shortcut(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, norm_groups=self.norm_groups,
                      activation=self.activation)
        return config


def _strides(temporal, spatial):
    return (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1)


def _scaled(shape, strides, up=False):
    out = list(shape)
    for axis, s in zip((1, 2, 3), strides):
        if out[axis] is not None:
            out[axis] = out[axis] * s if up else out[axis] // s
    return tuple(out)


def _upsample(x, strides):
    for axis, s in zip((1, 2, 3), strides):
        if s > 1:
            x = tf.repeat(x, s, axis=axis)
    return x


@keras.saving.register_keras_serializable("magnets_tf")
class Encoder3D(keras.layers.Layer):
    """Clip [B, T, H, W, C] -> latents [B, t, h, w, embedding_dim].

    One level per channel multiplier; after level i (all but the last) the clip is
    downsampled by 2 in time if temporal_downsample[i] and in space if
    spatial_downsample[i]."""

    def __init__(self, filters, channel_multipliers, num_res_blocks, embedding_dim,
                 temporal_downsample, spatial_downsample, norm_groups=32,
                 activation="swish", conv_downsample=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.channel_multipliers = tuple(int(m) for m in channel_multipliers)
        self.num_res_blocks = int(num_res_blocks)
        self.embedding_dim = int(embedding_dim)
        self.temporal_downsample = tuple(bool(t) for t in temporal_downsample)
        self.spatial_downsample = tuple(bool(s) for s in spatial_downsample)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self.conv_downsample = bool(conv_downsample)
        self._act = _activation(activation)
        self.conv_in = keras.layers.Conv3D(self.filters, 3, padding="same", use_bias=False,
                                           name="conv_in")
        self.levels = []
        for i, mult in enumerate(self.channel_multipliers):
            blocks = [ResBlock3D(self.filters * mult, self.norm_groups, activation,
                                 name=f"level{i}_block{j}") for j in range(self.num_res_blocks)]
            strides = None
            down = None
            if i < len(self.channel_multipliers) - 1:
                strides = _strides(self.temporal_downsample[i], self.spatial_downsample[i])
                if self.conv_downsample:
                    down = keras.layers.Conv3D(self.filters * mult, 4, strides=strides,
                                               padding="same", name=f"level{i}_downsample")
            self.levels.append((blocks, strides, down))
        top = self.filters * self.channel_multipliers[-1]
        self.mid_blocks = [ResBlock3D(top, self.norm_groups, activation, name=f"mid_block{j}")
                           for j in range(self.num_res_blocks)]
        self.norm_out = _group_norm(top, self.norm_groups, "norm_out")
        self.conv_out = keras.layers.Conv3D(self.embedding_dim, 1, name="conv_out")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv_in.build(shape)
        shape = shape[:-1] + (self.filters,)
        for blocks, strides, down in self.levels:
            for block in blocks:
                block.build(shape)
                shape = block.compute_output_shape(shape)
            if strides is not None:
                if down is not None:
                    down.build(shape)
                shape = _scaled(shape, strides)
        for block in self.mid_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.norm_out.build(shape)
        self.conv_out.build(shape)
        self.built = True

    def call(self, x):
        x = self.conv_in(x)
        for blocks, strides, down in self.levels:
            for block in blocks:
                x = block(x)
            if strides is not None and strides != (1, 1, 1):
                x = down(x) if down is not None else tf.nn.avg_pool3d(x, strides, strides,
                                                                      "VALID")
        for block in self.mid_blocks:
            x = block(x)
        return self.conv_out(self._act(self.norm_out(x)))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, channel_multipliers=self.channel_multipliers,
                      num_res_blocks=self.num_res_blocks, embedding_dim=self.embedding_dim,
                      temporal_downsample=self.temporal_downsample,
                      spatial_downsample=self.spatial_downsample,
                      norm_groups=self.norm_groups, activation=self.activation,
                      conv_downsample=self.conv_downsample)
        return config


@keras.saving.register_keras_serializable("magnets_tf")
class Decoder3D(keras.layers.Layer):
    """Quantized latents [B, t, h, w, D] -> clip [B, T, H, W, out_channels]."""

    def __init__(self, filters, channel_multipliers, num_res_blocks, out_channels,
                 temporal_downsample, spatial_downsample, norm_groups=32,
                 activation="swish", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.channel_multipliers = tuple(int(m) for m in channel_multipliers)
        self.num_res_blocks = int(num_res_blocks)
        self.out_channels = int(out_channels)
        self.temporal_downsample = tuple(bool(t) for t in temporal_downsample)
        self.spatial_downsample = tuple(bool(s) for s in spatial_downsample)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self._act = _activation(activation)
        top = self.filters * self.channel_multipliers[-1]
        self.conv_in = keras.layers.Conv3D(top, 3, padding="same", name="conv_in")
        self.mid_blocks = [ResBlock3D(top, self.norm_groups, activation, name=f"mid_block{j}")
                           for j in range(self.num_res_blocks)]
        self.levels = []  # Coarsest level first, as executed.
        for i in reversed(range(len(self.channel_multipliers))):
            width = self.filters * self.channel_multipliers[i]
            blocks = [ResBlock3D(width, self.norm_groups, activation, name=f"level{i}_block{j}")
                      for j in range(self.num_res_blocks)]
            strides, up = None, None
            if i > 0:
                strides = _strides(self.temporal_downsample[i - 1],
                                   self.spatial_downsample[i - 1])
                up = keras.layers.Conv3D(width, 3, padding="same", name=f"level{i}_upsample")
            self.levels.append((blocks, strides, up))
        self.norm_out = _group_norm(self.filters * self.channel_multipliers[0],
                                    self.norm_groups, "norm_out")
        self.conv_out = keras.layers.Conv3D(self.out_channels, 3, padding="same",
                                            name="conv_out")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.conv_in.build(shape)
        shape = shape[:-1] + (self.filters * self.channel_multipliers[-1],)
        for block in self.mid_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        for blocks, strides, up in self.levels:
            for block in blocks:
                block.build(shape)
                shape = block.compute_output_shape(shape)
            if up is not None:
                shape = _scaled(shape, strides, up=True)
                up.build(shape)
        self.norm_out.build(shape)
        self.conv_out.build(shape)
        self.built = True

    def call(self, x):
        x = self.conv_in(x)
        for block in self.mid_blocks:
            x = block(x)
        for blocks, strides, up in self.levels:
            for block in blocks:
                x = block(x)
            if up is not None:
                x = up(_upsample(x, strides))
        return self.conv_out(self._act(self.norm_out(x)))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, channel_multipliers=self.channel_multipliers,
                      num_res_blocks=self.num_res_blocks, out_channels=self.out_channels,
                      temporal_downsample=self.temporal_downsample,
                      spatial_downsample=self.spatial_downsample,
                      norm_groups=self.norm_groups, activation=self.activation)
        return config


@keras.saving.register_keras_serializable("magnets_tf")
class VideoTokenizer(TokenizerInterface, keras.Model):
    """Video tokenizer: `encode` clips -> int tokens [B, t, h, w]; `decode` tokens -> clips.

    Args:
      video_shape: (T, H, W, C) of the clips, float in [0, 1].
      filters, channel_multipliers, num_res_blocks: widths; one level per multiplier.
      temporal_downsample, spatial_downsample: one bool per level transition
        (len(channel_multipliers) - 1 each): halve time / space after that level.
      embedding_dim, codebook_size, commitment_cost, usage_decay: the vector quantizer.
    Defaults are the paper-scale tokenizer: 16x128x128x3 -> 4x16x16 tokens, 1024 codes.
    Token grids flatten time-major (`tokens.reshape(B, t*h*w)`), so the tokens of the
    first frames lead the sequence: frame prediction conditions on a prefix.
    """

    def __init__(self, video_shape=(16, 128, 128, 3), filters=64,
                 channel_multipliers=(1, 2, 2, 4), num_res_blocks=2,
                 temporal_downsample=(False, True, True), spatial_downsample=(True, True, True),
                 embedding_dim=256, codebook_size=1024, commitment_cost=0.25, norm_groups=32,
                 activation="swish", conv_downsample=False, usage_decay=0.99, **kwargs):
        super().__init__(**kwargs)
        self.video_shape = tuple(int(d) for d in video_shape)
        if len(self.video_shape) != 4 or min(self.video_shape) <= 0:
            raise ValueError(f"video_shape must be (T, H, W, C) positive ints, got "
                             f"{video_shape!r}")
        self.channel_multipliers = tuple(int(m) for m in channel_multipliers)
        if not self.channel_multipliers:
            raise ValueError("channel_multipliers must not be empty")
        transitions = len(self.channel_multipliers) - 1
        self.temporal_downsample = tuple(bool(t) for t in temporal_downsample)
        self.spatial_downsample = tuple(bool(s) for s in spatial_downsample)
        for name, flags in (("temporal_downsample", self.temporal_downsample),
                            ("spatial_downsample", self.spatial_downsample)):
            if len(flags) != transitions:
                raise ValueError(f"{name} needs {transitions} entries (one per level "
                                 f"transition of channel_multipliers="
                                 f"{self.channel_multipliers}), got {len(flags)}")
        self.temporal_factor = 2 ** sum(self.temporal_downsample)
        self.spatial_factor = 2 ** sum(self.spatial_downsample)
        t, h, w = self.video_shape[:3]
        if t % self.temporal_factor or h % self.spatial_factor or w % self.spatial_factor:
            raise ValueError(f"video_shape {self.video_shape} is not divisible by the "
                             f"downsampling (time {self.temporal_factor}, space "
                             f"{self.spatial_factor})")
        self.grid_shape = (t // self.temporal_factor, h // self.spatial_factor,
                           w // self.spatial_factor)
        self.image_shape = self.video_shape[1:]  # Frame shape, for per-frame components.
        self.filters = int(filters)
        self.num_res_blocks = int(num_res_blocks)
        self.embedding_dim = int(embedding_dim)
        self.codebook_size = int(codebook_size)
        self.commitment_cost = float(commitment_cost)
        self.norm_groups = int(norm_groups)
        self.activation = activation
        self.conv_downsample = bool(conv_downsample)
        self.usage_decay = float(usage_decay)
        self.encoder = Encoder3D(self.filters, self.channel_multipliers, self.num_res_blocks,
                                 self.embedding_dim, self.temporal_downsample,
                                 self.spatial_downsample, self.norm_groups, activation,
                                 self.conv_downsample, name="encoder")
        self.quantizer = VectorQuantizer(self.codebook_size, self.embedding_dim,
                                         self.commitment_cost, self.usage_decay,
                                         name="quantizer")
        self.decoder = Decoder3D(self.filters, self.channel_multipliers, self.num_res_blocks,
                                 self.video_shape[3], self.temporal_downsample,
                                 self.spatial_downsample, self.norm_groups, activation,
                                 name="decoder")

    @property
    def num_tokens(self):
        t, h, w = self.grid_shape
        return t * h * w

    def tokens_per_frame_group(self):
        """Tokens of one temporal token slice (h*w): covers `temporal_factor` frames."""
        return self.grid_shape[1] * self.grid_shape[2]

    def build(self, input_shape=None):
        self.encoder.build((None,) + self.video_shape)
        self.quantizer.build()
        self.decoder.build((None,) + self.grid_shape + (self.embedding_dim,))
        self.built = True

    sample_name = "videos"

    @property
    def sample_shape(self):
        return self.video_shape

    def get_config(self):
        return dict(name=self.name, video_shape=self.video_shape, filters=self.filters,
                    channel_multipliers=self.channel_multipliers,
                    num_res_blocks=self.num_res_blocks,
                    temporal_downsample=self.temporal_downsample,
                    spatial_downsample=self.spatial_downsample,
                    embedding_dim=self.embedding_dim, codebook_size=self.codebook_size,
                    commitment_cost=self.commitment_cost, norm_groups=self.norm_groups,
                    activation=self.activation, conv_downsample=self.conv_downsample,
                    usage_decay=self.usage_decay)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


# The paper-scale tokenizer (MAGVIT-B-like widths): 16x128x128x3 -> 4x16x16, 1024 codes.
PAPER_CONFIG = dict(video_shape=(16, 128, 128, 3), filters=64, channel_multipliers=(1, 2, 2, 4),
                    num_res_blocks=2, temporal_downsample=(False, True, True),
                    spatial_downsample=(True, True, True), embedding_dim=256,
                    codebook_size=1024, norm_groups=32)

# Small configurations for CPU (name -> VideoTokenizer kwargs; video_shape given apart).
SMALL_CONFIGS = {
    # 16x64x64 -> 4x8x8 tokens.
    "small_4x8x8": dict(filters=16, channel_multipliers=(1, 2, 2, 4), num_res_blocks=1,
                        temporal_downsample=(False, True, True),
                        spatial_downsample=(True, True, True), embedding_dim=32,
                        codebook_size=256, norm_groups=8),
    # 8x32x32 -> 2x8x8 tokens.
    "small_2x8x8": dict(filters=16, channel_multipliers=(1, 2, 2), num_res_blocks=1,
                        temporal_downsample=(True, True), spatial_downsample=(True, True),
                        embedding_dim=32, codebook_size=256, norm_groups=8),
    "tiny_test": dict(filters=8, channel_multipliers=(1, 2), num_res_blocks=1,
                      temporal_downsample=(True,), spatial_downsample=(True,),
                      embedding_dim=4, codebook_size=16, norm_groups=4),
}


# Clip shape each named config is made for (T, H, W, C); Moving MNIST is grey.
DEFAULT_VIDEO_SHAPES = {"paper": (16, 128, 128, 3), "small_4x8x8": (16, 64, 64, 1),
                        "small_2x8x8": (8, 32, 32, 1), "tiny_test": (4, 8, 8, 1)}


@gin.configurable
def build_video_tokenizer(config="small_2x8x8", video_shape=None, **overrides):
    """A built VideoTokenizer from a named config ("paper" or SMALL_CONFIGS) + overrides;
    video_shape defaults to the config's DEFAULT_VIDEO_SHAPES entry."""
    if config == "paper":
        kwargs = {k: v for k, v in PAPER_CONFIG.items() if k != "video_shape"}
    elif config in SMALL_CONFIGS:
        kwargs = dict(SMALL_CONFIGS[config])
    else:
        raise ValueError(f"unknown video tokenizer config {config!r}; known: "
                         f"{['paper', *sorted(SMALL_CONFIGS)]}")
    kwargs.update(overrides)
    shape = DEFAULT_VIDEO_SHAPES[config] if video_shape is None else video_shape
    model = VideoTokenizer(video_shape=shape, name=f"video_tokenizer_{config}", **kwargs)
    model.build()
    return model
