import numpy as np
import pytest
import tensorflow as tf

from magnets_tf.models.presets import build_transformer
from magnets_tf.models.transformer import MaskGitTransformer

CODES, CLASSES, TOKENS = 32, 5, 16


def _model(**kwargs):
    kwargs = dict(dict(codebook_size=CODES, num_classes=CLASSES, num_tokens=TOKENS,
                       dropout=0.0, attention_dropout=0.0), **kwargs)
    return build_transformer("tiny", **kwargs)


def _slice_by_contract(path, value, p):
    """docs/design.md "Nesting", written independently of the layers' own slicing."""
    if path.endswith(("query/kernel", "key/kernel", "value/kernel", "query/bias", "key/bias",
                      "value/bias")):
        return value[..., : value.shape[-1] // p]
    if path.endswith("attention/output/kernel"):
        return value[:, : value.shape[1] // p, :]
    if path.endswith("mlp/intermediate/kernel"):
        return value[:, : value.shape[1] // p]
    if path.endswith("mlp/intermediate/bias"):
        return value[: value.shape[0] // p]
    if path.endswith("mlp/output/kernel"):
        return value[: value.shape[0] // p]
    return value


def _tokens(model, batch=3, seed=0):
    rng = np.random.RandomState(seed)
    grid = rng.randint(0, CODES, size=(batch, TOKENS))
    grid[rng.rand(batch, TOKENS) < 0.5] = model.mask_token_id
    labels = rng.randint(0, CLASSES, size=batch)
    return model.input_ids(tf.constant(grid), tf.constant(labels))


@pytest.mark.parametrize("p", [1, 2, 4, 8])
def test_submodel_equals_standalone_model_with_sliced_weights(p):
    model = _model()
    standalone = MaskGitTransformer(
        num_layers=model.num_layers, hidden_size=model.hidden_size, num_heads=model.num_heads,
        head_dim=model.head_dim // p, mlp_dim=model.mlp_dim // p, codebook_size=CODES,
        num_classes=CLASSES, num_tokens=TOKENS, factors=(1,), dropout=0.0,
        attention_dropout=0.0, name="standalone")
    standalone.build()
    full = {v.path.split("/", 1)[1]: v.numpy() for v in model.weights}
    for var in standalone.weights:
        key = var.path.split("/", 1)[1]
        var.assign(_slice_by_contract(key, full[key], p))
    ids = _tokens(model)
    np.testing.assert_allclose(model(ids, factor=p).numpy(), standalone(ids).numpy(), atol=2e-5)
    assert standalone.num_params() == model.num_params(p)


def test_submodels_differ_and_share_weights():
    model = _model()
    ids = _tokens(model)
    outs = [model(ids, factor=p).numpy() for p in (1, 2, 4, 8)]
    for a, b in zip(outs, outs[1:]):
        assert not np.allclose(a, b)
    assert len(model.trainable_weights) == len(_model().trainable_weights)


def test_parameter_counts_fall_near_linearly():
    model = build_transformer("S", codebook_size=1024, num_classes=1000, num_tokens=256)
    shared = model.num_params(1) - 12 * (4 * 384 * 384 + 2 * 384 * 1536)
    counts = [model.num_params(p) for p in (1, 2, 4, 8)]
    for p, n in zip((1, 2, 4, 8), counts):
        nested = n - shared
        assert abs(nested - 12 * (4 * 384 * 384 + 2 * 384 * 1536) / p) < 12 * 4000
    assert counts[0] > 1.8 * counts[1] > 1.8 * 1.6 * counts[2]
    assert 21e6 < counts[0] < 23e6  # the paper's S has 22M parameters


@pytest.mark.parametrize("p", [1, 2])
def test_cached_call_on_a_suffix_equals_the_full_call(p):
    model = _model()
    ids = _tokens(model)
    # Any order of the positions (here reversed for one row, shuffled for another):
    # the decoder holds its sequences permuted so that processed tokens are a suffix.
    rng = np.random.RandomState(3)
    order = tf.constant(np.stack([np.arange(TOKENS + 1), np.arange(TOKENS + 1)[::-1],
                                  rng.permutation(TOKENS + 1)]), tf.int32)
    ordered = tf.gather(ids, order, batch_dims=1)
    weights = model.fused_weights(p)
    hidden, caches = model.call_with_cache(ordered, weights, positions=order)
    # Permuting the tokens permutes the hidden states: equal to the plain call's rows.
    natural, _ = model.call_with_cache(ids, weights)
    np.testing.assert_allclose(hidden.numpy(), tf.gather(natural, order, batch_dims=1).numpy(),
                               atol=2e-5)
    # Last 5 rows processed again against buffers holding garbage in those rows.
    q = 5
    keep_row = tf.range(TOKENS + 1)[None, None, :, None] < TOKENS + 1 - q
    buffers = [(tf.where(keep_row, k, tf.random.normal(k.shape)),
                tf.where(keep_row, v, tf.random.normal(v.shape))) for k, v in caches]
    sub_hidden, new_caches = model.call_with_cache(ordered[:, -q:], weights,
                                                   positions=order[:, -q:], kv_caches=buffers)
    np.testing.assert_allclose(sub_hidden.numpy(), hidden[:, -q:].numpy(), atol=2e-5)
    for (k, v), (k2, v2) in zip(caches, new_caches):
        np.testing.assert_allclose(k2.numpy(), k.numpy(), atol=2e-5)
        np.testing.assert_allclose(v2.numpy(), v.numpy(), atol=2e-5)
    # The MLM head on selected rows equals the call's logits of those grid tokens.
    np.testing.assert_allclose(model.logits(natural[:, 1:]).numpy(),
                               model(ids, factor=p).numpy(), atol=1e-6)
    np.testing.assert_allclose(model.logits(natural[:, 3:7]).numpy(),
                               model(ids, factor=p)[:, 2:6].numpy(), atol=2e-5)


def test_fused_weights_are_per_block_and_per_factor():
    model = _model()
    weights = model.fused_weights(4)
    assert len(weights) == model.num_layers
    width = model.head_dim // 4
    for block, w in zip(model.blocks, weights):
        assert w.attention.width == width
        assert w.attention.qkv_kernel.shape == (model.hidden_size, 3 * model.num_heads * width)
        np.testing.assert_array_equal(w.mlp.in_kernel.numpy(),
                                      block.mlp.intermediate.kernel.numpy()[:, :model.mlp_dim // 4])


def test_vocabulary_layout():
    model = _model()
    assert model.vocab_size == CODES + CLASSES + 2
    assert model.null_class_id == CODES + CLASSES
    assert model.mask_token_id == CODES + CLASSES + 1
    ids = model.class_token_ids(tf.constant([0, 4, model.null_class_id]))
    np.testing.assert_array_equal(ids.numpy(), [CODES, CODES + 4, CODES + CLASSES])
    assert model(_tokens(model)).shape == (3, TOKENS, CODES)


def test_dropout_only_in_training():
    model = _model(dropout=0.3)
    ids = _tokens(model)
    assert np.allclose(model(ids).numpy(), model(ids).numpy())
    assert not np.allclose(model(ids).numpy(), model(ids, training=True).numpy())


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="num_condition_tokens=16"):
        _model(num_condition_tokens=16)
    with pytest.raises(ValueError, match="codebook_size must be a positive int"):
        _model(codebook_size=0)
    with pytest.raises(ValueError, match="factor 3 does not divide"):
        _model(factors=(1, 3))
    model = _model()
    with pytest.raises(ValueError, match="length 1\\+num_tokens=17"):
        model(tf.zeros([2, 10], tf.int32))
    with pytest.raises(ValueError, match="not one of the configured factors"):
        model(_tokens(model), factor=16)
    with pytest.raises(ValueError, match="one per layer"):
        model.call_with_cache(_tokens(model), model.fused_weights(1),
                              positions=tf.zeros([3, 17], tf.int32), kv_caches=[])
    with pytest.raises(ValueError, match="fused_weights"):
        model.call_with_cache(_tokens(model), model.fused_weights(1)[:1])
    with pytest.raises(ValueError, match="needs positions"):
        model.call_with_cache(_tokens(model), model.fused_weights(1),
                              kv_caches=[None] * model.num_layers)
    with pytest.raises(ValueError, match="not one of the configured factors"):
        model.fused_weights(3)


def test_config_round_trip_and_weights_transfer():
    model = _model(num_condition_tokens=4, factors=(1, 2))
    clone = MaskGitTransformer.from_config(model.get_config())
    clone.build()
    clone.set_weights(model.get_weights())
    ids = _tokens(model)
    np.testing.assert_allclose(clone(ids, factor=2).numpy(), model(ids, factor=2).numpy())
    assert clone.get_config() == model.get_config()


def test_mixed_bfloat16_policy_reaches_every_layer_and_keeps_float32_where_needed():
    tf.keras.utils.set_random_seed(0)
    mixed = _model(dtype="mixed_bfloat16")
    tf.keras.utils.set_random_seed(0)
    full = _model()
    assert {layer.dtype_policy.name for layer in mixed._flatten_layers()} == {"mixed_bfloat16"}
    assert {w.dtype for w in mixed.weights} == {"float32"}
    ids = tf.constant(np.random.default_rng(0).integers(0, CODES, (2, TOKENS + 1)), tf.int32)
    for p in (1, 4):
        logits = mixed(ids, factor=p)
        assert logits.dtype == tf.float32  # softmax / losses get float32
        reference = full(ids, factor=p).numpy()
        error = np.abs(logits.numpy() - reference).max()
        assert 0 < error < 0.05 * np.abs(reference).max(), error
    # The policy is part of the config, so a saved model decodes as it was trained.
    assert mixed.get_config()["dtype"] == "mixed_bfloat16"
    assert MaskGitTransformer.from_config(mixed.get_config()).compute_dtype == "bfloat16"
    assert full.get_config()["dtype"] == "float32"


def test_with_compute_dtype_copies_weights_both_ways():
    from magnets_tf.models.transformer import with_compute_dtype
    model = _model()
    assert with_compute_dtype(model, None) is model
    assert with_compute_dtype(model, "float32") is model
    bf16 = with_compute_dtype(model, "bfloat16")
    assert bf16.compute_dtype == "bfloat16" and bf16 is not model
    for a, b in zip(model.weights, bf16.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    back = with_compute_dtype(bf16, "float32")
    assert back.compute_dtype == "float32"
    ids = tf.zeros([1, TOKENS + 1], tf.int32)
    np.testing.assert_array_equal(back(ids).numpy(), model(ids).numpy())
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        with_compute_dtype(model, "int8")


def test_fused_weights_in_a_compute_dtype_run_the_cached_pass_in_it():
    model = _model()
    ids = tf.constant(np.random.default_rng(1).integers(0, CODES, (2, TOKENS + 1)), tf.int32)
    full_hidden, full_kv = model.call_with_cache(ids, model.fused_weights(2))
    hidden, kv = model.call_with_cache(ids, model.fused_weights(2, dtype="bfloat16"))
    assert hidden.dtype == tf.bfloat16 and kv[0][0].dtype == tf.bfloat16  # K/V buffers too
    assert model.logits(hidden).dtype == tf.float32
    np.testing.assert_allclose(tf.cast(hidden, tf.float32).numpy(), full_hidden.numpy(),
                               atol=0.1)
    # float32 weights are returned as they are: the float32 pass is unchanged.
    assert model.fused_weights(1, dtype="float32")[0].mlp.in_kernel is not None
    same, _ = model.call_with_cache(ids, model.fused_weights(2, dtype="float32"))
    np.testing.assert_array_equal(same.numpy(), full_hidden.numpy())
