"""Flags of the scoring tools: required inputs, --reference as dataset:split."""
import pytest
from absl import app, flags

from magnets_tf.cli import scoring_flags


def _flags(*argv):
    values = flags.FlagValues()
    scoring_flags.define_scoring_flags(num_samples=7, flag_values=values)
    values(["tool", "--model_dir=m", "--tokenizer_dir=t", "--output_dir=o", *argv])
    return values


def test_defaults_and_reference():
    values = _flags()
    assert values.num_samples == 7 and values.batch_size == 25 and values.jit_compile
    assert scoring_flags.reference(values) == ("fashion_mnist", "test")
    with pytest.raises(app.UsageError, match="--reference must be dataset:split"):
        scoring_flags.reference(_flags("--reference=fashion_mnist"))


def test_generator_and_output_are_required():
    values = flags.FlagValues()
    scoring_flags.define_scoring_flags(num_samples=1, flag_values=values)
    with pytest.raises(flags.IllegalFlagValueError, match="--model_dir"):
        values(["tool", "--tokenizer_dir=t", "--output_dir=o"])
