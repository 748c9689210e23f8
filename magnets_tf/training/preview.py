"""Decoders for training previews: what each nested sub-model generates on its own.

A preview decodes with the production `decoding.decoder.Decoder` on a one-factor plan:
sub-model p at all K steps, no cache, no guidance, the cosine schedule with paper eq. 5's
temperature and Gumbel confidence noise, so TensorBoard shows what every sub-model
generates while training. A frame-prediction transformer's plan keeps its condition tokens
(the caller passes those of real clips).
"""
from magnets_tf.decoding.decoder import Decoder
from magnets_tf.decoding.schedule import make_plan

# Sampling settings of the previews (mask noise lower than make_plan's default).
PREVIEW_SAMPLING = dict(temperature_bias=0.5, temperature_scale=0.8, mask_temperature=3.0)


def preview_plan(transformer, factor, num_steps=8):
    """`DecodePlan` of sub-model `factor` alone for `num_steps` uncached, unguided steps
    (with the transformer's condition tokens given)."""
    return make_plan(transformer.num_tokens, num_steps=num_steps,
                     num_condition_tokens=transformer.num_condition_tokens,
                     model_schedule=((factor, num_steps),), use_cache=False,
                     guidance_scale=0.0, guidance_steps=0, mask_schedule="cosine",
                     available_factors=transformer.factors, **PREVIEW_SAMPLING)


def preview_decoder(transformer, factor, batch_size, num_steps=8, jit_compile=False):
    """`Decoder` of `preview_plan`; without XLA by default (compiles fast, runs rarely)."""
    return Decoder(transformer, preview_plan(transformer, factor, num_steps), batch_size,
                   jit_compile=jit_compile)
