"""Reads PyTorch zip checkpoints (torch.save and TorchScript archives) without torch.

Both formats are a zip holding `<prefix>/data.pkl` (a pickle whose tensors point, by
persistent id, at raw little-endian storages `<prefix>/data/<key>`). A restricted
unpickler turns tensors into numpy arrays and TorchScript modules into `TorchModule`
records (class name + attributes); any other global is refused, so loading a file
never runs code from it.
"""
import collections
import pickle
import zipfile

import numpy as np

# Storage classes of the legacy typed API that torch still writes into pickles.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchModule:
    """A TorchScript module from the pickle: `type_name` plus its attributes."""

    def __init__(self, type_name):
        self.type_name = type_name
        self.attributes = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(
                f"unexpected state {type(state).__name__} for module {self.type_name}")
        self.attributes.update(state)

    @property
    def class_name(self):
        """'__torch__.inceptionv3.___torch_mangle_2.Conv2dLayer' -> 'Conv2dLayer'."""
        return self.type_name.rsplit(".", 1)[-1]

    def children(self):
        """Sub-modules in definition order (the pickle keeps attribute order)."""
        return [(k, v) for k, v in self.attributes.items() if isinstance(v, TorchModule)]

    def __getitem__(self, name):
        return self.attributes[name]

    def __repr__(self):
        return f"TorchModule({self.type_name}, {list(self.attributes)})"


class _StorageType:
    def __init__(self, name):
        if name not in STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type torch.{name}")
        self.dtype = np.dtype(STORAGE_DTYPES[name]).newbyteorder("<")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """numpy counterpart of torch._utils._rebuild_tensor_v2 (a copy, C-contiguous)."""
    del requires_grad, backward_hooks, metadata
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not size:
        return storage[offset].copy()
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset
    if all(size) and last >= storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size} stride {stride} offset {offset} overruns its storage "
            f"of {storage.size} elements")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride),
        writeable=False)
    return np.ascontiguousarray(view).astype(storage.dtype.newbyteorder("="), copy=False)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    return data


def _build_list(values):
    return list(values)


_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.jit._pickle", "build_intlist"): _build_list,
    ("torch.jit._pickle", "build_doublelist"): _build_list,
    ("torch.jit._pickle", "build_boollist"): _build_list,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module.startswith("__torch__"):
            type_name = f"{module}.{name}"
            return type(name, (TorchModule,), {"__new__": lambda cls: _new_module(type_name)})
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: not a tensor, storage or "
            f"TorchScript module")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"bad storage type in persistent id {pid!r}")
        if key not in self._storages:
            name = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(name)
            except KeyError:
                raise pickle.UnpicklingError(f"storage {name} is missing from the archive") from None
            array = np.frombuffer(raw, dtype=storage_type.dtype)
            if array.size < numel:
                raise pickle.UnpicklingError(
                    f"storage {name} holds {array.size} elements, the pickle expects {numel}")
            self._storages[key] = array
        return self._storages[key]


def _new_module(type_name):
    return TorchModule(type_name)


def _pickle_prefix(archive, pickle_name):
    names = [n for n in archive.namelist()
             if n == pickle_name or n.endswith("/" + pickle_name)]
    # The top-level pickle sits one folder deep; nested copies (if any) are deeper.
    names.sort(key=lambda n: n.count("/"))
    if not names:
        raise ValueError(f"no {pickle_name} in the archive: not a PyTorch zip checkpoint")
    return names[0][: -len(pickle_name)]


def load(path, pickle_name="data.pkl"):
    """Loads the object tree of a PyTorch zip checkpoint with numpy arrays for tensors.

    A TorchScript archive yields its root `TorchModule`; a torch.save'd state dict
    yields an OrderedDict of arrays.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, FileNotFoundError, IsADirectoryError) as e:
        raise ValueError(f"cannot open PyTorch checkpoint {path}: {e}") from None
    with archive:
        prefix = _pickle_prefix(archive, pickle_name)
        with archive.open(prefix + pickle_name) as f:
            return _Unpickler(f, archive, prefix).load()


def named_tensors(obj, prefix=""):
    """Flattens a loaded tree to {'a.b.weight': array} (modules, dicts and lists)."""
    out = collections.OrderedDict()
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
        return out
    if isinstance(obj, TorchModule):
        items = obj.attributes.items()
    elif isinstance(obj, dict):
        items = obj.items()
    else:
        return out
    for key, value in items:
        out.update(named_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
