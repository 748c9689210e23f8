"""Resume checks: model or gin changes refuse with the differences listed, run-control
changes pass, stored files are archived (never silently rewritten), integer settings."""
import json
import os

import pytest

from magnets_tf.training import run_config
from magnets_tf.training.run_config import ConfigDriftError

GIN = """
TOKENS_DIR = 'runs/tokens'
build_transformer.factors = (1, 2, 4, 8)
train.tokens_dir = %TOKENS_DIR
train.checkpoint_every = 1000
make_optimizer.learning_rate = 0.001
"""


def _model_dir(tmp_path, factors=(1, 2, 4, 8)):
    (tmp_path / "operative_config.gin").write_text(GIN)
    (tmp_path / "transformer_config.json").write_text(json.dumps(dict(factors=list(factors),
                                                                      width=64)))
    return str(tmp_path)


def test_gin_settings_resolve_macros_and_scopes():
    settings = run_config.gin_settings(GIN + "eval/train.seed = 3\n")
    assert settings["train.tokens_dir"] == "runs/tokens"
    assert settings["build_transformer.factors"] == (1, 2, 4, 8)
    assert settings["eval/train.seed"] == 3
    assert run_config.may_change("eval/train.checkpoint_every")
    assert run_config.may_change("make_optimizer.learning_rate")
    assert not run_config.may_change("build_transformer.factors")


def test_same_configuration_passes_without_writing(tmp_path):
    model_dir = _model_dir(tmp_path)
    before = sorted(os.listdir(model_dir))
    assert run_config.check_resume(model_dir, GIN, ("transformer_config.json",
                                                    dict(factors=(1, 2, 4, 8), width=64))) == []
    assert sorted(os.listdir(model_dir)) == before


def test_model_change_is_refused_listing_every_difference(tmp_path):
    model_dir = _model_dir(tmp_path)
    new_gin = GIN.replace("(1, 2, 4, 8)", "(1,)")
    with pytest.raises(ConfigDriftError) as caught:
        run_config.check_resume(model_dir, new_gin, ("transformer_config.json",
                                                     dict(factors=(1,), width=64)),
                                start_step=40)
    message = str(caught.value)
    assert "resuming at step 40" in message and "--allow_config_change" in message
    assert "transformer_config.json:factors: [1, 2, 4, 8] -> [1]" in message
    assert "build_transformer.factors: (1, 2, 4, 8) -> (1,)" in message
    assert not (tmp_path / run_config.HISTORY_DIR).exists()
    assert (tmp_path / "operative_config.gin").read_text() == GIN


def test_allowed_change_archives_the_stored_files(tmp_path):
    model_dir = _model_dir(tmp_path)
    messages = []
    changed = run_config.check_resume(
        model_dir, GIN.replace("(1, 2, 4, 8)", "(1,)"),
        ("transformer_config.json", dict(factors=(1,), width=64)), allow_change=True,
        start_step=40, log=messages.append)
    assert len(changed) == 2
    history = tmp_path / run_config.HISTORY_DIR
    assert sorted(os.listdir(history)) == ["operative_config-step40.gin",
                                           "transformer_config-step40.json"]
    assert (history / "operative_config-step40.gin").read_text() == GIN
    assert any("accepted (--allow_config_change)" in m for m in messages)


def test_run_control_changes_pass_and_are_reported(tmp_path):
    model_dir = _model_dir(tmp_path)
    messages = []
    new_gin = GIN.replace("0.001", "0.0001").replace("= 1000", "= 5")
    changed = run_config.check_resume(model_dir, new_gin, None, log=messages.append)
    assert [key for key, _, _ in changed] == ["make_optimizer.learning_rate",
                                              "train.checkpoint_every"]
    assert "configuration changes accepted at step 0" in messages[-1]
    assert os.listdir(tmp_path / run_config.HISTORY_DIR) == ["operative_config-step0.gin"]


def test_unreadable_stored_config_is_named(tmp_path):
    model_dir = _model_dir(tmp_path)
    (tmp_path / "transformer_config.json").write_text("{not json")
    with pytest.raises(ConfigDriftError, match="transformer_config.json cannot be read"):
        run_config.check_resume(model_dir, GIN, ("transformer_config.json", {}))


@pytest.mark.parametrize("value, minimum, ok", [
    (8, 1, True), (8.0, 1, True), ("abc", 1, False), (0, 1, False), (True, None, False),
    (2.5, None, False)])
def test_require_int_names_the_setting(value, minimum, ok):
    if ok:
        assert run_config.require_int("train.batch_size", value, minimum) == int(value)
    else:
        with pytest.raises(ValueError, match=r"train\.batch_size must be an integer"):
            run_config.require_int("train.batch_size", value, minimum)


def test_gin_settings_recorded_on_one_side_only_are_not_a_change(tmp_path):
    """Gin lists a configurable once it was called: in one process a resumed run records
    mask_batch.* that the first run had not called yet when it saved its config."""
    model_dir = _model_dir(tmp_path)
    assert run_config.check_resume(model_dir, GIN + "mask_batch.min_mask_ratio = 0.0\n",
                                   None) == []


def test_where_a_leg_stops_is_never_compared_nor_archived(tmp_path):
    """Every leg of a run may stop elsewhere: stop_at_step and max_wall_minutes are not
    configuration drift, and resuming with other values archives nothing."""
    (tmp_path / "operative_config.gin").write_text(
        GIN + "train.stop_at_step = 200\ntrain.max_wall_minutes = None\n")
    messages = []
    new_gin = GIN + "train.stop_at_step = None\ntrain.max_wall_minutes = 50.0\n"
    assert run_config.check_resume(str(tmp_path), new_gin, None, log=messages.append) == []
    assert messages == [] and not (tmp_path / run_config.HISTORY_DIR).exists()
    assert run_config.leg_only("eval/TokenizerTrainer.stop_at_step")
    assert not run_config.leg_only("train.train_steps")
