"""A plain natural-order reference of the cached greedy decode, for tests only.

Written with tf ops straight from the model contract (sub-model p slices the first dh/p
features of every head and the first m/p MLP units; post-LN BERT blocks, LayerNorm eps
1e-12, tanh GELU, MLM head tied to the code embeddings), reading the model's variables.
It shares no code with the layers' forward pass nor with the decoder's ordering trick:
K/V buffers [B, 1+N, H, dh] stay in natural position order at full head width (zeros
where nothing was written) and fresh rows are scattered at the processed positions.
"""
import math

import tensorflow as tf

from magnets_tf.decoding import sampling


def _layer_norm(x, norm):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) / tf.sqrt(var + norm.epsilon) * norm.gamma + norm.beta


def _gelu(x):
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _scatter_rows(buffer, positions, rows):
    """buffer [B, T, ...] with rows [B, Q, ...] written at positions [B, Q]."""
    batch = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, None], tf.shape(positions))
    return tf.tensor_scatter_nd_update(buffer, tf.stack([batch, positions], -1), rows)


def forward(model, factor, ids, positions, buffers=None):
    """Hidden [B, Q, d] of tokens ids at positions [B, Q] through sub-model `factor`.

    buffers None: the tokens are the whole sequence. Otherwise per-layer (k, v)
    [B, 1+N, H, dh] holding every other position's keys/values. Returns the hidden
    states and the per-layer buffers with these tokens' keys/values written in."""
    width = model.head_dim // factor
    units = model.mlp_dim // factor
    x = (tf.gather(model.token_embedding.embeddings, ids)
         + tf.gather(model.position_embedding, positions))
    x = _layer_norm(x, model.embedding_norm)
    new_buffers = []
    for i, block in enumerate(model.blocks):
        att, mlp = block.attention, block.mlp
        q, k, v = (tf.einsum("bqd,dhw->bqhw", x, dense.kernel[..., :width])
                   + dense.bias[..., :width] for dense in (att.query, att.key, att.value))
        pad = [[0, 0], [0, 0], [0, 0], [0, model.head_dim - width]]
        if buffers is None:
            k_all, v_all = tf.pad(k, pad), tf.pad(v, pad)
        else:
            k_all = _scatter_rows(buffers[i][0], positions, tf.pad(k, pad))
            v_all = _scatter_rows(buffers[i][1], positions, tf.pad(v, pad))
        new_buffers.append((k_all, v_all))
        scores = tf.einsum("bqhw,bthw->bhqt", q, k_all[..., :width]) / math.sqrt(width)
        probs = tf.nn.softmax(scores, axis=-1)
        context = tf.einsum("bhqt,bthw->bqhw", probs, v_all[..., :width])
        attended = (tf.einsum("bqhw,hwd->bqd", context, att.output_dense.kernel[:, :width])
                    + att.output_dense.bias)
        x = _layer_norm(x + attended, block.attention_norm)
        hidden = _gelu(tf.einsum("bqd,dm->bqm", x, mlp.intermediate.kernel[:, :units])
                       + mlp.intermediate.bias[:units])
        out = (tf.einsum("bqm,md->bqd", hidden, mlp.output_dense.kernel[:units])
               + mlp.output_dense.bias)
        x = _layer_norm(x + out, block.mlp_norm)
    return x, new_buffers


def head(model, hidden):
    """MLM logits [B, Q, codebook] of hidden [B, Q, d]."""
    x = _gelu(tf.einsum("bqd,de->bqe", hidden, model.head_dense.kernel) + model.head_dense.bias)
    x = _layer_norm(x, model.head_norm)
    codes = model.token_embedding.embeddings[: model.codebook_size]
    return tf.einsum("bqd,vd->bqv", x, codes) + model.head_bias


def reference_decode(model, plan, class_ids, tokens, keep):
    """Greedy decode of `plan` (temperatures 0) in natural token order: grid [B, N].

    At a refresh step every position is processed; at a cached step exactly the
    positions that were masked at the previous step's input; the unconditional branch
    keeps its own buffers and refreshes at its first guided step. Its input, written
    out from `plan.uncond_input`: the null class (or the class, for
    'masked_condition_keep_class') and, unless 'null_class', the mask token wherever
    `keep` gives a token."""
    batch, n = tokens.shape
    mask = model.mask_token_id
    grid = tf.where(keep, tokens, mask)
    masked = tf.logical_not(keep)
    prev_masked, buffers = None, {"cond": None, "uncond": None}
    uncond_classes = (class_ids if plan.uncond_input == "masked_condition_keep_class"
                      else tf.fill([batch], model.null_class_id))
    hide_given = plan.uncond_input != "null_class"
    uncond_full = plan.uncond_refresh_steps()

    def branch(name, classes, full, k):
        shown = tf.where(keep, mask, grid) if name == "uncond" and hide_given else grid
        seq = model.input_ids(shown, classes)
        if full:
            positions = tf.tile(tf.range(n + 1)[None], [batch, 1])
            cache = None
        else:
            count = plan.masked_in[k - 1]
            positions = tf.argsort(tf.cast(tf.logical_not(prev_masked), tf.int32), axis=1,
                                   stable=True)[:, :count] + 1
            cache = buffers[name]
        hidden, buffers[name] = forward(model, plan.factors[k],
                                        tf.gather(seq, positions, batch_dims=1), positions,
                                        cache)
        logits = head(model, hidden)
        rows = tf.broadcast_to(tf.range(batch)[:, None], positions.shape)
        natural = tf.scatter_nd(tf.stack([rows, positions], -1), logits,
                                [batch, n + 1, model.codebook_size])
        return natural[:, 1:]

    for k in range(plan.num_steps):
        logits = branch("cond", class_ids, plan.refresh_steps[k], k)
        if plan.guided[k]:
            uncond = branch("uncond", uncond_classes, uncond_full[k], k)
            logits = sampling.guided_logits(logits, uncond, plan.guidance_weight(k))
        ids, log_p = sampling.sample_tokens(logits, 0.0, None)
        new_masked = sampling.still_masked(log_p, masked, plan.masked_out[k], 0.0, None)
        grid = tf.where(tf.logical_and(masked, tf.logical_not(new_masked)), ids, grid)
        prev_masked, masked = masked, new_masked
    return grid.numpy()
