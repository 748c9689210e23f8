"""Immutable decode plans: every per-step count of a MaGNeTS decode as a static Python int.

A plan fixes, for each of the K parallel-decoding steps, the nested factor p, how many
tokens are masked at its input/output, whether the K/V cache is refreshed, how many
positions the transformer processes, and whether classifier-free guidance runs.
The XLA decoder unrolls these steps; the `exact` GFLOPs model reads the same counts.
"""
import dataclasses
import math

import gin

# The paper's MaGNeTS schedule (Table 1): p=8, 4, 2, 1 for 3 of the 12 steps each.
DEFAULT_MODEL_SCHEDULE = "8:3,4:3,2:3,1:3"

MASK_SCHEDULES = {
    # Fraction of generated tokens still masked after a fraction t of the steps. `xp` is
    # the math namespace the schedule is written in: `math` for the static plan (Python
    # floats), `tf.math` for tensors (training draws t per example).
    "cosine": lambda t, xp=math: xp.cos(math.pi / 2 * t),
    "linear": lambda t, xp=math: 1.0 - t,
    "square": lambda t, xp=math: 1.0 - t * t,
    "arccos": lambda t, xp=math: xp.acos(t) / (math.pi / 2),
}
REFRESH_POLICIES = ("model_change", "every_step", "never")
LAMBDA_POLICIES = ("linear", "constant")
# What the unconditional branch of classifier-free guidance sees (docs/decoding.md):
# "null_class": the null class token, the given (condition) tokens as they are:
#   class-token guidance (images, class-conditional video, editing);
# "masked_condition": the null class token and mask tokens at the condition positions:
#   MAGVIT's unconditional input (its class token is always the "uncond" token);
# "masked_condition_keep_class": the class token as given, mask tokens at the condition
#   positions: guidance on the condition frames alone (class-conditional frame prediction);
# "auto": "masked_condition" for a plan with condition tokens, else "null_class"
#   (`editing_plan` asks for "null_class": edits keep class-token guidance).
UNCOND_INPUTS = ("auto", "null_class", "masked_condition", "masked_condition_keep_class")


def mask_ratio(mask_schedule, t, xp=math):
    """Fraction of generated tokens still masked at progress t in [0, 1] (one definition
    for decoding, training masks and the paper's GFLOPs formula)."""
    if mask_schedule not in MASK_SCHEDULES:
        raise ValueError(f"unknown mask_schedule {mask_schedule!r}; known: "
                         f"{sorted(MASK_SCHEDULES)}")
    return MASK_SCHEDULES[mask_schedule](t, xp)


def parse_model_schedule(text):
    """'p:k,...' text (DEFAULT_MODEL_SCHEDULE, say) -> ((p, k), ...); ValueError on bad syntax."""
    if not isinstance(text, str):
        return tuple((int(p), int(k)) for p, k in text)
    pairs = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        try:
            p, k = item.split(":")
            pairs.append((int(p), int(k)))
        except ValueError:
            raise ValueError(f"bad model schedule entry {item!r} in {text!r}: expected "
                             f"'factor:steps', e.g. {DEFAULT_MODEL_SCHEDULE!r}") from None
    if not pairs:
        raise ValueError(f"empty model schedule {text!r}")
    return tuple(pairs)


def format_model_schedule(schedule):
    """((8, 3), (4, 3), ...) or its text -> '8:3,4:3,...' (the inverse of the parser)."""
    return ",".join(f"{p}:{k}" for p, k in parse_model_schedule(schedule))


@dataclasses.dataclass(frozen=True)
class DecodePlan:
    """A fully static decode plan (build it with `make_plan`)."""

    num_tokens: int                 # grid tokens N (condition tokens included)
    num_condition_tokens: int       # leading grid tokens that are given, never masked
    num_steps: int                  # K
    mask_schedule: str
    model_schedule: tuple           # ((p, k), ...)
    use_cache: bool
    refresh: str
    guidance_scale: float
    guidance_steps: int             # G: guidance on the last G steps
    guidance_lambda: str
    uncond_input: str               # one of UNCOND_INPUTS but "auto" (resolved)
    temperature_bias: float
    temperature_scale: float
    mask_temperature: float
    # Derived per-step tuples (length K).
    factors: tuple
    masked_in: tuple                # M_k: generated tokens masked at the input of step k
    masked_out: tuple               # M_{k+1}
    refresh_steps: tuple            # bool: all positions processed at this step
    num_processed: tuple            # positions (class + grid) the transformer runs on
    guided: tuple                   # bool: classifier-free guidance at this step

    @property
    def num_generated(self):
        return self.num_tokens - self.num_condition_tokens

    @property
    def sequence_length(self):
        return 1 + self.num_tokens

    def temperature(self, step):
        """Sampling temperature of step k: bias + scale * (1 - (k+1)/K) (paper eq. 5).

        0 means greedy (argmax) sampling."""
        return self.temperature_bias + self.temperature_scale * (1 - (step + 1) / self.num_steps)

    def mask_noise(self, step):
        """Gumbel scale for choosing what stays masked: mtemp * (1 - (k+1)/K)."""
        return self.mask_temperature * (1 - (step + 1) / self.num_steps)

    @property
    def uncond_masks_condition(self):
        """True if the unconditional branch sees mask tokens at the condition positions."""
        return self.uncond_input != "null_class" and self.num_condition_tokens > 0

    @property
    def uncond_keeps_class(self):
        """True if the unconditional branch keeps the class token (else the null class)."""
        return self.uncond_input == "masked_condition_keep_class"

    def guidance_weight(self, step):
        """lambda * gs of eq. 4; lambda grows with the unmasked fraction ('linear')."""
        if not self.guided[step]:
            return 0.0
        if self.guidance_lambda == "constant":
            return self.guidance_scale
        unmasked = 1.0 - self.masked_in[step] / self.num_generated
        return self.guidance_scale * unmasked

    def uncond_refresh_steps(self):
        """Steps where the unconditional branch processes every position.

        Its cache is empty before its first guided step, so that step is a full pass
        even where the conditional branch reads its cache.
        """
        first = self.num_steps - self.guidance_steps
        return tuple(g and (r or k == first or not self.use_cache)
                     for k, (g, r) in enumerate(zip(self.guided, self.refresh_steps)))

    def uncond_num_processed(self):
        """Positions the unconditional branch processes per step (0 where unguided)."""
        return tuple(0 if not g else (self.sequence_length if r else n)
                     for g, r, n in zip(self.guided, self.uncond_refresh_steps(),
                                        self.num_processed))

    def describe(self):
        """One line per step, for logs and tools."""
        rows = ["step factor masked_in masked_out processed refresh guided"]
        for k in range(self.num_steps):
            rows.append(f"{k:4d} {self.factors[k]:6d} {self.masked_in[k]:9d} "
                        f"{self.masked_out[k]:10d} {self.num_processed[k]:9d} "
                        f"{int(self.refresh_steps[k]):7d} {int(self.guided[k]):6d}")
        return "\n".join(rows)


@gin.configurable
def make_plan(num_tokens, num_steps=12, model_schedule=DEFAULT_MODEL_SCHEDULE,
              num_condition_tokens=0, mask_schedule="cosine", use_cache=True,
              refresh="model_change", guidance_scale=0.0, guidance_steps=0,
              guidance_lambda="linear", uncond_input="auto", temperature_bias=0.5,
              temperature_scale=0.8, mask_temperature=5.0, available_factors=(1, 2, 4, 8)):
    """Validates a decode configuration and derives its static per-step counts."""
    num_tokens, num_steps = int(num_tokens), int(num_steps)
    num_condition_tokens = int(num_condition_tokens)
    if num_tokens <= 0:
        raise ValueError(f"num_tokens must be positive, got {num_tokens}")
    if not 0 <= num_condition_tokens < num_tokens:
        raise ValueError(f"num_condition_tokens={num_condition_tokens} must be in "
                         f"[0, num_tokens={num_tokens})")
    generated = num_tokens - num_condition_tokens
    if not 1 <= num_steps <= generated:
        raise ValueError(f"num_steps={num_steps} must be in [1, {generated}] (one token "
                         f"at least is unmasked per step)")
    mask_ratio(mask_schedule, 0.0)  # raises ValueError for an unknown schedule
    if refresh not in REFRESH_POLICIES:
        raise ValueError(f"unknown refresh policy {refresh!r}; known: {REFRESH_POLICIES}")
    if guidance_lambda not in LAMBDA_POLICIES:
        raise ValueError(f"unknown guidance_lambda {guidance_lambda!r}; known: {LAMBDA_POLICIES}")
    if uncond_input not in UNCOND_INPUTS:
        raise ValueError(f"unknown uncond_input {uncond_input!r}; known: {UNCOND_INPUTS}")
    if uncond_input == "auto":
        uncond_input = "masked_condition" if num_condition_tokens else "null_class"
    model_schedule = parse_model_schedule(model_schedule)
    available = tuple(int(f) for f in available_factors)
    for p, k in model_schedule:
        if p not in available:
            raise ValueError(f"model schedule factor {p} is not one of the model's "
                             f"factors {available}")
        if k < 0:
            raise ValueError(f"model schedule step count must be >= 0, got {p}:{k}")
    if sum(k for _, k in model_schedule) != num_steps:
        raise ValueError(f"model schedule {model_schedule} covers "
                         f"{sum(k for _, k in model_schedule)} steps, but num_steps={num_steps}")
    guidance_steps = int(guidance_steps)
    if not 0 <= guidance_steps <= num_steps:
        raise ValueError(f"guidance_steps={guidance_steps} must be in [0, num_steps={num_steps}]")
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if guidance_steps and guidance_scale == 0:
        guidance_steps = 0  # Guidance with zero weight is a no-op: skip its compute.
    if guidance_steps and uncond_input == "masked_condition_keep_class" \
            and not num_condition_tokens:
        raise ValueError("uncond_input='masked_condition_keep_class' needs condition tokens: "
                         "without them the unconditional input equals the conditional one")
    for name, value in dict(temperature_bias=temperature_bias,
                            temperature_scale=temperature_scale,
                            mask_temperature=mask_temperature).items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")

    factors = tuple(p for p, k in model_schedule for _ in range(k))
    masked_in, masked_out = [], []
    remaining = generated
    for k in range(num_steps):
        masked_in.append(remaining)
        if k == num_steps - 1:
            nxt = 0
        else:
            nxt = math.floor(generated * mask_ratio(mask_schedule, (k + 1) / num_steps))
            # At least one token is unmasked per step and one left for each later step.
            nxt = max(min(nxt, remaining - 1), num_steps - 1 - k)
        masked_out.append(nxt)
        remaining = nxt

    seq = 1 + num_tokens
    refresh_steps, processed = [], []
    for k in range(num_steps):
        full = (not use_cache or k == 0 or refresh == "every_step"
                or (refresh == "model_change" and factors[k] != factors[k - 1]))
        refresh_steps.append(full)
        processed.append(seq if full else masked_in[k - 1])
    guided = tuple(k >= num_steps - guidance_steps for k in range(num_steps))
    return DecodePlan(
        num_tokens=num_tokens, num_condition_tokens=num_condition_tokens, num_steps=num_steps,
        mask_schedule=mask_schedule, model_schedule=model_schedule, use_cache=bool(use_cache),
        refresh=refresh, guidance_scale=float(guidance_scale), guidance_steps=guidance_steps,
        guidance_lambda=guidance_lambda, uncond_input=uncond_input,
        temperature_bias=float(temperature_bias),
        temperature_scale=float(temperature_scale), mask_temperature=float(mask_temperature),
        factors=factors, masked_in=tuple(masked_in), masked_out=tuple(masked_out),
        refresh_steps=tuple(refresh_steps), num_processed=tuple(processed), guided=guided)
