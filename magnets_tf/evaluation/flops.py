"""Inference GFLOPs of MaskGIT-style decoding, two ways.

`paper`: the formula of the paper's Appendix F (Table 10). It counts multiply-adds of
the transformer layers, keeps attention at full width for every sub-model, uses the
unfloored cosine counts and doubles every guided step. It reproduces Table 1.

`exact`: the multiply-adds our decoder executes for a `DecodePlan`: Q/K/V/O and MLP at
the sub-model's width, attention over every cached position at the sliced head dim, the
MLM head on the M_k tokens still masked at the input of step k (the only ones sampled),
and the unconditional branch's own passes (including its first full pass).
Both are in GFLOPs = 1e9 multiply-adds, as the paper.
"""
import dataclasses

from magnets_tf.decoding.schedule import DecodePlan, mask_ratio


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """The sizes FLOPs depend on."""

    num_layers: int
    hidden_size: int
    num_heads: int
    mlp_dim: int
    codebook_size: int = 1024

    @classmethod
    def from_model(cls, model):
        return cls(model.num_layers, model.hidden_size, model.num_heads, model.mlp_dim,
                   model.codebook_size)

    @classmethod
    def from_preset(cls, preset, codebook_size=1024):
        from magnets_tf.models.presets import preset_config  # models sit below evaluation
        return cls(codebook_size=codebook_size, **preset_config(preset))


def paper_step_gflops(arch, num_cached, num_processed, factor):
    """Appendix F `get_flops` (without its per-step floor, which Table 1 does not apply)."""
    d, m = arch.hidden_size, arch.mlp_dim
    qkv = 4 * num_processed * d * (d // factor)
    attn = 2 * num_processed * (num_processed + num_cached) * d
    mlp = 2 * num_processed * (m // factor) * d
    return (qkv + attn + mlp) * arch.num_layers / 1e9


def paper_gflops(arch, num_steps, factors, use_cache, refresh_steps, total_tokens,
                 guidance_steps=0, num_condition_tokens=0):
    """Per-step GFLOPs list of Appendix F `get_total_flops`, guided steps doubled.

    `total_tokens` counts the class token (257 for a 16x16 grid), as the paper does.
    `refresh_steps` are the step indices where the cache is refreshed.
    """
    if len(factors) != num_steps:
        raise ValueError(f"factors has {len(factors)} entries for num_steps={num_steps}")
    if not 0 <= num_condition_tokens < total_tokens:
        raise ValueError(f"num_condition_tokens={num_condition_tokens} must be in "
                         f"[0, total_tokens={total_tokens})")
    refresh_steps = set(refresh_steps)
    tokens = total_tokens - num_condition_tokens
    cached = 0.0
    per_step = []
    for i in range(num_steps):
        still_masked = mask_ratio("cosine", i / num_steps) * tokens
        if i == 0 or (use_cache and i in refresh_steps):
            flops = paper_step_gflops(arch, 0, tokens + num_condition_tokens, factors[i])
        else:
            flops = paper_step_gflops(arch, cached + num_condition_tokens, tokens - cached,
                                      factors[i])
        if i >= num_steps - guidance_steps:
            flops *= 2
        per_step.append(flops)
        if use_cache:
            cached = tokens - still_masked
    return per_step


def paper_gflops_for_plan(arch, plan: DecodePlan):
    """The paper's count for the schedule, cache and refresh steps of `plan`.

    Condition tokens (frame prediction) are skipped only by a cached decode: an uncached
    plan (the MAGVIT / MaskGIT++ baseline) runs every step on all 1 + N tokens, as our
    decoder does and as Table 2's baseline GFLOPs count them (MAGVIT-L on K600 ~4.3k,
    ~5.1k with guidance on the last 2 steps: tests/evaluation/flops_video_test.py).
    """
    refresh = [k for k, r in enumerate(plan.refresh_steps) if r and k > 0]
    condition = plan.num_condition_tokens if plan.use_cache else 0
    return paper_gflops(arch, plan.num_steps, plan.factors, plan.use_cache, refresh,
                        plan.sequence_length, plan.guidance_steps, condition)


def exact_pass_gflops(arch, num_processed, num_attended, num_logits, factor):
    """Multiply-adds of one transformer pass of sub-model `factor`, in GFLOPs."""
    d, m = arch.hidden_size, arch.mlp_dim
    width = d // factor  # H heads x dh/p features
    per_layer = (4 * num_processed * d * width            # Q, K, V, output projections
                 + 2 * num_processed * num_attended * width  # scores and weighted values
                 + 2 * num_processed * d * (m // factor))  # MLP
    head = num_logits * (d * d + d * arch.codebook_size)
    return (arch.num_layers * per_layer + head) / 1e9


def exact_gflops(arch, plan: DecodePlan):
    """Per-step GFLOPs our decoder executes for `plan` (both CFG branches)."""
    per_step = []
    uncond = plan.uncond_num_processed()
    for k in range(plan.num_steps):
        flops = _branch_gflops(arch, plan, plan.num_processed[k], k)
        if uncond[k]:
            flops += _branch_gflops(arch, plan, uncond[k], k)
        per_step.append(flops)
    return per_step


def _branch_gflops(arch, plan, processed, step):
    # The head runs only on the M_k tokens still masked at the input of the step: the
    # decoder keeps them as the last M_k processed rows (decoding/decoder.py).
    return exact_pass_gflops(arch, processed, plan.sequence_length, plan.masked_in[step],
                             plan.factors[step])


def uncached_baseline_plan(plan: DecodePlan, factor=1):
    """MaskGIT++ counterpart of `plan`: same K, masking and guidance; factor p every
    step; no cache."""
    from magnets_tf.decoding.schedule import make_plan
    return make_plan(
        plan.num_tokens, plan.num_steps, ((factor, plan.num_steps),),
        num_condition_tokens=plan.num_condition_tokens, mask_schedule=plan.mask_schedule,
        use_cache=False, guidance_scale=plan.guidance_scale,
        guidance_steps=plan.guidance_steps, guidance_lambda=plan.guidance_lambda,
        uncond_input=plan.uncond_input, temperature_bias=plan.temperature_bias, temperature_scale=plan.temperature_scale,
        mask_temperature=plan.mask_temperature,
        available_factors=sorted({factor, *plan.factors}))


def nested_param_count(arch, factor, vocab_size, sequence_length):
    """Parameters sub-model `factor` uses (equals `MaskGitTransformer.num_params`)."""
    d, m = arch.hidden_size, arch.mlp_dim
    width, mlp = d // factor, m // factor
    attention = 3 * (d * width + width) + width * d + d
    mlp_params = d * mlp + mlp + mlp * d + d
    norms = 2 * 2 * d
    embeddings = vocab_size * d + sequence_length * d + 2 * d
    head = d * d + d + 2 * d + arch.codebook_size
    return arch.num_layers * (attention + mlp_params + norms) + embeddings + head
