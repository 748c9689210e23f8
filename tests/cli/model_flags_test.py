"""The transformer of a tool: trained from its directory, or random weights of a preset."""
import pytest
from absl import app, flags

from magnets_tf.cli import model_flags
from magnets_tf.models.presets import build_transformer
from magnets_tf.models.saving import ModelFileError, save_transformer


def _flags(*argv, **kwargs):
    values = flags.FlagValues()
    model_flags.define_random_init_flags(flag_values=values, **kwargs)
    values(["tool", *argv])
    return values


def test_random_weights_of_the_flags_with_fixed_overrides():
    values = _flags("--random_init", "--grid=3", "--num_classes=5", "--codebook_size=12")
    model = model_flags.transformer_from_flags(None, flag_values=values)
    assert (model.num_tokens, model.num_classes, model.codebook_size) == (9, 5, 12)
    model = model_flags.transformer_from_flags(None, flag_values=values, num_tokens=4)
    assert model.num_tokens == 4


def test_trained_directory(tmp_path):
    save_transformer(build_transformer("tiny", codebook_size=8, num_classes=3, num_tokens=4),
                     tmp_path)
    model = model_flags.transformer_from_flags(str(tmp_path), flag_values=_flags())
    assert (model.num_tokens, model.num_classes) == (4, 3)
    with pytest.raises(ModelFileError, match="transformer_config.json not found"):
        model_flags.transformer_from_flags(str(tmp_path / "none"), flag_values=_flags())


def test_sources_must_not_clash(tmp_path):
    with pytest.raises(app.UsageError, match="exactly one of --transformer_dir and"):
        model_flags.transformer_from_flags(None, "transformer_dir", flag_values=_flags())
    with pytest.raises(app.UsageError, match="exactly one of --model_dir and --random_init"):
        model_flags.transformer_from_flags("d", flag_values=_flags("--random_init"))
    # Without a --random_init flag, no directory means random weights.
    values = _flags("--grid=2", random_init_flag=False, exclude=("codebook_size",))
    assert "codebook_size" not in values
    assert model_flags.transformer_from_flags(None, flag_values=values).num_tokens == 4
    with pytest.raises(app.UsageError, match="drop --grid"):
        model_flags.transformer_from_flags(str(tmp_path), flag_values=values)


def test_compute_dtype_flag_sets_the_decode_dtype_of_trained_and_random_models(tmp_path):
    save_transformer(build_transformer("tiny", codebook_size=8, num_classes=3, num_tokens=4,
                                       dtype="mixed_bfloat16"), tmp_path)

    def with_dtype(*argv):
        values = flags.FlagValues()
        model_flags.define_random_init_flags(flag_values=values)
        model_flags.define_compute_dtype_flag(flag_values=values)
        values(["tool", *argv])
        return values

    # A bfloat16-trained model decodes in bfloat16 unless asked otherwise, and vice versa.
    trained = model_flags.transformer_from_flags(str(tmp_path), flag_values=with_dtype())
    assert trained.compute_dtype == "bfloat16"
    trained = model_flags.transformer_from_flags(
        str(tmp_path), flag_values=with_dtype("--compute_dtype=float32"))
    assert trained.compute_dtype == "float32"
    random = model_flags.transformer_from_flags(
        None, flag_values=with_dtype("--random_init", "--grid=2", "--compute_dtype=bfloat16"))
    assert random.compute_dtype == "bfloat16"
    with pytest.raises(flags.IllegalFlagValueError):
        with_dtype("--compute_dtype=int8")
