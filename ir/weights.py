"""ncnn ``.bin`` weights: the per-layer read sequence (table-driven) and tagged/raw arrays.

The ``.bin`` is the concatenation, in layer order, of the arrays each layer's ``load_model`` reads.
A *tagged* array starts with a 4-byte storage flag (fp32 ``0``, fp16 ``0x01306B47``, bf16
``0x01348B83``, int8 ``0x000D4B38``, legacy fp32 ``0x0002C056``, any other value: a 256-entry
quantization table); a *raw* array is plain little-endian float32. Every array is padded to 4 bytes.

Arrays read from a file are numpy views over the memory-mapped file and their exact bytes are
written back untouched until edited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import WeightError
from .schema import KNOWN_TYPES

TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
TAG_BF16 = 0x01348B83
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056

TAGGED_STORAGES = ("fp32", "fp16", "bf16", "int8")
_TAG_OF = {"fp32": TAG_FP32, "fp16": TAG_FP16, "bf16": TAG_BF16, "int8": TAG_INT8}


def _align4(n: int) -> int:
    return (n + 3) & ~3


@dataclass(frozen=True)
class Slot:
    """One array a layer reads: its name, element count and whether it is tagged."""

    name: str
    count: int
    tagged: bool


Getter = Callable[[int, int], int]
SlotFn = Callable[[Getter], list[Slot]]


def _conv(dynamic_id: int | None, int8: str | None, group: bool = False) -> SlotFn:
    def slots(g: Getter) -> list[Slot]:
        if dynamic_id is not None and g(dynamic_id, 0):
            return []
        n = g(0, 0)
        out = [Slot("weight", g(6, 0), True)]
        if g(5, 0):
            out.append(Slot("bias", n, False))
        q = g(8, 0) if int8 else 0
        if int8 == "conv" and q:
            out += [Slot("weight_int8_scales", n, False), Slot("bottom_int8_scales", 1, False)]
            if q > 100:
                out.append(Slot("top_int8_scales", 1, False))
        elif int8 == "dw" and q:
            if q in (1, 101):
                out += [Slot("weight_int8_scales", g(7, 1), False), Slot("bottom_int8_scales", 1, False)]
            elif q in (2, 102):
                out += [Slot("weight_int8_scales", 1, False), Slot("bottom_int8_scales", 1, False)]
            if q > 100:
                out.append(Slot("top_int8_scales", 1, False))
        return out

    return slots


def _innerproduct(g: Getter) -> list[Slot]:
    n = g(0, 0)
    out = [Slot("weight", g(2, 0), True)]
    if g(1, 0):
        out.append(Slot("bias", n, False))
    if g(8, 0):
        out += [Slot("weight_int8_scales", n, False), Slot("bottom_int8_scales", 1, False)]
    return out


def _embed(g: Getter) -> list[Slot]:
    out = [Slot("weight", g(3, 0), True)]
    if g(2, 0):
        out.append(Slot("bias", g(0, 0), False))
    if g(18, 0):
        out.append(Slot("weight_int8_scale", 1, False))
    return out


def _memorydata(g: Getter) -> list[Slot]:
    w, h, d, c = g(0, 0), g(1, 0), g(11, 0), g(2, 0)
    if d:
        n = w * h * d * c
    elif c:
        n = w * h * c
    elif h:
        n = w * h
    else:
        n = w
    return [Slot("data", n, g(21, 1) == 0)] if n else []


def _affine(size_id: int, affine_id: int, beta: bool = True) -> SlotFn:
    def slots(g: Getter) -> list[Slot]:
        if not g(affine_id, 1):
            return []
        n = g(size_id, 0)
        return [Slot("gamma", n, False)] + ([Slot("beta", n, False)] if beta else [])

    return slots


def _raw(*items: tuple[str, int, int, int]) -> SlotFn:
    """Raw arrays sized by a param: (name, param id, default, present-if id or -1)."""

    def slots(g: Getter) -> list[Slot]:
        out = []
        for name, pid, default, cond in items:
            if cond >= 0 and not g(cond, 0):
                continue
            out.append(Slot(name, g(pid, default), False))
        return out

    return slots


def _scale(g: Getter) -> list[Slot]:
    n = g(0, 0)
    if n == -233:
        return []
    out = [Slot("scale", n, False)]
    if g(1, 0):
        out.append(Slot("bias", n, False))
    return out


def _padding(g: Getter) -> list[Slot]:
    n = g(6, 0)
    return [Slot("per_channel_pad", n, False)] if n else []


def _directions(g: Getter) -> int:
    return 2 if g(2, 0) == 2 else 1


def _rnn(g: Getter) -> list[Slot]:
    n, d = g(0, 0), _directions(g)
    size = g(1, 0) // d // max(n, 1)
    out = [Slot("weight_xc", size * n * d, True), Slot("bias_c", n * d, True), Slot("weight_hc", n * n * d, True)]
    if g(8, 0):
        out += [Slot("weight_xc_int8_scales", n * d, False), Slot("weight_hc_int8_scales", n * d, False)]
    return out


def _lstm(g: Getter) -> list[Slot]:
    n, d = g(0, 0), _directions(g)
    hidden = g(3, n)
    size = g(1, 0) // d // max(hidden, 1) // 4
    out = [Slot("weight_xc", size * 4 * hidden * d, True), Slot("bias_c", hidden * 4 * d, True),
           Slot("weight_hc", n * 4 * hidden * d, True)]
    if n != hidden:
        out.append(Slot("weight_hr", hidden * n * d, True))
    if g(8, 0):
        out += [Slot("weight_xc_int8_scales", 4 * hidden * d, False),
                Slot("weight_hc_int8_scales", 4 * hidden * d, False)]
    return out


def _gru(g: Getter) -> list[Slot]:
    n, d = g(0, 0), _directions(g)
    size = g(1, 0) // d // max(n, 1) // 3
    out = [Slot("weight_xc", size * 3 * n * d, True), Slot("bias_c", n * 4 * d, True),
           Slot("weight_hc", n * 3 * n * d, True)]
    if g(8, 0):
        out += [Slot("weight_xc_int8_scales", 3 * n * d, False), Slot("weight_hc_int8_scales", 3 * n * d, False)]
    return out


def _mha(g: Getter) -> list[Slot]:
    e = g(0, 0)
    q = g(18, 0)
    if q >= 100:
        raise WeightError(f"block-quantized MultiHeadAttention weights (18={q}) are not supported")
    qdim = g(2, 0) // max(e, 1)
    kdim, vdim = g(3, e), g(4, e)
    out = [Slot("q_weight", e * qdim, True), Slot("q_bias", e, False), Slot("k_weight", e * kdim, True),
           Slot("k_bias", e, False), Slot("v_weight", e * vdim, True), Slot("v_bias", e, False),
           Slot("out_weight", qdim * e, True), Slot("out_bias", qdim, False)]
    if q:
        out += [Slot("q_int8_scales", e, False), Slot("k_int8_scales", e, False),
                Slot("v_int8_scales", e, False), Slot("out_int8_scale", 1, False)]
    return out


def _gemm(g: Getter) -> list[Slot]:
    m, n, k = g(7, 0), g(8, 0), g(9, 0)
    q = g(18, 0)
    if q >= 100:
        raise WeightError(f"block-quantized Gemm weights (18={q}) are not supported")
    out = []
    if g(4, 0):
        out.append(Slot("A", m * k, True))
    if g(5, 0):
        out.append(Slot("B", n * k, True))
    bcast = g(10, 0)
    if g(6, 0) and bcast != -1:
        size = {0: 1, 1: m, 2: m, 3: m * n, 4: n}.get(bcast)
        if size is None:
            raise WeightError(f"Gemm constant_broadcast_type_C={bcast} is not a known broadcast type")
        out.append(Slot("C", size, True))
    if q:
        if g(4, 0):
            out.append(Slot("A_int8_scales", m, False))
        if g(5, 0):
            out.append(Slot("B_int8_scale", 1, False))
    return out


WEIGHT_TABLE: dict[str, SlotFn] = {
    "Convolution": _conv(19, "conv"),
    "ConvolutionDepthWise": _conv(19, "dw"),
    "Convolution1D": _conv(19, None),
    "ConvolutionDepthWise1D": _conv(19, None),
    "Convolution3D": _conv(None, None),
    "ConvolutionDepthWise3D": _conv(None, None),
    "Deconvolution": _conv(28, None),
    "DeconvolutionDepthWise": _conv(28, None),
    "Deconvolution1D": _conv(28, None),
    "DeconvolutionDepthWise1D": _conv(28, None),
    "Deconvolution3D": _conv(None, None),
    "DeconvolutionDepthWise3D": _conv(None, None),
    "DeformableConv2D": _conv(None, None),
    "InnerProduct": _innerproduct,
    "Embed": _embed,
    "MemoryData": _memorydata,
    "BatchNorm": lambda g: [Slot(s, g(0, 0), False) for s in ("slope", "mean", "var", "bias")],
    "Bias": _raw(("bias", 0, 0, -1)),
    "Scale": _scale,
    "PReLU": _raw(("slope", 0, 0, -1)),
    "Padding": _padding,
    "LayerNorm": _affine(0, 2),
    "GroupNorm": _affine(1, 3),
    "InstanceNorm": _affine(0, 2),
    "RMSNorm": _affine(0, 2, beta=False),
    "Normalize": _raw(("scale", 3, 0, -1)),
    "Quantize": _raw(("scale", 0, 1, -1)),
    "Dequantize": _raw(("scale", 0, 1, -1), ("bias", 1, 0, 1)),
    "Requantize": _raw(("scale_in", 0, 1, -1), ("scale_out", 1, 1, -1), ("bias", 2, 0, 2)),
    "RNN": _rnn,
    "LSTM": _lstm,
    "GRU": _gru,
    "MultiHeadAttention": _mha,
    "Gemm": _gemm,
}


def register_weight_layout(layer_type: str, fn: SlotFn) -> None:
    """Teach ncnnpass the weight read sequence of a custom layer type."""
    WEIGHT_TABLE[layer_type] = fn


def weight_slots(layer_type: str, params, layer_name: str = "?") -> list[Slot]:
    """The arrays a layer of this type reads, given its params. Raises for unknown custom types."""
    fn = WEIGHT_TABLE.get(layer_type)
    if fn is None:
        if layer_type in KNOWN_TYPES:
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
    for s in slots:
        if s.count < 0:
            raise WeightError(f"layer {layer_name!r}: weight {s.name!r} has negative size {s.count}")
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
