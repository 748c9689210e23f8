"""Tests for the torch-free PyTorch zip reader on checkpoints written opcode by opcode."""
import pickle

import numpy as np
import pytest

from magnets_tf.checkpoints import torch_zip
from tests.checkpoints import torch_zip_writer as tw


def _conv_module(storages, rng, out=4, inp=3, k=3, padding=1, type_name=None):
    return tw.Module(
        type_name or "__torch__.inceptionv3 Conv2dLayer",
        weight=tw.tensor(storages, rng.normal(size=(out, inp, k, k)).astype(np.float32)),
        beta=tw.tensor(storages, rng.normal(size=out).astype(np.float32)),
        training=False, _is_full_backward_hook=None, stride=1, padding=padding)


def test_reads_torchscript_module_tree(tmp_path):
    rng = np.random.default_rng(0)
    storages = {}
    conv = _conv_module(storages, rng)
    mixed = _conv_module(storages, rng, padding=tw.IntList([0, 3]),
                         type_name="__torch__.inceptionv3.___torch_mangle_2 Conv2dLayer")
    seq = tw.Module("__torch__.torch.nn.modules.container Sequential", training=False,
                    conv=conv, conv_1=mixed)
    root = tw.Module("__torch__.wrap_net WrapNet", training=True, net=seq)
    path = tw.write_checkpoint(tmp_path / "m.pt", root, storages, prefix="out_jit_module")

    loaded = torch_zip.load(path)
    assert loaded.class_name == "WrapNet"
    assert [name for name, _ in loaded["net"].children()] == ["conv", "conv_1"]
    got = loaded["net"]["conv_1"]
    assert got.class_name == "Conv2dLayer"
    assert got.type_name == "__torch__.inceptionv3.___torch_mangle_2.Conv2dLayer"
    assert got["padding"] == [0, 3] and got["stride"] == 1
    np.testing.assert_array_equal(loaded["net"]["conv"]["weight"],
                                  storages["0"].reshape(4, 3, 3, 3))
    tensors = torch_zip.named_tensors(loaded)
    assert list(tensors) == ["net.conv.weight", "net.conv.beta",
                             "net.conv_1.weight", "net.conv_1.beta"]
    assert tensors["net.conv_1.beta"].dtype == np.float32


def test_strided_views_of_a_shared_storage(tmp_path):
    base = np.arange(24, dtype=np.float64)
    storages = {"s": base}
    state = {
        "full": tw.Tensor("s", 0, (2, 3, 4), (12, 4, 1)),
        "transposed": tw.Tensor("s", 0, (4, 6), (1, 4)),
        "offset_row": tw.Tensor("s", 12, (3, 4), (4, 1)),
        "scalar": tw.Tensor("s", 5, (), ()),
    }
    loaded = torch_zip.load(tw.write_checkpoint(tmp_path / "sd.pth", state, storages))
    assert isinstance(loaded, dict)
    np.testing.assert_array_equal(loaded["full"], base.reshape(2, 3, 4))
    np.testing.assert_array_equal(loaded["transposed"], base.reshape(6, 4).T)
    np.testing.assert_array_equal(loaded["offset_row"], base[12:].reshape(3, 4))
    assert float(loaded["scalar"]) == 5.0
    assert loaded["transposed"].flags["C_CONTIGUOUS"]


def test_refuses_arbitrary_globals(tmp_path):
    path = tw.write_checkpoint(tmp_path / "evil.pt", {"x": tw.Raw("os", "system")}, {})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global os.system"):
        torch_zip.load(path)


def test_missing_storage_and_overrun_are_named(tmp_path):
    storages = {"0": np.zeros(4, np.float32)}
    path = tw.write_checkpoint(tmp_path / "a.pt", {"w": tw.Tensor("0", 0, (4,), (1,))}, storages)
    import zipfile
    broken = tmp_path / "broken.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("data/0"):
                dst.writestr(item, src.read(item))
    with pytest.raises(pickle.UnpicklingError, match="archive/data/0 is missing"):
        torch_zip.load(broken)
    overrun = tw.write_checkpoint(tmp_path / "o.pt", {"w": tw.Tensor("0", 2, (4,), (1,))}, storages)
    with pytest.raises(pickle.UnpicklingError, match="overruns"):
        torch_zip.load(overrun)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot open PyTorch checkpoint"):
        torch_zip.load(tmp_path / "x.pt")
