"""Read a state dict saved with torch's legacy (pre-1.6, non-zip) serialization into numpy arrays, without torch.

Layout of such a file: four pickles (magic number, protocol version, system info, the object whose tensors refer
to storages by persistent id), a fifth pickle listing the storage keys in write order, then for each key an int64
element count followed by the raw little-endian bytes.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class LegacyCheckpointError(ValueError):
    """The file is not a torch legacy checkpoint this reader understands."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return _STORAGE_DTYPES[self.name]


@dataclass(frozen=True, slots=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    numel: int


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Resolves only the handful of globals a plain state dict needs; anything else is refused (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise LegacyCheckpointError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise LegacyCheckpointError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise LegacyCheckpointError(f"unexpected storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise LegacyCheckpointError("storage views are not supported")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _read_storages(fh: IO[bytes], keys: list[str], refs: dict[str, _StorageRef]) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = {}
    for key in keys:
        header = fh.read(8)
        if len(header) != 8:
            raise LegacyCheckpointError(f"truncated file at storage {key}")
        (numel,) = struct.unpack("<q", header)
        ref = refs.get(key)
        dtype = ref.dtype if ref is not None else np.dtype("u1")
        raw = fh.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise LegacyCheckpointError(f"truncated file at storage {key}")
        data[key] = np.frombuffer(raw, dtype=dtype)
    return data


def _materialise(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[ref.storage.key]
    item = flat.dtype.itemsize
    if ref.shape and ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride, strict=True)) >= flat.size:
        raise LegacyCheckpointError("tensor reaches past its storage")
    # Strides matter: these weights were converted from TensorFlow and several are stored in HWIO order.
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :], shape=ref.shape, strides=tuple(s * item for s in ref.stride), writeable=False
    )
    # np.array, not ascontiguousarray: the latter turns 0-d tensors (num_batches_tracked) into 1-d.
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C", copy=True)


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Return {parameter name: contiguous numpy array} from a legacy-format `.pth` state dict."""
    with path.open("rb") as fh:
        try:
            magic = _Unpickler(fh).load()
            if magic != LEGACY_MAGIC:
                raise LegacyCheckpointError(f"{path}: not a torch legacy checkpoint (zip-format files differ)")
            if _Unpickler(fh).load() != LEGACY_PROTOCOL:
                raise LegacyCheckpointError(f"{path}: unsupported legacy protocol version")
            sys_info = _Unpickler(fh).load()
            if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
                raise LegacyCheckpointError(f"{path}: big-endian checkpoints are not supported")
            obj = _Unpickler(fh).load()
            keys = _Unpickler(fh).load()
        except (pickle.UnpicklingError, EOFError) as err:
            raise LegacyCheckpointError(f"{path}: cannot unpickle: {err}") from None
        if not isinstance(obj, dict) or not isinstance(keys, list):
            raise LegacyCheckpointError(f"{path}: expected a state dict")
        refs = {v.storage.key: v.storage for v in obj.values() if isinstance(v, _TensorRef)}
        storages = _read_storages(fh, [str(k) for k in keys], refs)
    out: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if isinstance(value, _TensorRef):
            out[str(name)] = _materialise(value, storages)
    return out
