"""XLA-compiled MaGNeTS decoding: model schedule, fixed-shape K/V cache, guided last steps.

One `tf.function` per (model, plan, batch) runs the K steps of a `DecodePlan` unrolled in
Python, so every step has static shapes. This module is the loop only (ordering, plan
steps, guidance branches, sampling, counters): every transformer pass is the model's own
`call_with_cache` on its `fused_weights(p)` (built once per factor and decode), and the
MLM head its `logits`.

Ordering trick (no scatter). Attention has no notion of key order (positions enter as
embeddings), so the decoder keeps every sequence in a per-example permutation `order`
[B, 1+N] of the positions, arranged so that the tokens processed at a cached step are a
contiguous *suffix*: the class token and given tokens first, then tokens in the order
they were unmasked, and the still-masked tokens last. The positions masked at the input
of step k-1 (the M_{k-1} queries of step k) are then `order[:, -M_{k-1}:]`, their
fresh K/V replace the buffer's last M_{k-1} rows (a static slice), the M_k tokens still
masked (the only ones that need logits) are the last M_k rows of the pass, and step k
reorders only its last M_k rows. Cached rows therefore never move.

K/V buffers are [B, H, 1+N, dh/p] per layer (the sub-model's width; a refresh rebuilds
them at the new width). The unconditional CFG branch keeps its own buffers and does a
full pass at its first guided step; at guided steps where both branches process the same
positions, they run as one pass over a 2B batch (its second half is the unconditional
branch, reading and writing only its own buffers). Its input (`DecodePlan.uncond_input`):
the null class token, and for frame prediction (MAGVIT) mask tokens at the condition
positions, so it sees no condition token and caches no K/V computed from one; the
generated tokens are the conditional branch's.

Precision: the passes run in the decoder's compute dtype (float32 or bfloat16: weights,
embeddings and K/V buffers in it), while the model returns float32 logits, so that
guidance, sampling and confidence ranking are float32.
"""
import numpy as np
import tensorflow as tf

from magnets_tf.decoding import sampling
from magnets_tf.decoding.schedule import DecodePlan, make_plan
from magnets_tf.models.transformer import COMPUTE_DTYPE_POLICIES

class Decoder:
    """MaGNeTS / MaskGIT parallel decoder for one (model, plan, batch size).

    `generate(class_ids, seed)` -> int32 [B, N] grid tokens (row-major);
    `edit(tokens, keep_mask, class_ids, seed)` regenerates the tokens where `keep_mask`
    is False (inpainting, outpainting, class editing) and keeps the others.
    `jit_compile=False` runs the same graph without XLA, for debugging.
    compute_dtype: dtype of the transformer passes (fused weights cast once per decode,
    embeddings, K/V buffers); None: the model's compute dtype (float32 unless it was
    built with a mixed policy). LayerNorm statistics, softmax, logits, guidance,
    sampling and confidence ranking stay float32 in every case.
    """

    def __init__(self, model, plan: DecodePlan, batch_size, jit_compile=True,
                 record_steps=False, compute_dtype=None):
        if not isinstance(plan, DecodePlan):
            raise TypeError(f"plan must be a DecodePlan (see make_plan), got {type(plan)}")
        if plan.num_tokens != model.num_tokens:
            raise ValueError(f"plan has num_tokens={plan.num_tokens} but the model was built "
                             f"for {model.num_tokens} grid tokens")
        unknown = sorted(set(plan.factors) - set(model.factors))
        if unknown:
            raise ValueError(f"plan uses factors {unknown} the model does not have "
                             f"(model factors {model.factors})")
        if int(batch_size) <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not model.built:
            model.build()
        self.model = model
        self.plan = plan
        self.batch_size = int(batch_size)
        self.jit_compile = bool(jit_compile)
        self.record_steps = bool(record_steps)
        self.compute_dtype = decode_dtype(model, compute_dtype)
        self.trace_log = []  # static pass shapes seen while tracing, for inspection
        self._compiled = {}

    def decode_function(self, with_stats=False):
        """The compiled decode (tokens, keep, class_ids, seed) -> (tokens [B, N], stats).

        Per-step counters cost a little every step, so they are computed only by the
        `with_stats=True` function (stats is {} otherwise); each is traced on first use."""
        with_stats = bool(with_stats or self.record_steps)
        if with_stats not in self._compiled:
            b, n = self.batch_size, self.plan.num_tokens
            self._compiled[with_stats] = tf.function(
                lambda tokens, keep, class_ids, seed: self._decode(
                    tokens, keep, class_ids, seed, with_stats),
                jit_compile=self.jit_compile, input_signature=[
                    tf.TensorSpec([b, n], tf.int32), tf.TensorSpec([b, n], tf.bool),
                    tf.TensorSpec([b], tf.int32), tf.TensorSpec([2], tf.int32)])
        return self._compiled[with_stats]

    # Public entry points.
    def generate(self, class_ids, seed, condition_tokens=None):
        """Class-conditional generation; the plan's leading condition tokens are given."""
        return self._generate(class_ids, seed, condition_tokens, with_stats=False)[0]

    def generate_with_stats(self, class_ids, seed, condition_tokens=None):
        """(tokens [B, N], per-step stats dict) of a class-conditional decode."""
        return self._generate(class_ids, seed, condition_tokens, with_stats=True)

    def _generate(self, class_ids, seed, condition_tokens, with_stats):
        b, n, c = self.batch_size, self.plan.num_tokens, self.plan.num_condition_tokens
        tokens = np.zeros([b, n], np.int32)
        keep = np.zeros([b, n], bool)
        if c:
            if condition_tokens is None:
                raise ValueError(f"the plan has {c} condition tokens: pass condition_tokens "
                                 f"[{b}, {c}]")
            condition_tokens = np.asarray(condition_tokens, np.int32)
            if condition_tokens.shape != (b, c):
                raise ValueError(f"condition_tokens must have shape {(b, c)}, got "
                                 f"{condition_tokens.shape}")
            tokens[:, :c] = condition_tokens
            keep[:, :c] = True
        elif condition_tokens is not None:
            raise ValueError("condition_tokens given but the plan has num_condition_tokens=0")
        return self._run(tokens, keep, class_ids, seed, with_stats)

    def edit(self, tokens, keep_mask, class_ids, seed):
        """Regenerates tokens where keep_mask is False; kept tokens are returned unchanged.

        Every row of keep_mask [B, N] must keep exactly plan.num_condition_tokens tokens
        (build the plan with `editing_plan`)."""
        return self._edit(tokens, keep_mask, class_ids, seed, with_stats=False)[0]

    def edit_with_stats(self, tokens, keep_mask, class_ids, seed):
        """(tokens [B, N], per-step stats dict) of `edit`."""
        return self._edit(tokens, keep_mask, class_ids, seed, with_stats=True)

    def _edit(self, tokens, keep_mask, class_ids, seed, with_stats):
        b, n = self.batch_size, self.plan.num_tokens
        tokens = np.asarray(tokens, np.int32).reshape(b, -1)
        keep_mask = np.asarray(keep_mask, bool).reshape(b, -1)
        if tokens.shape != (b, n) or keep_mask.shape != (b, n):
            raise ValueError(f"tokens and keep_mask must hold {b} x {n} grid tokens, got "
                             f"{tokens.shape} and {keep_mask.shape}")
        kept = keep_mask.sum(axis=1)
        if np.any(kept != self.plan.num_condition_tokens):
            raise ValueError(f"keep_mask keeps {sorted(set(kept.tolist()))} tokens per row, but "
                             f"the plan was made for num_condition_tokens="
                             f"{self.plan.num_condition_tokens} (use editing_plan)")
        if np.any(tokens[keep_mask] < 0) or np.any(tokens[keep_mask] >= self.model.codebook_size):
            raise ValueError(f"kept tokens must be codes in [0, {self.model.codebook_size})")
        return self._run(tokens, keep_mask, class_ids, seed, with_stats)

    def _run(self, tokens, keep, class_ids, seed, with_stats):
        class_ids = np.asarray(class_ids, np.int32).reshape(-1)
        if class_ids.shape != (self.batch_size,):
            raise ValueError(f"class_ids must hold batch_size={self.batch_size} labels, got "
                             f"shape {class_ids.shape}")
        valid = (class_ids >= 0) & (class_ids < self.model.num_classes)
        valid |= class_ids == self.model.null_class_id
        if not np.all(valid):
            raise ValueError(f"class ids must be in [0, {self.model.num_classes}) or the null "
                             f"class {self.model.null_class_id}, got {class_ids[~valid]}")
        seed = np.asarray(seed, np.int32).reshape(-1)
        if seed.shape != (2,):
            raise ValueError(f"seed must be an int32 pair [2], got shape {seed.shape}")
        fn = self.decode_function(with_stats)
        out, stats = fn(tf.constant(tokens), tf.constant(keep), tf.constant(class_ids),
                        tf.constant(seed))
        return out.numpy(), {k: v.numpy() for k, v in stats.items()}

    # The compiled decode.
    def _decode(self, tokens, keep, class_ids, seed, with_stats):
        model, plan = self.model, self.plan
        b, t = self.batch_size, plan.sequence_length
        mask_id = model.mask_token_id
        self.trace_log = []
        fused = {}  # factor -> model.fused_weights(factor), built at its first step

        # Initial order: class token, kept tokens, masked tokens (stable within groups).
        grid_order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), axis=1, stable=True)
        order = tf.concat([tf.zeros([b, 1], tf.int32), grid_order + 1], axis=1)
        grid = tf.where(keep, tokens, mask_id)
        seq = tf.gather(model.input_ids(grid, class_ids), order, batch_dims=1)
        uncond_head = self._uncond_head(class_ids)

        caches = {"cond": None, "uncond": None}
        stats = {name: [] for name in ("processed", "processed_were_masked",
                                       "distinct_processed", "logit_positions",
                                       "uncond_processed", "step_factor")}
        steps = []
        uncond_full = plan.uncond_refresh_steps()
        prev_masked_positions = None
        for k in range(plan.num_steps):
            factor = plan.factors[k]
            if factor not in fused:
                fused[factor] = model.fused_weights(factor, dtype=self.compute_dtype)
            sub = fused[factor]
            m_in, m_out = plan.masked_in[k], plan.masked_out[k]
            queries = t if plan.refresh_steps[k] else plan.masked_in[k - 1]
            ids_q, pos_q = seq[:, t - queries:], order[:, t - queries:]
            refresh = bool(plan.refresh_steps[k])
            uncond_queries = 0
            if plan.guided[k]:
                uncond_queries = t if uncond_full[k] else queries
                u_ids = seq[:, t - uncond_queries:]
                if uncond_queries == t:
                    # Its own class token (and mask tokens at the condition positions):
                    # never a condition token, and its cache holds only K/V of its input.
                    u_ids = tf.concat([uncond_head, seq[:, uncond_head.shape[1]:]], axis=1)
            if plan.guided[k] and bool(uncond_full[k]) == refresh:
                # Both branches read (or both rebuild) a cache of the same shape: one pass
                # over a 2B batch, better matmul efficiency for the small late steps.
                cache = None if refresh else [
                    (tf.concat([ck, uk], 0), tf.concat([cv, uv], 0))
                    for (ck, cv), (uk, uv) in zip(caches["cond"], caches["uncond"])]
                both, joint_cache = model.call_with_cache(
                    tf.concat([ids_q, u_ids], 0), sub, tf.concat([pos_q, pos_q], 0), cache)
                both_logits = model.logits(both[:, queries - m_in:])
                caches["cond"] = [(ck[:b], cv[:b]) for ck, cv in joint_cache]
                caches["uncond"] = [(ck[b:], cv[b:]) for ck, cv in joint_cache]
                logits = sampling.guided_logits(both_logits[:b], both_logits[b:],
                                                plan.guidance_weight(k))
                self.trace_log.append(("cond", k, factor, queries, t, m_in))
                self.trace_log.append(("uncond", k, factor, uncond_queries, t, m_in))
            else:
                hidden, caches["cond"] = model.call_with_cache(
                    ids_q, sub, pos_q, None if refresh else caches["cond"])
                logits = model.logits(hidden[:, queries - m_in:])
                self.trace_log.append(("cond", k, factor, queries, t, m_in))
                if plan.guided[k]:
                    u_hidden, caches["uncond"] = model.call_with_cache(
                        u_ids, sub, order[:, t - uncond_queries:],
                        None if uncond_full[k] else caches["uncond"])
                    u_logits = model.logits(u_hidden[:, uncond_queries - m_in:])
                    logits = sampling.guided_logits(logits, u_logits,
                                                    plan.guidance_weight(k))
                    self.trace_log.append(("uncond", k, factor, uncond_queries, t, m_in))

            # Counters of what this step actually ran (checked against the plan in tests).
            if with_stats:
                prev_masked_positions = self._count_step(
                    stats, seq, order, ids_q, pos_q, logits, uncond_queries, factor,
                    prev_masked_positions)

            # Sample every masked token; keep the m_out least confident masked.
            sample_seed, mask_seed = sampling.step_seeds(seed, k)
            sampled, log_p = sampling.sample_tokens(logits, plan.temperature(k), sample_seed)
            if m_out:
                rank = sampling.confidence_ranking(log_p, plan.mask_noise(k), mask_seed)
                sampled = tf.gather(sampled, rank, batch_dims=1)
                suffix_order = tf.gather(order[:, t - m_in:], rank, batch_dims=1)
                new_suffix = tf.concat([sampled[:, :m_in - m_out],
                                        tf.fill([b, m_out], mask_id)], axis=1)
                order = tf.concat([order[:, :t - m_in], suffix_order], axis=1)
            else:
                new_suffix = sampled
            seq = tf.concat([seq[:, :t - m_in], new_suffix], axis=1)
            if self.record_steps:
                steps.append(self._to_grid(seq, order))

        out = {name: tf.stack(values) for name, values in stats.items() if values}
        if self.record_steps:
            out["tokens_per_step"] = tf.stack(steps)
        return self._to_grid(seq, order), out

    def _uncond_head(self, class_ids):
        """Ids [B, 1+C'] replacing the first rows of the unconditional branch's sequence.

        Row 0 is the class token: the null class, or the class itself for
        uncond_input='masked_condition_keep_class'. With a plan whose unconditional input
        masks the condition (frame prediction, MAGVIT), rows 1..C (where the ordering keeps
        the C given tokens) are mask tokens; otherwise C' = 0. Later rows, the generated
        tokens, are shared with the conditional branch."""
        model, plan, b = self.model, self.plan, self.batch_size
        if plan.uncond_keeps_class:
            head = model.class_token_ids(class_ids)[:, None]
        else:
            head = tf.fill([b, 1], model.null_class_id)
        if plan.uncond_masks_condition:
            head = tf.concat([head, tf.fill([b, plan.num_condition_tokens],
                                            model.mask_token_id)], axis=1)
        return head

    def _count_step(self, stats, seq, order, ids_q, pos_q, logits, uncond_queries, factor,
                    prev_masked_positions):
        """Appends what one step ran to `stats`; returns the step's masked positions."""
        t, mask_id = self.plan.sequence_length, self.model.mask_token_id
        stats["processed"].append(tf.shape(ids_q)[1])
        stats["uncond_processed"].append(tf.constant(uncond_queries, tf.int32))
        stats["logit_positions"].append(tf.shape(logits)[1])
        stats["step_factor"].append(tf.constant(factor, tf.int32))
        seen = tf.reduce_max(tf.one_hot(pos_q, t, dtype=tf.int32), axis=1)  # [B, T]
        stats["distinct_processed"].append(tf.reduce_min(tf.reduce_sum(seen, axis=1)))
        if prev_masked_positions is None:
            stats["processed_were_masked"].append(tf.constant(-1, tf.int32))
        else:
            hits = tf.reduce_sum(seen * prev_masked_positions, axis=1)
            stats["processed_were_masked"].append(tf.reduce_min(hits))
        is_masked = tf.cast(tf.equal(seq, mask_id), tf.int32)  # [B, T] in order
        prev_masked_positions = tf.reduce_max(
            tf.one_hot(order, t, dtype=tf.int32) * is_masked[:, :, None], axis=1)
        return prev_masked_positions

    def _to_grid(self, seq, order):
        """Natural row-major grid tokens [B, N] from a sequence held in `order`."""
        inverse = tf.argsort(order, axis=1)
        return tf.gather(seq, inverse[:, 1:], batch_dims=1)

def decode_dtype(model, compute_dtype=None):
    """The tf dtype a decode of `model` computes in: `compute_dtype`, else the model's."""
    try:
        name = tf.as_dtype(compute_dtype or model.compute_dtype).name
    except TypeError:
        name = compute_dtype
    if name not in COMPUTE_DTYPE_POLICIES:
        raise ValueError(f"compute_dtype must be one of {sorted(COMPUTE_DTYPE_POLICIES)}, got "
                         f"{name!r}")
    return tf.as_dtype(name)


def editing_plan(keep_mask, **plan_kwargs):
    """`make_plan` for editing: num_tokens and num_condition_tokens from keep_mask.

    keep_mask: bool [N] or [B, N] with the same number of kept tokens in every row.
    Guidance stays class-token guidance (uncond_input='null_class') unless plan_kwargs
    say otherwise: the kept tokens are the picture being edited, not a condition to drop."""
    plan_kwargs.setdefault("uncond_input", "null_class")
    keep_mask = np.asarray(keep_mask, bool)
    keep_mask = keep_mask.reshape(-1, keep_mask.shape[-1])
    kept = set(keep_mask.sum(axis=1).tolist())
    if len(kept) != 1:
        raise ValueError(f"every row of keep_mask must keep the same number of tokens, got "
                         f"{sorted(kept)}")
    return make_plan(keep_mask.shape[1], num_condition_tokens=kept.pop(), **plan_kwargs)


def box_keep_mask(grid_shape, top, left, height, width, keep_inside=False):
    """bool [h*w] keep mask of a box on the token grid: inpainting regenerates the box
    (keep_inside=False), outpainting regenerates everything around it (keep_inside=True)."""
    h, w = grid_shape
    if not (0 <= top < top + height <= h and 0 <= left < left + width <= w):
        raise ValueError(f"box top={top} left={left} height={height} width={width} does not "
                         f"fit the {h}x{w} token grid")
    inside = np.zeros([h, w], bool)
    inside[top:top + height, left:left + width] = True
    return (inside if keep_inside else ~inside).reshape(-1)
