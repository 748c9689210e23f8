"""Models: the nested MaskGIT transformer, tokenizers and presets."""
from magnets_tf.models.transformer import MaskGitTransformer
from magnets_tf.models.presets import PRESETS, build_transformer, preset_config
