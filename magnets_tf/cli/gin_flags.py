"""--gin_file and --gin_bindings, defined once and parsed one way.

Parsing goes through `magnets_tf.gin_setup.parse_gin` (every configurable registered
first); `include` lines in gin files may name paths relative to the repository root.
"""
import os
from pathlib import Path

import gin
from absl import app, flags

from magnets_tf import gin_setup

flags.disclaim_key_flags()  # the flags belong to the tool that defines them

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def define_gin_flags(flag_values=flags.FLAGS):
    flags.DEFINE_multi_string("gin_file", [], "Gin config files (repeatable, applied in "
                              "order).", flag_values=flag_values)
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings (repeatable), e.g. "
                              "\"make_plan.temperature_bias=1.0\".", flag_values=flag_values)


def parse_gin_flags(flag_values=flags.FLAGS, extra_bindings=()):
    """Parses the flags' gin files and bindings, then extra_bindings; a missing file or a
    bad binding is a usage error."""
    for path in flag_values.gin_file:
        if not os.path.exists(path):
            raise app.UsageError(f"--gin_file {path} does not exist")
    gin.add_config_file_search_path(str(REPOSITORY_ROOT))
    try:
        gin_setup.parse_gin(flag_values.gin_file,
                            [*flag_values.gin_bindings, *extra_bindings])
    except (OSError, ValueError, KeyError, TypeError, SyntaxError) as error:
        raise app.UsageError(f"bad gin configuration: {error}") from None


def bind_flag_overrides(bindings):
    """Binds {"configurable.parameter": flag value} for the flags given (value not None),
    after `parse_gin_flags`: a flag overrides the gin files, and being a gin binding it is
    recorded in the run's operative_config.gin."""
    with gin.unlock_config():
        for name, value in bindings.items():
            if value is not None:
                gin.bind_parameter(name, value)
