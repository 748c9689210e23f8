import pytest

from magnets_tf.evaluation.flops import ArchSpec, nested_param_count
from magnets_tf.models.presets import PRESETS, build_transformer, preset_config


@pytest.mark.parametrize("preset, millions", [("S", 22), ("B", 86), ("L", 303), ("XL", 450)])
def test_paper_sizes(preset, millions):
    # Analytic count (checked against the built model for small presets below); the
    # paper's counts are within 2% (they exclude part of the embeddings).
    arch = ArchSpec.from_preset(preset)
    n = nested_param_count(arch, 1, 1024 + 1000 + 2, 257)
    assert abs(n / 1e6 - millions) / millions < 0.02


@pytest.mark.parametrize("preset", ["tiny", "mini"])
def test_cpu_presets_build(preset):
    model = build_transformer(preset, codebook_size=64, num_classes=10, num_tokens=49)
    for p in model.factors:
        assert model.num_params(p) == nested_param_count(
            ArchSpec.from_model(model), p, model.vocab_size, model.sequence_length)


def test_unknown_preset_and_override():
    with pytest.raises(ValueError, match="unknown preset 'Q'"):
        preset_config("Q")
    with pytest.raises(ValueError, match="unknown architecture overrides"):
        build_transformer("tiny", depth=3)
    assert set(PRESETS) >= {"tiny", "S", "B", "L", "XL"}
