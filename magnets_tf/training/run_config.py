"""Resume checks: a restarted run must train the model the stored run trained.

A model_dir records its configuration twice: the task's model config (e.g.
`transformer_config.json`, written with the weights) and `operative_config.gin` (the gin
settings the loop ran with). Before a run continues a model_dir, `check_resume` compares
both with the new run's:

- any difference in the model config refuses (a changed preset, factor list, vocabulary
  or grid, even when the variables happen to fit the checkpoint);
- a differing gin setting refuses too (settings recorded on one side only are not
  compared: gin records a configurable once it was called), unless it matches
  `MAY_CHANGE`: run control (checkpoint/log/sample cadence, progress, XLA, steps per loop,
  the guard), the strategy's devices and
  the optimizer's learning-rate schedule and AdamW settings (lowering the learning rate
  after a divergence is the usual fix). Those changes are listed and accepted.

Settings of one leg of a run (`LEG_ONLY`: where it stops, its wall-clock budget) are
expected to differ between legs and are not compared at all.

A refusal raises `ConfigDriftError` listing every difference, before anything in model_dir
is written; `allow_change=True` (tools: --allow_config_change, gin
`train.allow_config_change`) accepts them. Whenever the stored configuration differs from
the new one, the stored files are first copied to `config_history/<name>-step<N>` (N =
the step the new configuration starts from), so no earlier configuration is lost.
"""
import fnmatch
import json
import os
import shutil

from gin import config_parser

from magnets_tf.utils import files

OPERATIVE_CONFIG = "operative_config.gin"
HISTORY_DIR = "config_history"

# Gin parameters ("configurable.parameter", fnmatch patterns) that may differ on resume.
MAY_CHANGE = (
    "*.checkpoint_every", "*.keep_checkpoints", "*.max_checkpoints", "*.log_every",
    "*.image_every", "*.sample_every", "*.num_samples", "*.sample_steps", "*.progress",
    "*.jit_compile", "*.steps_per_loop", "*.extra_callbacks", "*.allow_config_change",
    "DivergenceGuard.*", "create_strategy.*", "make_optimizer.*",
    "TokenizerTrainer.learning_rate", "TokenizerTrainer.warmup_steps",
    "TokenizerTrainer.end_learning_rate_fraction", "TokenizerTrainer.weight_decay",
    "TokenizerTrainer.discriminator_learning_rate",
)

# Gin parameters that belong to one leg of a run (`stopping`): never compared.
LEG_ONLY = ("*.stop_at_step", "*.max_wall_minutes")


class ConfigDriftError(ValueError):
    """The new run's configuration differs from the stored one in a way that matters."""


class _Macro(str):
    """A %MACRO reference inside a parsed gin value."""


class _Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return f"@{scoped_configurable_name}{'()' if evaluate else ''}"

    def macro(self, macro_name):
        return _Macro(macro_name)


def _resolve(value, macros):
    if isinstance(value, _Macro):
        return macros.get(str(value), f"%{value}")
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v, macros) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, macros) for k, v in value.items()}
    return value


def gin_settings(text):
    """{"scope/configurable.parameter": value} of gin text, macros substituted."""
    bindings, macros = {}, {}
    for statement in config_parser.ConfigParser(text, _Delegate()):
        if not isinstance(statement, config_parser.BindingStatement):
            continue
        selector = "/".join(filter(None, [statement.scope, statement.selector]))
        if statement.arg_name:
            bindings[f"{selector}.{statement.arg_name}"] = statement.value
        else:
            macros[selector] = statement.value
    return {key: _resolve(value, macros) for key, value in bindings.items()}


def leg_only(key):
    """True if the gin parameter `key` configures one leg only (not compared on resume)."""
    name = key.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, pattern) for pattern in LEG_ONLY)


def may_change(key):
    """True if the gin parameter `key` may differ between a run and its resumption."""
    name = key.rsplit("/", 1)[-1]  # Scopes do not matter.
    return any(fnmatch.fnmatch(name, pattern) for pattern in MAY_CHANGE)


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def differences(old, new):
    """[(key, old value, new value)] of two flat dicts; a missing key shows as "(unset)"."""
    missing = "(unset)"
    return [(key, old.get(key, missing), new.get(key, missing))
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]


def _describe(items):
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in items)


def _model_differences(stored_path, model_config):
    try:
        with open(stored_path) as f:
            stored = json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigDriftError(f"{stored_path} cannot be read ({error}): it records the "
                               f"model this model_dir trains; restore it or use a new "
                               f"model_dir") from None
    normalized = json.loads(json.dumps(model_config))  # Tuples -> lists, as stored.
    return differences(_flatten(stored), _flatten(normalized))


def check_resume(model_dir, operative_config, model_config=None, allow_change=False,
                 start_step=0, log=print):
    """Compares the new run's configuration with the one stored in model_dir.

    operative_config: the new gin operative config text; model_config: (file name, dict)
    of the task's model, or None. Raises ConfigDriftError on a difference that matters
    (unless allow_change); otherwise archives the stored files that are about to change
    and reports the differences with `log`. Returns the list of differences.
    """
    stored_gin = os.path.join(model_dir, OPERATIVE_CONFIG)
    model_items, refused, accepted = [], [], []
    if model_config is not None:
        name, config = model_config
        stored_model = os.path.join(model_dir, name)
        if os.path.exists(stored_model):
            model_items = [(f"{name}:{k}", old, new)
                           for k, old, new in _model_differences(stored_model, config)]
    if os.path.exists(stored_gin):
        with open(stored_gin) as f:
            old_text = f.read()
        try:
            old_settings = gin_settings(old_text)
        except (SyntaxError, ValueError) as error:
            raise ConfigDriftError(f"{stored_gin} cannot be parsed ({error}): restore it or "
                                   f"use a new model_dir") from None
        new_settings = gin_settings(operative_config)
        # Gin records a configurable's parameters only once it has been called: one not
        # yet called when a run recorded its config is missing on one side, not changed.
        common = {key for key in set(old_settings) & set(new_settings)
                  if not leg_only(key)}
        for item in differences({k: old_settings[k] for k in common},
                                {k: new_settings[k] for k in common}):
            (accepted if may_change(item[0]) else refused).append(item)
    blocking = model_items + refused
    if blocking and not allow_change:
        raise ConfigDriftError(
            f"{model_dir} was trained with another configuration (resuming at step "
            f"{start_step}): {_describe(blocking)}. Use the original settings or a new "
            f"model_dir, or pass --allow_config_change (gin: allow_config_change=True of the "
            f"training function) to continue with the new ones")
    changed = blocking + accepted
    if changed:
        archived = ([stored_gin] if refused or accepted else []) + (
            [os.path.join(model_dir, model_config[0])] if model_items else [])
        _archive(model_dir, archived, start_step, log)
        kind = "accepted (--allow_config_change)" if blocking else "accepted"
        log(f"configuration changes {kind} at step {start_step}: {_describe(changed)}")
    return changed


def _archive(model_dir, paths, step, log):
    for path in paths:
        if not os.path.exists(path):
            continue
        stem, ext = os.path.splitext(os.path.basename(path))
        target = os.path.join(model_dir, HISTORY_DIR, f"{stem}-step{step}{ext}")
        number = 1
        while os.path.exists(target):
            target = os.path.join(model_dir, HISTORY_DIR, f"{stem}-step{step}.{number}{ext}")
            number += 1
        files.atomic_write(target, lambda tmp, src=path: shutil.copyfile(src, tmp))
        log(f"kept the previous {os.path.basename(path)} as {target}")


def require_int(name, value, minimum=None):
    """`value` as an int, or a ValueError naming the setting (e.g. "train.batch_size") and
    the bad value; a gin typo like batch_size='abc' fails here, not deep in TensorFlow."""
    valid = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())
    if not valid or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}")
    return int(value)
