"""ncnn ``.bin`` weights: the per-layer read sequence (from the layer specs) and tagged/raw arrays.

The ``.bin`` is the concatenation, in layer order, of the arrays each layer's ``load_model`` reads.
A *tagged* array starts with a 4-byte storage flag (fp32 ``0``, fp16 ``0x01306B47``, bf16
``0x01348B83``, int8 ``0x000D4B38``, legacy fp32 ``0x0002C056``, any other value: a 256-entry
quantization table); a *raw* array is plain little-endian float32. Every array is padded to 4 bytes.

Arrays read from a file are numpy views over the memory-mapped file and their exact bytes are
written back untouched until edited.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from . import layer_types
from .errors import WeightError
from .weight_layouts import Getter, Slot, SlotFn

__all__ = ["TAGGED_STORAGES", "WEIGHT_TABLE", "Getter", "Slot", "SlotFn", "Weight", "read_weight",
           "register_weight_layout", "weight_slots"]

TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
TAG_BF16 = 0x01348B83
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056

TAGGED_STORAGES = ("fp32", "fp16", "bf16", "int8")
_TAG_OF = {"fp32": TAG_FP32, "fp16": TAG_FP16, "bf16": TAG_BF16, "int8": TAG_INT8}


def _align4(n: int) -> int:
    return (n + 3) & ~3


class _WeightTable(Mapping):
    """Type -> weight layout, read from the layer specs (:mod:`ncnnpass.ir.layer_types`)."""

    def __getitem__(self, layer_type: str) -> SlotFn:
        s = layer_types.spec(layer_type)
        if s is None or s.weights is None:
            raise KeyError(layer_type)
        return s.weights

    def __iter__(self) -> Iterator[str]:
        return iter(layer_types.weighted_types())

    def __len__(self) -> int:
        return len(layer_types.weighted_types())


WEIGHT_TABLE: Mapping[str, SlotFn] = _WeightTable()


def register_weight_layout(layer_type: str, fn: SlotFn) -> None:
    """Teach ncnnpass the weight read sequence of a custom layer type."""
    layer_types.register_custom(layer_type, fn)


def weight_slots(layer_type: str, params, layer_name: str = "?") -> list[Slot]:
    """The arrays a layer of this type reads, given its params. Raises for unknown custom types."""
    s = layer_types.spec(layer_type)
    fn = None if s is None else s.weights
    if fn is None:
        if s is not None:
            return []
        raise WeightError(
            f"layer {layer_name!r} has type {layer_type!r}, which is not an ncnn built-in type: cannot tell "
            "which weights it reads (register it with ncnnpass.ir.weights.register_weight_layout)")

    def get(key: int, default: int) -> int:
        v = params.get(key, default)
        if not isinstance(v, int):
            raise WeightError(f"layer {layer_name!r}: param {key} must be an int to size its weights, got {v!r}")
        return v

    slots = fn(get)
    for slot in slots:
        if slot.count < 0:
            raise WeightError(f"layer {layer_name!r}: weight {slot.name!r} has negative size {slot.count}")
    return slots


class Weight:
    """One weight array. ``data`` is a numpy view in the stored dtype; ``float32()`` decodes."""

    __slots__ = ("name", "count", "tagged", "storage", "tag", "_raw", "_data")

    def __init__(self, name: str, count: int, tagged: bool, storage: str, tag: int,
                 raw: memoryview | None, data: np.ndarray | None) -> None:
        self.name = name
        self.count = count
        self.tagged = tagged
        self.storage = storage  # fp32, fp16, bf16, int8, fp32s, table (tagged) or raw
        self.tag = tag
        self._raw = raw
        self._data = data

    def __repr__(self) -> str:
        return f"Weight({self.name!r}, {self.count} x {self.storage}{'' if self._raw is not None else ', edited'})"

    @property
    def edited(self) -> bool:
        return self._raw is None

    @property
    def nbytes(self) -> int:
        return len(self._raw) if self._raw is not None else len(self.encode())

    @property
    def data(self) -> np.ndarray:
        """The stored values: float32, float16 or int8 (a read-only view of the file when unedited)."""
        if self._data is None:
            self._data = self._decode()
        return self._data

    def float32(self) -> np.ndarray:
        """Values as float32 (int8 is returned as its integer values; scales are separate arrays)."""
        d = self.data
        return d if d.dtype == np.float32 else d.astype(np.float32)

    def _payload(self) -> memoryview:
        return self._raw[4:] if self.tagged else self._raw

    def _decode(self) -> np.ndarray:
        p, n = self._payload(), self.count
        if self.storage in ("fp32", "fp32s", "raw"):
            return np.frombuffer(p, dtype="<f4", count=n)
        if self.storage == "fp16":
            return np.frombuffer(p, dtype="<f2", count=n)
        if self.storage == "int8":
            return np.frombuffer(p, dtype=np.int8, count=n)
        if self.storage == "bf16":
            bits = np.frombuffer(p, dtype="<u2", count=n).astype(np.uint32) << 16
            return bits.view(np.float32)
        table = np.frombuffer(p, dtype="<f4", count=256)
        idx = np.frombuffer(p, dtype=np.uint8, count=n, offset=1024)
        return table[idx]

    def set(self, values: np.ndarray, storage: str | None = None) -> None:
        """Replace the values (and optionally the storage type: fp32, fp16, bf16, int8; raw stays raw)."""
        arr = np.asarray(values)
        if arr.size != self.count:
            raise WeightError(f"weight {self.name!r} needs {self.count} values, got {arr.size}")
        if not self.tagged:
            if storage not in (None, "raw", "fp32"):
                raise WeightError(f"weight {self.name!r} is a raw float32 array; it cannot be stored as {storage}")
            storage = "raw"
        else:
            storage = storage or (self.storage if self.storage in TAGGED_STORAGES else "fp32")
            if storage not in TAGGED_STORAGES:
                raise WeightError(f"unknown weight storage {storage!r} (one of {', '.join(TAGGED_STORAGES)})")
        if storage == "int8":
            if arr.dtype != np.int8:
                raise WeightError(f"int8 storage for {self.name!r} needs an int8 array (quantize it yourself)")
            data = np.ascontiguousarray(arr.reshape(-1))
        elif storage == "fp16":
            data = np.ascontiguousarray(arr.reshape(-1), dtype=np.float16)
        elif storage == "bf16":
            f = np.ascontiguousarray(arr.reshape(-1), dtype=np.float32)
            bits = f.view(np.uint32)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32) << 16  # round to nearest even
            data = rounded.view(np.float32)
        else:
            data = np.ascontiguousarray(arr.reshape(-1), dtype=np.float32)
        self.storage = storage
        self.tag = _TAG_OF.get(storage, 0)
        self._data = data
        self._raw = None

    def file_bytes(self) -> bytes | memoryview:
        """The bytes ncnn reads for this weight: the loaded file's own bytes (no copy) while unedited."""
        return self._raw if self._raw is not None else self.encode()

    def copy(self) -> Weight:
        """An independent copy sharing the (never mutated) file bytes and decoded array."""
        return Weight(self.name, self.count, self.tagged, self.storage, self.tag, self._raw, self._data)

    def encode(self) -> bytes:
        """The exact bytes of this array in a ``.bin`` (flag, payload, padding)."""
        if self._raw is not None:
            return bytes(self._raw)
        d = self.data
        if self.storage == "bf16":
            payload = (d.view(np.uint32) >> 16).astype("<u2").tobytes()
        elif self.storage == "fp16":
            payload = d.astype("<f2").tobytes()
        elif self.storage == "int8":
            payload = d.astype(np.int8).tobytes()
        else:
            payload = d.astype("<f4").tobytes()
        payload += b"\0" * (_align4(len(payload)) - len(payload))
        if not self.tagged:
            return payload
        return int(self.tag).to_bytes(4, "little") + payload

    @classmethod
    def from_array(cls, slot: Slot, values: np.ndarray, storage: str | None = None) -> Weight:
        w = cls(slot.name, slot.count, slot.tagged, "fp32" if slot.tagged else "raw", 0, None, None)
        w.set(values, storage)
        return w


def read_weight(buf: memoryview, offset: int, slot: Slot, layer_name: str, file: str) -> tuple[Weight, int]:
    """Read one array at ``offset``; return it and the next offset."""
    n, total = slot.count, len(buf)

    def need(nbytes: int, what: str) -> None:
        if offset + nbytes > total:
            raise WeightError(
                f"{file}: too short: layer {layer_name!r} weight {slot.name!r} ({what}) needs {nbytes} bytes "
                f"at offset {offset}, but only {max(total - offset, 0)} remain")

    if not slot.tagged:
        size = 4 * n
        need(size, f"{n} raw float32")
        return Weight(slot.name, n, False, "raw", 0, buf[offset:offset + size], None), offset + size
    need(4, "storage flag")
    tag = int.from_bytes(buf[offset:offset + 4], "little")
    if tag == TAG_FP16:
        storage, size = "fp16", _align4(2 * n)
    elif tag == TAG_BF16:
        storage, size = "bf16", _align4(2 * n)
    elif tag == TAG_INT8:
        storage, size = "int8", _align4(n)
    elif tag == TAG_FP32_SCALED:
        storage, size = "fp32s", 4 * n
    elif tag != 0:
        storage, size = "table", 1024 + _align4(n)
    else:
        storage, size = "fp32", 4 * n
    need(4 + size, f"{n} x {storage}")
    end = offset + 4 + size
    return Weight(slot.name, n, True, storage, tag, buf[offset:end], None), end
