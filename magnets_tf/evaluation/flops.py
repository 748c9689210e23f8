"""Inference GFLOPs of MaskGIT-style decoding, two ways.

`paper`: the formula of the paper's Appendix F (Table 10). It counts multiply-adds of
the transformer layers, keeps attention at full width for every sub-model, uses the
unfloored cosine counts and doubles every guided step. It reproduces Table 1.

`exact`: the multiply-adds our decoder executes for a `DecodePlan`: Q/K/V/O and MLP at
the sub-model's width, attention over every cached position at the sliced head dim, the
MLM head on the M_k tokens still masked at the input of step k (the only ones sampled),
and the unconditional branch's own passes (including its first full pass).
Both are in GFLOPs = 1e9 multiply-adds, as the paper.

`PAPER_ROWS` are the GFLOPs the paper publishes (Tables 1 and 2) with the settings that
give them; `paper_row_gflops` recomputes each with the `paper` model (tools/flops.py
prints them side by side).
"""
import dataclasses

from magnets_tf.decoding.schedule import (DEFAULT_MODEL_SCHEDULE, DecodePlan, make_plan,
                                          mask_ratio, parse_model_schedule)


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
    return make_plan(
        plan.num_tokens, plan.num_steps, ((factor, plan.num_steps),),
        num_condition_tokens=plan.num_condition_tokens, mask_schedule=plan.mask_schedule,
        use_cache=False, guidance_scale=plan.guidance_scale,
        guidance_steps=plan.guidance_steps, guidance_lambda=plan.guidance_lambda,
        uncond_input=plan.uncond_input, temperature_bias=plan.temperature_bias,
        temperature_scale=plan.temperature_scale, mask_temperature=plan.mask_temperature,
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


@dataclasses.dataclass(frozen=True)
class PaperRow:
    """A GFLOPs entry the paper publishes and the decode setting that it counts."""

    table: int
    name: str
    preset: str                 # architecture (MAGVIT-B = B, MAGVIT-L and ours = L)
    num_tokens: int             # grid tokens (video: 4x16x16 of 16x128x128 clips) + class
    num_condition_tokens: int   # frame prediction: 5 frames = 2 of 4 latent frames
    model_schedule: str
    use_cache: bool
    guidance_steps: int         # guided last steps (doubled in the count)
    published: str              # as printed in the paper
    published_gflops: float

    @property
    def num_steps(self):
        return sum(k for _, k in parse_model_schedule(self.model_schedule))

    def plan(self):
        return make_plan(self.num_tokens, self.num_steps, self.model_schedule,
                         num_condition_tokens=self.num_condition_tokens,
                         use_cache=self.use_cache, guidance_steps=self.guidance_steps,
                         guidance_scale=1.0 if self.guidance_steps else 0.0)


PAPER_ROWS = (
    PaperRow(1, "ImageNet MaskGIT++ g4", "L", 256, 0, "1:12", False, 4, "1.3k", 1300),
    PaperRow(1, "ImageNet MaGNeTS g4", "L", 256, 0, DEFAULT_MODEL_SCHEDULE, True, 4, "490",
             490),
    PaperRow(1, "ImageNet MaskGIT++ g6, 16 steps", "L", 256, 0, "1:16", False, 6, "1.8k",
             1800),
    PaperRow(1, "ImageNet MaGNeTS g6, 16 steps", "L", 256, 0, "8:4,4:4,2:4,1:4", True, 6,
             "608", 608),
    PaperRow(2, "UCF101 MAGVIT-B", "B", 1024, 0, "1:12", False, 0, "~1.3k", 1300),
    PaperRow(2, "UCF101 MAGVIT-L", "L", 1024, 0, "1:12", False, 0, "~4.3k", 4300),
    PaperRow(2, "UCF101 MaGNeTS", "L", 1024, 0, DEFAULT_MODEL_SCHEDULE, True, 0, "~1.7k", 1700),
    PaperRow(2, "K600 MAGVIT-B", "B", 1024, 512, "1:12", False, 0, "~1.3k", 1300),
    PaperRow(2, "K600 MAGVIT-L", "L", 1024, 512, "1:12", False, 0, "~4.3k", 4300),
    PaperRow(2, "K600 MAGVIT-L g2", "L", 1024, 512, "1:12", False, 2, "~5.1k", 5100),
    PaperRow(2, "K600 MaGNeTS", "L", 1024, 512, DEFAULT_MODEL_SCHEDULE, True, 0, "~1.2k", 1200),
    PaperRow(2, "K600 MaGNeTS g2", "L", 1024, 512, DEFAULT_MODEL_SCHEDULE, True, 2, "~1.4k",
             1400),
)


def paper_row_gflops(row: PaperRow, codebook_size=1024):
    """Total GFLOPs of `row`'s setting with the paper's formula (`paper_gflops_for_plan`)."""
    arch = ArchSpec.from_preset(row.preset, codebook_size)
    return sum(paper_gflops_for_plan(arch, row.plan()))
