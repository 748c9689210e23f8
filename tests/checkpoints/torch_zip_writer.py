"""Writes small PyTorch-style zip checkpoints without torch, for reader tests.

The pickle is emitted opcode by opcode (protocol 2) exactly as torch lays it out:
modules as GLOBAL + NEWOBJ + BUILD(dict), tensors as REDUCE of
torch._utils._rebuild_tensor_v2 over a BINPERSID ('storage', torch.FloatStorage, key,
'cpu', numel), raw little-endian storages under `<prefix>/data/<key>`.
"""
import struct
import zipfile

import numpy as np

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.int64): "LongStorage", np.dtype(np.float16): "HalfStorage"}


class Module:
    """A TorchScript module to write: `type_name` like '__torch__.inceptionv3 Conv2dLayer'."""

    def __init__(self, type_name, **attributes):
        self.type_name = type_name
        self.attributes = attributes


class Tensor:
    """A view into a shared storage (key) with explicit offset, size and stride."""

    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


class IntList(list):
    """Written as torch.jit._pickle.build_intlist([...]) like TorchScript int lists."""


class Raw:
    """A GLOBAL with no arguments, for negative tests (e.g. ('os', 'system'))."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class _Writer:
    def __init__(self, storages):
        self.out = bytearray(b"\x80\x02")
        self.storages = storages

    def global_(self, module, name):
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def write(self, obj):
        out = self.out
        if obj is None:
            out += b"N"
        elif obj is True:
            out += b"\x88"
        elif obj is False:
            out += b"\x89"
        elif isinstance(obj, int):
            out += b"J" + struct.pack("<i", obj)
        elif isinstance(obj, float):
            out += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, str):
            data = obj.encode()
            out += b"X" + struct.pack("<I", len(data)) + data
        elif isinstance(obj, IntList):
            self.global_("torch.jit._pickle", "build_intlist")
            out += b"("
            self.write(list(obj))
            out += b"tR"
        elif isinstance(obj, list):
            out += b"]("
            for item in obj:
                self.write(item)
            out += b"e"
        elif isinstance(obj, tuple):
            out += b"("
            for item in obj:
                self.write(item)
            out += b"t"
        elif isinstance(obj, Module):
            module, name = obj.type_name.split(" ")
            self.global_(module, name)
            out += b")\x81"
            self._dict(obj.attributes)
            out += b"b"
        elif isinstance(obj, dict):
            self.global_("collections", "OrderedDict")
            out += b")R"
            for key, value in obj.items():
                self.write(key)
                self.write(value)
                out += b"s"
        elif isinstance(obj, Tensor):
            array = self.storages[obj.key]
            self.global_("torch._utils", "_rebuild_tensor_v2")
            out += b"(("
            self.write("storage")
            self.global_("torch", _STORAGE_NAMES[array.dtype])
            self.write(obj.key)
            self.write("cpu")
            self.write(int(array.size))
            out += b"tQ"
            self.write(obj.offset)
            self.write(obj.size)
            self.write(obj.stride)
            out += b"\x89"
            self.global_("collections", "OrderedDict")
            out += b")Rt" + b"R"
        elif isinstance(obj, Raw):
            self.global_(obj.module, obj.name)
        else:
            raise TypeError(f"cannot write {type(obj)}")

    def _dict(self, mapping):
        self.out += b"}("
        for key, value in mapping.items():
            self.write(key)
            self.write(value)
        self.out += b"u"


def write_checkpoint(path, root, storages, prefix="archive", extra_files=None):
    """Writes `root` (Module/dict tree) and `storages` {key: 1-D array} as a torch zip."""
    writer = _Writer(storages)
    writer.write(root)
    writer.out += b"."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", bytes(writer.out))
        archive.writestr(f"{prefix}/version", "3\n")
        if isinstance(root, Module):  # TorchScript archives carry a constants table
            archive.writestr(f"{prefix}/constants.pkl", b"\x80\x02).")
        for key, array in storages.items():
            archive.writestr(f"{prefix}/data/{key}", np.ascontiguousarray(array).astype(
                array.dtype.newbyteorder("<")).tobytes())
        for name, data in (extra_files or {}).items():
            archive.writestr(f"{prefix}/{name}", data)
    return path


def tensor(storages, array):
    """Stores `array` contiguously under a new key and returns its Tensor view."""
    array = np.asarray(array)
    key = str(len(storages))
    storages[key] = array.ravel().copy()
    stride = [int(np.prod(array.shape[i + 1:])) for i in range(array.ndim)]
    return Tensor(key, 0, array.shape, stride)
