"""Functions pattern expressions may call, and the structural facts they rely on.

Every function takes the :class:`~.rule.Match` first (hidden from the pattern text). Shape questions
are answered from the structure of the graph where that is decisive (a 1×1 Convolution of a
c×1×1 blob is c×1×1) and otherwise from ncnn's own shape inference when the run has input shapes;
if neither knows, the answer is :class:`~.expr.Unknown` and the rule does not fire.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ncnnpass.ir import Blob, Layer, Weight, layer_types

from .expr import Unknown

if TYPE_CHECKING:
    from .rule import Match

ELEMENTWISE_TYPES = layer_types.types_with("elementwise")
CONV_TYPES = layer_types.types_with("conv")
_DEPTH = 200


def is_elementwise(layer: Layer) -> bool:
    if layer.type in ELEMENTWISE_TYPES:
        return len(layer.inputs) == 1 and len(layer.outputs) == 1
    if layer.type == "BinaryOp":
        return len(layer.inputs) == 1 and int(layer.params.get(1, 0)) == 1
    return False


def _producer(g, name: str) -> Layer | None:
    b = g.blobs.get(name)
    return None if b is None else b.producer


def _shape(m: Match, name: str) -> tuple[int, ...] | None:
    return m.ctx.shape(name)


def struct_rank(m: Match, name: str, depth: int = 0) -> int | None:
    """The rank ncnn will give blob ``name``, from structure (``None`` if structure does not tell)."""
    g = m.ctx.graph
    p = _producer(g, name)
    if p is None or depth > _DEPTH:
        return None
    spec = layer_types.spec(p.type)
    if spec is None or spec.rank is None:
        return None

    def rank_of(blob: str) -> int | None:
        r = rank(m, blob, depth + 1)
        return None if isinstance(r, Unknown) else r

    return spec.rank(p, rank_of)


def rank(m: Match, blob: Any, depth: int = 0) -> int | Unknown:
    name = _blob_name(blob)
    r = struct_rank(m, name, depth)
    if r is not None:
        return r
    s = _shape(m, name)
    if s is not None:
        return len(s)
    return Unknown(f"rank of blob {name!r} unknown (give an input shape)")


class _Ask:
    """What a spec's ``channels`` function may ask about its inputs (``None`` when unknown)."""

    __slots__ = ("m", "depth")

    def __init__(self, m: Match, depth: int) -> None:
        self.m, self.depth = m, depth

    def channels(self, blob: str) -> int | None:
        c = channels(self.m, blob, self.depth + 1)
        return None if isinstance(c, Unknown) else c

    def c11(self, blob: str) -> bool | None:
        r = c11(self.m, blob, self.depth + 1)
        return None if isinstance(r, Unknown) else r


def struct_channels(m: Match, name: str, depth: int = 0) -> int | None:
    """Channel count (rank 3/4) or length (rank 1) of ``name``, from structure."""
    p = _producer(m.ctx.graph, name)
    if p is None or depth > _DEPTH:
        return None
    spec = layer_types.spec(p.type)
    if spec is None or spec.channels is None:
        return None
    return spec.channels(p, _Ask(m, depth))


def channels(m: Match, blob: Any, depth: int = 0) -> int | Unknown:
    name = _blob_name(blob)
    c = struct_channels(m, name, depth)
    if c is not None:
        return c
    s = _shape(m, name)
    if s is not None and len(s) in (1, 3, 4):
        return s[0]
    return Unknown(f"channels of blob {name!r} unknown (give an input shape)")


def c11(m: Match, blob: Any, depth: int = 0) -> bool | Unknown:
    """True if the blob is a 3-D c×1×1 blob (what adaptive pooling to 1×1 produces)."""
    name = _blob_name(blob)
    p = _producer(m.ctx.graph, name)
    if p is not None and depth <= _DEPTH:
        t = p.type
        if t == "Pooling" and not int(p.get("global_pooling")) and int(p.get("adaptive_pooling")):
            if int(p.get("out_w")) == 1 and int(p.get("out_h")) == 1:
                return True
        if t in ("Convolution", "ConvolutionDepthWise") and not int(p.get("dynamic_weight")):
            k1 = int(p.get("kernel_w")) == 1 and int(p.get("kernel_h")) == 1
            pads = [int(p.get(k)) for k in ("pad_left", "pad_right", "pad_top", "pad_bottom")]
            if k1 and all(v == 0 for v in pads) and c11(m, p.inputs[0], depth + 1) is True:
                return True
        if is_elementwise(p) and c11(m, p.inputs[0], depth + 1) is True:
            return True
        if t == "Flatten":
            return False
    s = _shape(m, name)
    if s is not None:
        return len(s) == 3 and s[1] == 1 and s[2] == 1
    return Unknown(f"cannot tell whether blob {name!r} is c×1×1")


def nonnegative(m: Match, blob: Any) -> bool:
    """True if every value of the blob is >= 0 by construction (ReLU, sigmoid, clip at >= 0, ...)."""
    p = _producer(m.ctx.graph, _blob_name(blob))
    if p is None:
        return False
    t = p.type
    if t in CONV_TYPES or t == "InnerProduct":
        act = int(p.get("activation_type"))
        params = list(p.get("activation_params") or [])
        return act in (1, 4) or (act == 3 and len(params) >= 1 and params[0] >= 0)
    if t == "ReLU":
        return float(p.get("slope")) == 0.0
    if t in ("Sigmoid", "HardSigmoid", "Softmax", "Exp", "AbsVal", "Softplus"):
        return True
    if t == "Clip":
        return float(p.get("min")) >= 0.0
    return False


def _blob_name(blob: Any) -> str:
    if isinstance(blob, Blob):
        return blob.name
    if isinstance(blob, str):
        return blob
    raise TypeError(f"expected a blob, got {type(blob).__name__}")


# -- the table ----------------------------------------------------------------------------------------
def _consumers(m: Match, blob: Any) -> int:
    b = m.ctx.graph.blobs.get(_blob_name(blob))
    return 0 if b is None else len(b.consumers)


def _consumer_layers(m: Match, blob: Any) -> list[Layer]:
    b = m.ctx.graph.blobs.get(_blob_name(blob))
    return [] if b is None else list(dict.fromkeys(b.consumers))


def _is_output(m: Match, blob: Any) -> bool:
    return _blob_name(blob) in m.protected


def _shape_fn(m: Match, blob: Any) -> tuple[int, ...] | Unknown:
    s = _shape(m, _blob_name(blob))
    if s is None:
        return Unknown(f"shape of blob {_blob_name(blob)!r} unknown (give an input shape)")
    return s


def _producer_fn(m: Match, blob: Any) -> Layer | None:
    return _producer(m.ctx.graph, _blob_name(blob))


def _f32(m: Match, w: Any) -> np.ndarray:
    if isinstance(w, Weight):
        return w.float32()
    return np.asarray(w, dtype=np.float32)


def _storage(m: Match, w: Any) -> str:
    return w.storage if isinstance(w, Weight) else "fp32"


def _has_weights(m: Match, layer: Layer) -> bool:
    from ncnnpass.ir import weight_slots

    slots = weight_slots(layer.type, layer.params, layer.name)
    return bool(slots) and all(s.name in layer.weights for s in slots)


def _param(m: Match, layer: Layer, key: int | str) -> Any:
    return layer.get(key)


def _fp32_storage(m: Match, layer: Layer) -> bool:
    """The layer is kept out of fp16 storage (featmask ``31=`` bit 1)."""
    return bool(layer.featmask & 2)


def _feeds_fp32_storage(m: Match, blob: Any) -> bool:
    """Some consumer of ``blob`` is kept out of fp16 storage: on ARM it must receive fp32 data."""
    return any(c.featmask & 2 for c in _consumer_layers(m, blob))


def _isclose(m: Match, a: float, b: float) -> bool:
    return bool(np.float32(a) == np.float32(b))


BUILTINS: dict[str, Callable[..., Any]] = {
    "rank": rank,
    "channels": channels,
    "c11": c11,
    "nonnegative": nonnegative,
    "shape": _shape_fn,
    "consumers": _consumers,
    "consumer_layers": _consumer_layers,
    "is_output": _is_output,
    "producer": _producer_fn,
    "f32": _f32,
    "storage": _storage,
    "has_weights": _has_weights,
    "param": _param,
    "same_f32": _isclose,
    "fp32_storage": _fp32_storage,
    "feeds_fp32_storage": _feeds_fp32_storage,
    "len": lambda m, x: len(x),
    "abs": lambda m, x: abs(x),
    "min": lambda m, *a: min(a[0]) if len(a) == 1 else min(a),
    "max": lambda m, *a: max(a[0]) if len(a) == 1 else max(a),
    "all": lambda m, x: all(bool(v) for v in x),
    "any": lambda m, x: any(bool(v) for v in x),
    "int": lambda m, x: int(x),
    "float": lambda m, x: float(x),
    "sum": lambda m, x: sum(x),
    "is_elementwise": lambda m, layer: is_elementwise(layer),
}
