"""Official-MaskGIT checkpoint import, checked against independent numpy forward passes.

The tests write flax-format msgpack files themselves (ext type 1 ndarrays, the official
module names and shapes) and compare our Keras models with numpy re-implementations
of the official flax code that read the parameter trees directly.
"""
import math

import msgpack
import numpy as np
import pytest

from magnets_tf.checkpoints import maskgit

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ flax msgpack writer
def _ext(arr):
    arr = np.ascontiguousarray(arr)
    return msgpack.ExtType(1, msgpack.packb((list(arr.shape), arr.dtype.name, arr.tobytes()),
                                            use_bin_type=True))


def pack_flax(tree):
    def default(obj):
        if isinstance(obj, np.ndarray):
            return _ext(obj)
        raise TypeError(type(obj))
    return msgpack.packb(tree, default=default, use_bin_type=True)


def _w(*shape, scale=0.2):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# ------------------------------------------------------------------ official tokenizer
FILTERS, MULTS, RES_BLOCKS, EMBED, CODES, CHANNELS = 32, (1, 2), 1, 4, 16, 3


def _gn(c):
    return {"scale": 1 + _w(c), "bias": _w(c)}


def _resblock(cin, cout):
    block = {"GroupNorm_0": _gn(cin), "Conv_0": {"kernel": _w(3, 3, cin, cout)},
             "GroupNorm_1": _gn(cout), "Conv_1": {"kernel": _w(3, 3, cout, cout)}}
    if cin != cout:
        block["Conv_2"] = {"kernel": _w(1, 1, cout, cout)}
    return block


def official_tokenizer_params():
    enc = {"Conv_0": {"kernel": _w(3, 3, CHANNELS, FILTERS)}}
    k, width = 0, FILTERS
    for mult in MULTS:
        for _ in range(RES_BLOCKS):
            enc[f"ResBlock_{k}"] = _resblock(width, FILTERS * mult)
            width, k = FILTERS * mult, k + 1
    for _ in range(RES_BLOCKS):
        enc[f"ResBlock_{k}"] = _resblock(width, width)
        k += 1
    enc["GroupNorm_0"] = _gn(width)
    enc["Conv_1"] = {"kernel": _w(1, 1, width, EMBED), "bias": _w(EMBED)}
    top = FILTERS * MULTS[-1]
    dec = {"Conv_0": {"kernel": _w(3, 3, EMBED, top), "bias": _w(top)}}
    k, width, conv = 0, top, 1
    for _ in range(RES_BLOCKS):
        dec[f"ResBlock_{k}"] = _resblock(width, width)
        k += 1
    for i in reversed(range(len(MULTS))):
        for _ in range(RES_BLOCKS):
            dec[f"ResBlock_{k}"] = _resblock(width, FILTERS * MULTS[i])
            width, k = FILTERS * MULTS[i], k + 1
        if i > 0:
            dec[f"Conv_{conv}"] = {"kernel": _w(3, 3, width, width), "bias": _w(width)}
            conv += 1
    dec["GroupNorm_0"] = _gn(width)
    dec[f"Conv_{conv}"] = {"kernel": _w(3, 3, width, CHANNELS), "bias": _w(CHANNELS)}
    return {"params": {"encoder": enc, "decoder": dec,
                       "quantizer": {"codebook": _w(CODES, EMBED, scale=1.0)}}}


def np_conv(x, p):
    kernel = p["kernel"]
    kh, kw = kernel.shape[:2]
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, [(0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)])
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,cd->bhwd", xp[:, i:i + h, j:j + w], kernel[i, j])
    return out + p.get("bias", 0.0)


def np_group_norm(x, p, groups=32, eps=1e-6):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    g = (g - mean) / np.sqrt(var + eps)
    return g.reshape(x.shape) * p["scale"] + p["bias"]


def swish(x):
    return x / (1 + np.exp(-x))


def np_resblock(x, p):
    """The official flax ResBlock, including the shortcut applied to the output."""
    h = np_conv(swish(np_group_norm(x, p["GroupNorm_0"])), p["Conv_0"])
    h = np_conv(swish(np_group_norm(h, p["GroupNorm_1"])), p["Conv_1"])
    residual = np_conv(h, p["Conv_2"]) if "Conv_2" in p else x
    return h + residual


def np_encoder(x, p):
    x = np_conv(x, p["Conv_0"])
    k = 0
    for i in range(len(MULTS)):
        for _ in range(RES_BLOCKS):
            x, k = np_resblock(x, p[f"ResBlock_{k}"]), k + 1
        if i < len(MULTS) - 1:
            b, h, w, c = x.shape
            x = x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    for _ in range(RES_BLOCKS):
        x, k = np_resblock(x, p[f"ResBlock_{k}"]), k + 1
    return np_conv(swish(np_group_norm(x, p["GroupNorm_0"])), p["Conv_1"])


def np_decoder(x, p):
    x = np_conv(x, p["Conv_0"])
    k, conv = 0, 1
    for _ in range(RES_BLOCKS):
        x, k = np_resblock(x, p[f"ResBlock_{k}"]), k + 1
    for i in reversed(range(len(MULTS))):
        for _ in range(RES_BLOCKS):
            x, k = np_resblock(x, p[f"ResBlock_{k}"]), k + 1
        if i > 0:
            x = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
            x, conv = np_conv(x, p[f"Conv_{conv}"]), conv + 1
    return np_conv(swish(np_group_norm(x, p["GroupNorm_0"])), p[f"Conv_{conv}"])


def test_tokenizer_checkpoint_matches_numpy_forward(tmp_path):
    tree = official_tokenizer_params()
    path = tmp_path / "tokenizer.msgpack"
    path.write_bytes(pack_flax(tree))
    model = maskgit.vqgan_from_checkpoint(str(path), image_size=8)
    assert model.grid_shape == (4, 4) and model.codebook_size == CODES
    assert model.channel_multipliers == MULTS and model.filters == FILTERS
    p = tree["params"]
    images = RNG.uniform(size=(2, 8, 8, CHANNELS)).astype(np.float32)
    latents = np_encoder(images.astype(np.float64), p["encoder"])
    np.testing.assert_allclose(model.encode_latents(images), latents, rtol=2e-4, atol=2e-4)
    codebook = p["quantizer"]["codebook"]
    distances = ((latents[..., None, :] - codebook) ** 2).sum(-1)
    tokens = model.encode(images).numpy()
    # Nearest code (ties within float32 rounding allowed).
    chosen = np.take_along_axis(distances, tokens[..., None], -1)[..., 0]
    np.testing.assert_allclose(chosen, distances.min(-1), rtol=1e-4, atol=1e-4)
    expected = np.clip(np_decoder(codebook[tokens].astype(np.float64), p["decoder"]), 0, 1)
    np.testing.assert_allclose(model.decode(tokens), expected, rtol=2e-4, atol=2e-4)


def test_tokenizer_shape_mismatch_is_named():
    tree = official_tokenizer_params()
    tree["params"]["decoder"]["Conv_0"]["bias"] = _w(7)
    with pytest.raises(maskgit.CheckpointError, match="decoder|Conv_0/bias"):
        maskgit.vqgan_from_checkpoint(tree, image_size=8)


# ------------------------------------------------------------------ official transformer
D, H, DH, MLP, LAYERS, CB, CLASSES, TOKENS = 16, 2, 8, 32, 2, 12, 5, 9


def _ln(d):
    return {"scale": 1 + _w(d), "bias": _w(d)}


def official_transformer_params():
    vocab = CB + CLASSES + 1
    tree = {"Embed_0": {"word_embeddings": {"embedding": _w(vocab, D)},
                        "position_embeddings": {"embedding": _w(TOKENS + 1, D)},
                        "embeddings_ln": _ln(D)}}
    for i in range(LAYERS):
        attn = {name: {"kernel": _w(D, H, DH), "bias": _w(H, DH)}
                for name in ("query", "key", "value")}
        attn["out"] = {"kernel": _w(H, DH, D), "bias": _w(D)}
        tree[f"TransformerLayer_{i}"] = {
            "Attention_0": {"self_attention": attn, "attention_output_ln": _ln(D)},
            "Mlp_0": {"intermediate_output": {"kernel": _w(D, MLP), "bias": _w(MLP)},
                      "layer_output": {"kernel": _w(MLP, D), "bias": _w(D)},
                      "layer_output_ln": _ln(D)}}
    tree["MlmLayer_0"] = {"mlm_dense": {"kernel": _w(D, D), "bias": _w(D)},
                          "mlm_ln": _ln(D), "mlm_bias": {"bias": _w(vocab)}}
    return {"params": tree}


def np_ln(x, p, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def np_bert(ids, p):
    """The official flax BERT (bidirectional_transformer.py) in numpy; ids may hold -1."""
    emb = p["Embed_0"]
    words = emb["word_embeddings"]["embedding"].astype(np.float64)
    x = words[ids] + emb["position_embeddings"]["embedding"][: ids.shape[1]]
    x = np_ln(x, emb["embeddings_ln"])
    for i in range(LAYERS):
        layer = p[f"TransformerLayer_{i}"]
        a = layer["Attention_0"]["self_attention"]
        q, k, v = (np.einsum("bsd,dhk->bshk", x, a[n]["kernel"]) + a[n]["bias"]
                   for n in ("query", "key", "value"))
        scores = np.einsum("bqhk,bthk->bhqt", q / math.sqrt(DH), k)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        ctx = np.einsum("bhqt,bthk->bqhk", probs, v)
        attn = np.einsum("bqhk,hkd->bqd", ctx, a["out"]["kernel"]) + a["out"]["bias"]
        x = np_ln(attn + x, layer["Attention_0"]["attention_output_ln"])
        m = layer["Mlp_0"]
        h = np_gelu(x @ m["intermediate_output"]["kernel"] + m["intermediate_output"]["bias"])
        h = h @ m["layer_output"]["kernel"] + m["layer_output"]["bias"]
        x = np_ln(h + x, m["layer_output_ln"])
    mlm = p["MlmLayer_0"]
    h = np_gelu(x @ mlm["mlm_dense"]["kernel"] + mlm["mlm_dense"]["bias"])
    h = np_ln(h, mlm["mlm_ln"])
    return h @ words.T + mlm["mlm_bias"]["bias"]


def test_transformer_checkpoint_matches_numpy_forward(tmp_path):
    tree = official_transformer_params()
    path = tmp_path / "maskgit.msgpack"
    path.write_bytes(pack_flax(tree))
    model = maskgit.transformer_from_checkpoint(str(path), codebook_size=CB, factors=(1, 2))
    assert (model.num_layers, model.hidden_size, model.num_heads, model.mlp_dim) == (
        LAYERS, D, H, MLP)
    assert model.num_classes == CLASSES and model.num_tokens == TOKENS
    labels = np.array([0, 4])
    grid = RNG.integers(0, CB, size=(2, TOKENS))
    grid[:, ::2] = -1  # Official mask id.
    official_ids = np.concatenate([labels[:, None] + CB, grid], 1)
    expected = np_bert(official_ids, tree["params"])[:, 1:, :CB]
    ours_grid = np.where(grid < 0, model.mask_token_id, grid)
    logits = model(model.input_ids(ours_grid, labels), factor=1)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_null_class_row_is_inserted_before_the_mask_row():
    tree = official_transformer_params()
    model = maskgit.transformer_from_checkpoint(tree, codebook_size=CB, factors=(1,))
    words = tree["params"]["Embed_0"]["word_embeddings"]["embedding"]
    ours = model.token_embedding.embeddings.numpy()
    assert ours.shape[0] == words.shape[0] + 1
    np.testing.assert_array_equal(ours[:CB + CLASSES], words[:CB + CLASSES])
    np.testing.assert_allclose(ours[model.null_class_id], words[CB:CB + CLASSES].mean(0),
                               rtol=1e-6)
    np.testing.assert_array_equal(ours[model.mask_token_id], words[-1])


def test_reader_handles_chunked_arrays_scalars_and_bfloat16():
    values = np.arange(6, dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact for small ints
    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 3},
               "chunks": {"0": values[:4], "1": values[4:]}}
    data = msgpack.packb(
        {"a": chunked, "b": msgpack.ExtType(3, msgpack.packb(([], "int32", np.int32(7).tobytes()))),
         "c": msgpack.ExtType(1, msgpack.packb(([2, 3], "bfloat16", bf16.tobytes())))},
        default=lambda o: _ext(o), use_bin_type=True)
    tree = maskgit.read_msgpack_bytes(data)
    np.testing.assert_array_equal(tree["a"], values.reshape(2, 3))
    assert tree["b"] == 7
    np.testing.assert_array_equal(tree["c"], values.reshape(2, 3))


def test_corrupt_and_wrong_checkpoints_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\xc1\x00garbage")
    with pytest.raises(maskgit.CheckpointError, match="bad.msgpack"):
        maskgit.read_checkpoint(str(bad))
    with pytest.raises(FileNotFoundError):
        maskgit.read_checkpoint(str(tmp_path / "missing.msgpack"))
    with pytest.raises(maskgit.CheckpointError, match="Embed_0"):
        maskgit.transformer_from_checkpoint(official_tokenizer_params())
    tree = official_transformer_params()
    del tree["params"]["TransformerLayer_1"]["Mlp_0"]["layer_output_ln"]
    with pytest.raises(maskgit.CheckpointError, match="TransformerLayer_1/Mlp_0/layer_output_ln"):
        maskgit.transformer_from_checkpoint(tree, codebook_size=CB, factors=(1,))
