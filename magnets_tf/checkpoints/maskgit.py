"""Imports official MaskGIT flax checkpoints (msgpack) without flax or jax.

Official checkpoints (google-research/maskgit) are `flax.serialization.to_bytes` of a
nested dict of arrays: msgpack maps whose array leaves are msgpack ext type 1
(payload: a msgpack triple (shape, dtype name, C-order bytes)), ext type 3 numpy
scalars (same payload), and arrays over 1 GiB split into
{"__msgpack_chunked_array__": True, "shape": {...}, "chunks": {...}}.

Parameter layout (flax auto-names modules per class: Conv_0, ResBlock_3, ...):
  tokenizer: encoder/{Conv_0, ResBlock_k, [Conv_1.. strided downsample], GroupNorm_0,
             Conv_last}, decoder/{Conv_0, ResBlock_k, Conv_1..Conv_{L-1} (upsample),
             GroupNorm_0, Conv_L}, quantizer/codebook [K, D]; each ResBlock
             GroupNorm_0, Conv_0, GroupNorm_1, Conv_1, [Conv_2 shortcut].
  transformer (BERT): Embed_0/{word_embeddings, position_embeddings, embeddings_ln},
             TransformerLayer_i/Attention_0/{self_attention/{query,key,value,out},
             attention_output_ln}, TransformerLayer_i/Mlp_0/{intermediate_output,
             layer_output, layer_output_ln}, MlmLayer_0/{mlm_dense, mlm_ln, mlm_bias}.
             Q/K/V kernels are DenseGeneral [d, H, dh] (bias [H, dh]), out [H, dh, d].
The official transformer vocabulary is codebook + classes + mask (mask id -1 wraps to
the last row); ours is codebook + classes + null class + mask. The importer inserts
the null-class row (initialised to the mean class embedding): classifier-free guidance
with an imported model needs fine-tuning with label dropout before it is meaningful.
"""
import re

import msgpack
import numpy as np

from magnets_tf.models.transformer import MaskGitTransformer
from magnets_tf.models.vqgan import VQGAN

_EXT_NDARRAY = 1
_EXT_COMPLEX = 2
_EXT_NPSCALAR = 3
_CHUNKED = "__msgpack_chunked_array__"


class CheckpointError(ValueError):
    """A checkpoint that is not a readable official MaskGIT checkpoint."""


def _ndarray_from_bytes(data):
    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    name = dtype_name.decode() if isinstance(dtype_name, bytes) else dtype_name
    if name == "bfloat16":  # numpy has no bfloat16: widen the upper 16 bits.
        raw = np.frombuffer(buffer, np.uint16).astype(np.uint32) << 16
        return raw.view(np.float32).reshape(shape)
    return np.frombuffer(buffer, dtype=np.dtype(name)).reshape(shape).copy()


def _ext_hook(code, data):
    if code == _EXT_NDARRAY:
        return _ndarray_from_bytes(data)
    if code == _EXT_NPSCALAR:
        return _ndarray_from_bytes(data)[()]
    if code == _EXT_COMPLEX:
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    return msgpack.ExtType(code, data)


def _unchunk(tree):
    if isinstance(tree, dict):
        if tree.get(_CHUNKED):
            shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
            return np.concatenate(chunks).reshape(shape)
        return {k: _unchunk(v) for k, v in tree.items()}
    return tree


def read_msgpack_bytes(data):
    """Nested dict of numpy arrays from flax msgpack bytes."""
    try:
        tree = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types on corrupt input.
        raise CheckpointError(f"not a flax msgpack checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict):
        raise CheckpointError(f"flax checkpoint must hold a dict, got {type(tree).__name__}")
    return _unchunk(tree)


def read_checkpoint(path):
    """Nested dict of numpy arrays from a flax msgpack checkpoint file."""
    import tensorflow as tf  # gfile reads local paths and gs:// alike.

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        return read_msgpack_bytes(data)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def find_params(tree, required):
    """The sub-dict holding all `required` keys: the tree itself, or under
    "params" / "target" / "ema_params" (flax TrainState and Optimizer layouts)."""
    queue = [tree]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            if all(k in node for k in required):
                return node
            queue.extend(node[k] for k in ("params", "target", "ema_params") if k in node)
    raise CheckpointError(f"checkpoint has no parameter tree with keys {sorted(required)}; "
                          f"top-level keys: {sorted(tree)[:10]}")


def _get(tree, path):
    node = tree
    for key in path.split("/"):
        if not isinstance(node, dict) or key not in node:
            raise CheckpointError(f"checkpoint is missing parameter {path!r}")
        node = node[key]
    return np.asarray(node, np.float32)


def _indexed(tree, prefix):
    """Sorted indices of children named prefix_<i>."""
    pattern = re.compile(rf"^{prefix}_(\d+)$")
    return sorted(int(m.group(1)) for k in tree for m in [pattern.match(k)] if m)


def _assign(variable, value, name):
    value = np.asarray(value, np.float32)
    if tuple(variable.shape) != value.shape:
        raise CheckpointError(f"{name}: checkpoint shape {value.shape} does not match the "
                              f"model's {tuple(variable.shape)}")
    variable.assign(value)


# Tokenizer.
def vqgan_config_from_params(params, image_size=256):
    """VQGAN constructor kwargs inferred from an official tokenizer parameter tree."""
    params = find_params(params, ("encoder", "decoder", "quantizer"))
    enc, dec = params["encoder"], params["decoder"]
    codebook = _get(params, "quantizer/codebook")
    filters = _get(enc, "Conv_0/kernel").shape[-1]
    channels = _get(enc, "Conv_0/kernel").shape[-2]
    levels = len(_indexed(dec, "Conv")) - 1
    num_blocks = len(_indexed(enc, "ResBlock"))
    if levels < 1 or num_blocks % (levels + 1):
        raise CheckpointError(f"unexpected tokenizer layout: {num_blocks} encoder ResBlocks, "
                              f"{levels + 1} decoder convs")
    res_blocks = num_blocks // (levels + 1)
    multipliers = []
    for i in range(levels):
        width = _get(enc, f"ResBlock_{i * res_blocks}/Conv_0/kernel").shape[-1]
        multipliers.append(int(width // filters))
    conv_downsample = len(_indexed(enc, "Conv")) > 2
    return dict(image_shape=(image_size, image_size, int(channels)), filters=int(filters),
                channel_multipliers=tuple(multipliers), num_res_blocks=int(res_blocks),
                embedding_dim=int(codebook.shape[1]), codebook_size=int(codebook.shape[0]),
                conv_downsample=bool(conv_downsample))


def _load_norm(layer, tree, path):
    _assign(layer.gamma, _get(tree, path + "/scale"), path + "/scale")
    _assign(layer.beta, _get(tree, path + "/bias"), path + "/bias")


def _node(tree, path):
    node = tree
    for key in path.split("/"):
        if not isinstance(node, dict) or key not in node:
            raise CheckpointError(f"checkpoint is missing module {path!r}")
        node = node[key]
    return node


def _load_conv(layer, tree, path):
    _assign(layer.kernel, _get(tree, path + "/kernel"), path + "/kernel")
    if layer.use_bias:
        _assign(layer.bias, _get(tree, path + "/bias"), path + "/bias")
    elif "bias" in _node(tree, path):
        raise CheckpointError(f"{path} has a bias the model does not expect")


def _load_resblock(block, tree, path):
    _load_norm(block.norm0, tree, path + "/GroupNorm_0")
    _load_conv(block.conv0, tree, path + "/Conv_0")
    _load_norm(block.norm1, tree, path + "/GroupNorm_1")
    _load_conv(block.conv1, tree, path + "/Conv_1")
    has_shortcut = "Conv_2" in _node(tree, path)
    if (block.shortcut is not None) != has_shortcut:
        raise CheckpointError(f"{path}: shortcut conv presence does not match the model")
    if block.shortcut is not None:
        _load_conv(block.shortcut, tree, path + "/Conv_2")


def load_vqgan_params(model, params):
    """Copies an official tokenizer parameter tree into a built `VQGAN`."""
    params = find_params(params, ("encoder", "decoder", "quantizer"))
    if not model.built:
        model.build()
    enc, dec = params["encoder"], params["decoder"]
    encoder, decoder = model.encoder, model.decoder
    _load_conv(encoder.conv_in, enc, "Conv_0")
    block_id, conv_id = 0, 1
    for blocks, down in encoder.levels:
        for block in blocks:
            _load_resblock(block, enc, f"ResBlock_{block_id}")
            block_id += 1
        if down is not None:
            _load_conv(down, enc, f"Conv_{conv_id}")
            conv_id += 1
    for block in encoder.mid_blocks:
        _load_resblock(block, enc, f"ResBlock_{block_id}")
        block_id += 1
    if block_id != len(_indexed(enc, "ResBlock")):
        raise CheckpointError(f"encoder has {len(_indexed(enc, 'ResBlock'))} ResBlocks, the "
                              f"model {block_id}")
    _load_norm(encoder.norm_out, enc, "GroupNorm_0")
    _load_conv(encoder.conv_out, enc, f"Conv_{conv_id}")

    _load_conv(decoder.conv_in, dec, "Conv_0")
    block_id, conv_id = 0, 1
    for block in decoder.mid_blocks:
        _load_resblock(block, dec, f"ResBlock_{block_id}")
        block_id += 1
    for blocks, up in decoder.levels:
        for block in blocks:
            _load_resblock(block, dec, f"ResBlock_{block_id}")
            block_id += 1
        if up is not None:
            _load_conv(up, dec, f"Conv_{conv_id}")
            conv_id += 1
    if block_id != len(_indexed(dec, "ResBlock")):
        raise CheckpointError(f"decoder has {len(_indexed(dec, 'ResBlock'))} ResBlocks, the "
                              f"model {block_id}")
    _load_norm(decoder.norm_out, dec, "GroupNorm_0")
    _load_conv(decoder.conv_out, dec, f"Conv_{conv_id}")
    _assign(model.quantizer.codebook, _get(params, "quantizer/codebook"), "quantizer/codebook")
    return model


def vqgan_from_checkpoint(path_or_params, image_size=256, **overrides):
    """A built VQGAN holding an official tokenizer checkpoint (file path or tree)."""
    params = (read_checkpoint(path_or_params) if isinstance(path_or_params, str)
              else path_or_params)
    config = vqgan_config_from_params(params, image_size)
    config.update(overrides)
    model = VQGAN(name="maskgit_vqgan", **config)
    model.build()
    return load_vqgan_params(model, params)


# Transformer.
_BERT_KEYS = ("Embed_0", "MlmLayer_0")


def transformer_config_from_params(params, codebook_size=1024):
    """MaskGitTransformer kwargs inferred from an official BERT parameter tree.

    The official vocabulary is codebook + classes + 1 mask, so classes are inferred
    from the word-embedding rows; num_tokens = position embeddings - 1.
    """
    params = find_params(params, _BERT_KEYS)
    if "embedding_hidden_mapping" in params["Embed_0"]:
        raise CheckpointError("checkpoints with an embedding_hidden_mapping (factorised "
                              "embeddings) are not supported")
    words = _get(params, "Embed_0/word_embeddings/embedding")
    positions = _get(params, "Embed_0/position_embeddings/embedding")
    num_classes = words.shape[0] - int(codebook_size) - 1
    if num_classes < 0:
        raise CheckpointError(f"word embeddings have {words.shape[0]} rows, fewer than "
                              f"codebook_size={codebook_size} + 1 mask")
    layers = _indexed(params, "TransformerLayer")
    if layers != list(range(len(layers))) or not layers:
        raise CheckpointError(f"transformer layers are not TransformerLayer_0..N: {layers}")
    query = _get(params, "TransformerLayer_0/Attention_0/self_attention/query/kernel")
    mlp = _get(params, "TransformerLayer_0/Mlp_0/intermediate_output/kernel")
    return dict(num_layers=len(layers), hidden_size=int(words.shape[1]),
                num_heads=int(query.shape[1]), head_dim=int(query.shape[2]),
                mlp_dim=int(mlp.shape[1]), codebook_size=int(codebook_size),
                num_classes=int(num_classes), num_tokens=int(positions.shape[0]) - 1)


def official_to_our_embeddings(words, codebook_size, num_classes):
    """[codes | classes | mask] rows -> [codes | classes | null | mask] rows.

    The null-class row (for classifier-free guidance) does not exist officially; it
    starts as the mean of the class embeddings and must be fine-tuned.
    """
    n = codebook_size + num_classes
    if words.shape[0] != n + 1:
        raise CheckpointError(f"expected {n + 1} word embeddings (codes + classes + mask), "
                              f"got {words.shape[0]}")
    classes = words[codebook_size:n]
    null = classes.mean(axis=0, keepdims=True) if num_classes else np.zeros_like(words[:1])
    return np.concatenate([words[:n], null, words[n:]], axis=0)


def load_transformer_params(model, params):
    """Copies an official BERT parameter tree into a built `MaskGitTransformer`."""
    params = find_params(params, _BERT_KEYS)
    if not model.built:
        model.build()
    words = _get(params, "Embed_0/word_embeddings/embedding")
    _assign(model.token_embedding.embeddings,
            official_to_our_embeddings(words, model.codebook_size, model.num_classes),
            "Embed_0/word_embeddings/embedding")
    positions = _get(params, "Embed_0/position_embeddings/embedding")
    if positions.shape[0] < model.sequence_length:
        raise CheckpointError(f"checkpoint has {positions.shape[0]} positions, the model "
                              f"needs {model.sequence_length}")
    _assign(model.position_embedding, positions[: model.sequence_length],
            "Embed_0/position_embeddings/embedding")
    _load_norm(model.embedding_norm, params, "Embed_0/embeddings_ln")
    if len(_indexed(params, "TransformerLayer")) != model.num_layers:
        raise CheckpointError(f"checkpoint has {len(_indexed(params, 'TransformerLayer'))} "
                              f"layers, the model {model.num_layers}")
    for i, block in enumerate(model.blocks):
        prefix = f"TransformerLayer_{i}"
        attn = f"{prefix}/Attention_0/self_attention"
        for layer, name in ((block.attention.query, "query"), (block.attention.key, "key"),
                            (block.attention.value, "value"),
                            (block.attention.output_dense, "out")):
            _assign(layer.kernel, _get(params, f"{attn}/{name}/kernel"), f"{attn}/{name}/kernel")
            _assign(layer.bias, _get(params, f"{attn}/{name}/bias"), f"{attn}/{name}/bias")
        _load_norm(block.attention_norm, params, f"{prefix}/Attention_0/attention_output_ln")
        for layer, name in ((block.mlp.intermediate, "intermediate_output"),
                            (block.mlp.output_dense, "layer_output")):
            path = f"{prefix}/Mlp_0/{name}"
            _assign(layer.kernel, _get(params, path + "/kernel"), path + "/kernel")
            _assign(layer.bias, _get(params, path + "/bias"), path + "/bias")
        _load_norm(block.mlp_norm, params, f"{prefix}/Mlp_0/layer_output_ln")
    _load_conv_dense(model.head_dense, params, "MlmLayer_0/mlm_dense")
    _load_norm(model.head_norm, params, "MlmLayer_0/mlm_ln")
    bias = _get(params, "MlmLayer_0/mlm_bias/bias")
    _assign(model.head_bias, bias[: model.codebook_size], "MlmLayer_0/mlm_bias/bias")
    return model


def _load_conv_dense(layer, tree, path):
    _assign(layer.kernel, _get(tree, path + "/kernel"), path + "/kernel")
    _assign(layer.bias, _get(tree, path + "/bias"), path + "/bias")


def transformer_from_checkpoint(path_or_params, codebook_size=1024, factors=(1, 2, 4, 8),
                                dropout=0.1, attention_dropout=0.1):
    """A built MaskGitTransformer holding an official transformer checkpoint."""
    params = (read_checkpoint(path_or_params) if isinstance(path_or_params, str)
              else path_or_params)
    config = transformer_config_from_params(params, codebook_size)
    model = MaskGitTransformer(factors=factors, dropout=dropout,
                               attention_dropout=attention_dropout, name="maskgit_official",
                               **config)
    model.build()
    return load_transformer_params(model, params)
