"""Architecture presets: the paper's S/B/L/XL and tiny CPU sizes.

The paper gives only parameter counts; shapes are inferred from them (L reproduces
Table 1's GFLOPs exactly). Data-dependent sizes (codebook, classes, tokens) are given
when building.
"""
import gin

from magnets_tf.models.transformer import MaskGitTransformer

PRESETS = {
    # CPU sizes for tests, quickstart and benchmarks on small grids.
    "tiny": dict(num_layers=2, hidden_size=64, num_heads=2, mlp_dim=256),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4, mlp_dim=1024),
    # Paper sizes (22M, 86M, 303M, 450M transformer parameters).
    "S": dict(num_layers=12, hidden_size=384, num_heads=6, mlp_dim=1536),
    "B": dict(num_layers=12, hidden_size=768, num_heads=12, mlp_dim=3072),
    "L": dict(num_layers=24, hidden_size=1024, num_heads=16, mlp_dim=4096),
    "XL": dict(num_layers=28, hidden_size=1152, num_heads=16, mlp_dim=4608),
}


def preset_config(preset):
    """Architecture dict of a preset; ValueError naming the known presets."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
    return dict(PRESETS[preset])


MODEL_NAME_PREFIX = "maskgit_"  # A built model's name is MODEL_NAME_PREFIX + preset.


def preset_of(model):
    """The preset name `build_transformer` built `model` from (its name without the
    prefix), e.g. "tiny"."""
    return model.name.removeprefix(MODEL_NAME_PREFIX)


@gin.configurable
def build_transformer(preset="tiny", codebook_size=1024, num_classes=1000, num_tokens=256,
                      num_condition_tokens=0, factors=(1, 2, 4, 8), dropout=0.1,
                      attention_dropout=0.1, dtype=None, **overrides):
    """A built `MaskGitTransformer` of `preset` for the given vocabulary and token grid.

    dtype: its Keras dtype policy ("float32", "mixed_bfloat16", "mixed_float16"; None:
    the global policy, float32 unless set). Variables are float32 in every policy."""
    config = preset_config(preset)
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(f"unknown architecture overrides {sorted(unknown)}; "
                         f"allowed: {sorted(config)}")
    config.update(overrides)
    model = MaskGitTransformer(codebook_size=codebook_size, num_classes=num_classes,
                               num_tokens=num_tokens, num_condition_tokens=num_condition_tokens,
                               factors=factors, dropout=dropout,
                               attention_dropout=attention_dropout, name=MODEL_NAME_PREFIX + preset,
                               dtype=dtype, **config)
    model.build()
    return model
