"""Gin parsing for the tools: register every configurable first, then parse.

Gin locks its registry when a config is parsed: a module with `@gin.configurable`
imported afterwards raises "Attempted to add a new configurable after the config was
locked". Tools therefore parse through `parse_gin`, which imports every module that
defines configurables before parsing.
"""
import importlib

import gin

CONFIGURABLE_MODULES = (
    "magnets_tf.data.video",
    "magnets_tf.decoding.schedule",
    "magnets_tf.evaluation.benchmark",
    "magnets_tf.evaluation.classifier",
    "magnets_tf.evaluation.fvd",
    "magnets_tf.evaluation.inception",
    "magnets_tf.models.presets",
    "magnets_tf.models.video_tokenizer",
    "magnets_tf.models.vqgan",
    "magnets_tf.training.distribute",
    "magnets_tf.training.frame_prediction",
    "magnets_tf.training.guard",
    "magnets_tf.training.masking",
    "magnets_tf.training.optimizer",
    "magnets_tf.training.tokenizer_trainer",
    "magnets_tf.training.trainer",
    "magnets_tf.training.transformer_task",
)


def import_configurables():
    """Imports every module of the package that registers gin configurables."""
    for name in CONFIGURABLE_MODULES:
        importlib.import_module(name)


def parse_gin(config_files, bindings):
    """Registers all configurables, then parses gin files and bindings (and locks)."""
    import_configurables()
    gin.parse_config_files_and_bindings(config_files or [], bindings or [])
