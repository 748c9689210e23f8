"""Decode-plan flags, defined once for every tool that decodes, and the one way they
become a `DecodePlan`.

Flag names are `make_plan`'s parameter names; the older short names stay as aliases
(--steps, --schedule, --cfg_last, --cache). A setting comes from, first match wins:
1. its flag, when given on the command line (under either name);
2. a gin binding `make_plan.<name>` (--gin_file / --gin_bindings);
3. the tool's own default for the flag, where the tool sets one;
4. `make_plan`'s default.
The model fixes num_tokens, num_condition_tokens and available_factors.
"""
import inspect

import gin
from absl import app, flags

from magnets_tf.decoding import schedule

flags.disclaim_key_flags()  # the flags belong to the tool that defines them

ALIASES = {"num_steps": "steps", "model_schedule": "schedule", "guidance_steps": "cfg_last",
           "use_cache": "cache"}
_MAKE_PLAN_DEFAULTS = {name: parameter.default for name, parameter
                       in inspect.signature(schedule.make_plan).parameters.items()}


def _enum(values):
    return lambda name, default, help, **kw: flags.DEFINE_enum(name, default, values, help,
                                                               **kw)


# make_plan parameter -> (absl definer, help)
PLAN_FLAGS = {
    "num_steps": (flags.DEFINE_integer, "Decoding steps K."),
    "model_schedule": (flags.DEFINE_string, "Nested-model schedule p:k,...: sub-model p "
                       "(width 1/p) for k steps, in order."),
    "mask_schedule": (_enum(sorted(schedule.MASK_SCHEDULES)), "Fraction of the tokens "
                      "still masked over the steps."),
    "use_cache": (flags.DEFINE_bool, "Cache the keys/values of unmasked tokens."),
    "refresh": (_enum(schedule.REFRESH_POLICIES), "When the K/V cache is recomputed."),
    "guidance_scale": (flags.DEFINE_float, "Classifier-free guidance scale gs (eq. 4); "
                       "0 turns guidance off."),
    "guidance_steps": (flags.DEFINE_integer, "Classifier-free guidance on the last G steps."),
    "guidance_lambda": (_enum(schedule.LAMBDA_POLICIES), "How the guidance weight grows "
                        "over the steps."),
    "uncond_input": (_enum(schedule.UNCOND_INPUTS), "What the unconditional guidance "
                     "branch sees: null_class (class-token guidance), masked_condition (null "
                     "class, condition tokens masked: MAGVIT frame prediction), "
                     "masked_condition_keep_class; auto: masked_condition with condition "
                     "tokens, else null_class."),
    "temperature_bias": (flags.DEFINE_float, "Sampling temperature bias + scale * "
                         "(1 - (k+1)/K): the bias."),
    "temperature_scale": (flags.DEFINE_float, "Sampling temperature: the scale."),
    "mask_temperature": (flags.DEFINE_float, "Gumbel scale of the choice of tokens that stay "
                         "masked."),
}


def define_plan_flags(exclude=(), flag_values=flags.FLAGS, **defaults):
    """Defines the plan flags (all but `exclude`) and their aliases.

    defaults: this tool's own defaults (rule 3 of the module doc), e.g. guidance_steps=4.
    """
    unknown = sorted((set(defaults) | set(exclude)) - set(PLAN_FLAGS))
    if unknown:
        raise ValueError(f"not decode-plan flags: {unknown}; known: {sorted(PLAN_FLAGS)}")
    for name, (define, text) in PLAN_FLAGS.items():
        if name in exclude:
            continue
        default = defaults.get(name)
        fallback = "this default" if default is not None else repr(_MAKE_PLAN_DEFAULTS[name])
        define(name, default, f"{text} Unless given: gin make_plan.{name}, else {fallback}.",
               flag_values=flag_values)
        if name in ALIASES:
            flags.DEFINE_alias(ALIASES[name], name, flag_values=flag_values)


def plan_settings(flag_values=flags.FLAGS):
    """The make_plan keyword arguments the flags decide (rules 1 and 3)."""
    settings = {}
    for name in PLAN_FLAGS:
        if name not in flag_values:
            continue
        flag = flag_values[name]
        if flag.present or (flag.default is not None and not _gin_binds(name)):
            settings[name] = flag.value
    return settings


def plan_setting(name, flag_values=flags.FLAGS):
    """The value one plan setting takes (all four rules of the module doc)."""
    settings = plan_settings(flag_values)
    if name in settings:
        return settings[name]
    return _gin_binding(name) if _gin_binds(name) else _MAKE_PLAN_DEFAULTS[name]


def _gin_binding(name):
    return gin.query_parameter(f"make_plan.{name}")


def _gin_binds(name):
    try:
        _gin_binding(name)
    except ValueError:
        return False
    return True


def decode_plan(model=None, flag_values=flags.FLAGS, **settings):
    """The `DecodePlan` of the flags and gin for `model` (its grid and nested factors).

    model: a `MaskGitTransformer` (or anything with num_tokens, num_condition_tokens and
    factors); without one, `settings` give num_tokens. `settings` override the flags
    (e.g. the schedule of a sweep point). A plan that cannot be made is a usage error.
    """
    kwargs = plan_settings(flag_values)
    if model is not None:
        kwargs.update(num_tokens=model.num_tokens,
                      num_condition_tokens=model.num_condition_tokens,
                      available_factors=tuple(model.factors))
    kwargs.update(settings)
    try:
        return schedule.make_plan(**kwargs)
    except ValueError as error:
        raise app.UsageError(f"bad decode plan: {error}") from None
