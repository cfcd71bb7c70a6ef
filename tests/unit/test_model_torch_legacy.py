"""The numpy reader of torch's legacy checkpoint format, on hand-made files (no torch needed)."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from video_ai.model.efficientnet_lite import default_weights_path
from video_ai.model.torch_legacy import LEGACY_MAGIC, LEGACY_PROTOCOL, LegacyCheckpointError, load_state_dict


class _FakeStorage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _FakeTensor:
    def __init__(self, storage: _FakeStorage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.args = (storage, offset, shape, stride)

    def __reduce__(self) -> tuple[object, ...]:
        storage, offset, shape, stride = self.args
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, (storage, offset, shape, stride, False, OrderedDict()))


def _fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Stand-in `torch` modules so pickle writes the same globals torch writes."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None: ...

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _write_legacy(
    path: Path, state: dict[str, _FakeTensor], torch: types.ModuleType, magic: int = LEGACY_MAGIC
) -> None:
    storages: dict[str, _FakeStorage] = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _FakeStorage):
                storages[obj.key] = obj
                kind = torch.FloatStorage if obj.data.dtype == np.float32 else torch.LongStorage
                return ("storage", kind, obj.key, "cpu", obj.data.size, None)
            return None

    buf = io.BytesIO()
    for header in (magic, LEGACY_PROTOCOL, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    Pickler(buf, protocol=2).dump(OrderedDict(state))
    keys = sorted(storages)
    pickle.dump(keys, buf, protocol=2)
    for key in keys:
        data = storages[key].data
        buf.write(struct.pack("<q", data.size))
        buf.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(buf.getvalue())


def test_reads_strided_and_offset_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _fake_torch(monkeypatch)
    hwio = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(4, 5, 3, 2)  # stored H, W, I, O like TF
    oihw = hwio.transpose(3, 2, 0, 1)
    shared = _FakeStorage("1", np.arange(10, dtype=np.float32))
    counter = _FakeStorage("2", np.array([7], dtype=np.int64))
    state = {
        "conv.weight": _FakeTensor(_FakeStorage("0", hwio.ravel()), 0, (2, 3, 4, 5), (1, 2, 30, 6)),
        "a": _FakeTensor(shared, 0, (4,), (1,)),
        "b": _FakeTensor(shared, 4, (2, 3), (3, 1)),
        "n": _FakeTensor(counter, 0, (), ()),
    }
    path = tmp_path / "legacy.pth"
    _write_legacy(path, state, torch)
    monkeypatch.delitem(sys.modules, "torch")  # the reader must not need it

    loaded = load_state_dict(path)

    np.testing.assert_array_equal(loaded["conv.weight"], oihw)
    assert loaded["conv.weight"].flags.c_contiguous
    np.testing.assert_array_equal(loaded["a"], [0, 1, 2, 3])
    np.testing.assert_array_equal(loaded["b"], [[4, 5, 6], [7, 8, 9]])
    assert loaded["n"].dtype == np.int64 and int(loaded["n"]) == 7


def test_refuses_foreign_globals(tmp_path: Path) -> None:
    buf = io.BytesIO()
    for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    pickle.dump({"x": print}, buf, protocol=2)  # builtins.print: would be code, must be refused
    path = tmp_path / "evil.pth"
    path.write_bytes(buf.getvalue())
    with pytest.raises(LegacyCheckpointError, match=r"refusing to load global .*print"):
        load_state_dict(path)


def test_rejects_files_that_are_not_legacy_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _fake_torch(monkeypatch)
    wrong_magic = tmp_path / "wrong.pth"
    _write_legacy(wrong_magic, {}, torch, magic=42)
    with pytest.raises(LegacyCheckpointError, match="not a torch legacy checkpoint"):
        load_state_dict(wrong_magic)
    zipped = tmp_path / "zip.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(LegacyCheckpointError):
        load_state_dict(zipped)


def test_truncated_storage_data_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = _fake_torch(monkeypatch)
    path = tmp_path / "t.pth"
    _write_legacy(path, {"w": _FakeTensor(_FakeStorage("0", np.ones(8, np.float32)), 0, (8,), (1,))}, torch)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(LegacyCheckpointError, match="truncated"):
        load_state_dict(path)


def test_packaged_weights_load_as_efficientnet_lite0() -> None:
    params = load_state_dict(default_weights_path())
    assert len(params) == 296
    assert params["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert params["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert params["_fc.weight"].shape == (1000, 1280)
    assert all(v.dtype == np.float32 for k, v in params.items() if not k.endswith("num_batches_tracked"))
    assert np.isfinite(params["_conv_head.weight"]).all()
