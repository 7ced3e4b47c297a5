"""Writes a generated ncnn graph as ``.param`` text and ``.bin`` bytes, independently of ncnnpass's writer.

The builder tracks every blob it creates with its shape (numpy order: ``(c, h, w)``, ``(h, w)`` or
``(w,)``) and a coarse sign (``pos``/``nonneg``) so generated layers stay inside their domains. Weights
are encoded here from ncnn's own read order (tagged arrays carry a 4-byte storage flag: fp32, fp16,
bf16; raw arrays are float32), so a graph that ncnnpass loads and writes back byte for byte is checked
against a second, separate encoder. :meth:`Builder.finish` inserts the ``Split`` layers ncnn needs
wherever a blob feeds several input slots (with converter-style names, sometimes an unused extra top or a
mask), the way converters write them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

TAGS = {"fp32": 0x00000000, "fp16": 0x01306B47, "bf16": 0x01348B83}


@dataclass(eq=False)
class T:
    """A blob of the graph under construction."""

    name: str
    shape: tuple[int, ...]
    pos: bool = False      # every value > 0
    nonneg: bool = False   # every value >= 0

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass
class W:
    """One array a layer reads from the ``.bin``."""

    values: np.ndarray
    tagged: bool
    storage: str = "fp32"


@dataclass(eq=False)
class L:
    type: str
    name: str
    inputs: list[T]
    outputs: list[T]
    params: dict[int, object] = field(default_factory=dict)
    weights: list[W] = field(default_factory=list)


def f32(v: float) -> float:
    return float(np.float32(v))


def round_storage(values: np.ndarray, storage: str) -> np.ndarray:
    """``values`` as the float32 numbers ncnn reads back from ``storage``."""
    a = np.asarray(values, np.float32).reshape(-1)
    if storage == "fp16":
        return a.astype(np.float16).astype(np.float32)
    if storage == "bf16":
        bits = a.view(np.uint32).astype(np.uint64)
        bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        return bits.astype(np.uint32).view(np.float32)
    return a


def encode(w: W) -> bytes:
    a = round_storage(w.values, w.storage if w.tagged else "fp32")
    if not w.tagged:
        return a.astype("<f4").tobytes()
    if w.storage == "fp32":
        payload = a.astype("<f4").tobytes()
    elif w.storage == "fp16":
        payload = a.astype("<f2").tobytes()
    else:
        payload = (a.view(np.uint32) >> 16).astype("<u2").tobytes()
    payload += bytes(-len(payload) % 4)
    return TAGS[w.storage].to_bytes(4, "little") + payload


def format_value(pid: int, v: object) -> str:
    if isinstance(v, (list, tuple)):
        items = [repr(f32(x)) if isinstance(x, float) else str(int(x)) for x in v]
        return f"{-23300 - pid}={len(items)}" + "".join("," + s for s in items)
    if isinstance(v, float):
        return f"{pid}={f32(v)!r}"
    return f"{pid}={int(v)}"


def with_defaults(type_: str, p: dict[int, object]) -> dict[int, object]:
    """``p`` plus params written at the value ncnn would use anyway (defaults, and those that follow another)."""
    out = dict(p)
    if type_ in ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise"):
        out.setdefault(11, out.get(1, 0))
        out.setdefault(12, out.get(2, 1))
        out.setdefault(13, out.get(3, 1))
        out.setdefault(14, out.get(4, 0))
        out.setdefault(15, out.get(4, 0))
        out.setdefault(16, out.get(14, 0))
        out.setdefault(2, 1)
        out.setdefault(3, 1)
        out.setdefault(4, 0)
        out.setdefault(5, 0)
        out.setdefault(9, 0)
        if type_.startswith("Convolution"):
            out.setdefault(8, 0)
            out.setdefault(19, 0)
    elif type_ == "Pooling" and not out.get(4) and not out.get(7):
        out.setdefault(11, out.get(1, 0))
        out.setdefault(12, out.get(2, 1))
        out.setdefault(13, out.get(3, 0))
        out.setdefault(14, out.get(3, 0))
        out.setdefault(15, out.get(13, 0))
        out.setdefault(4, 0)
        out.setdefault(7, 0)
    elif type_ == "InnerProduct":
        out.setdefault(8, 0)
        out.setdefault(9, 0)
    elif type_ == "BinaryOp" and not out.get(1):
        out.setdefault(1, 0)
    elif type_ == "ReLU":
        out.setdefault(0, 0.0)
    elif type_ == "Dropout":
        out.setdefault(0, 1.0)
    return out


class Builder:
    """Collects layers; ``rng`` drives every choice (``np`` draws weights from it)."""

    def __init__(self, rng: random.Random, storage: str = "fp32") -> None:
        self.rng = rng
        self.np = np.random.default_rng(rng.randrange(1 << 32))
        self.storage = storage  # "fp32", "fp16", "bf16" or "mixed": how tagged arrays are stored
        self.layers: list[L] = []
        self.counts: Counter = Counter()
        self.blob_count = 0
        self.featmask_rate = 0.0
        self.shared_name_rate = 0.0
        self.odd_name_rate = 0.0        # names shaped like the ones rewrites and Splits create
        self.explicit_default_rate = 0.0  # params written out at their default values, as pnnx does
        self.hint_rate = 0.0            # output shape hints (-23330=), which ncnn reads at load
        self.names: set[str] = set()

    # -- blobs and layers --------------------------------------------------------------------------
    def blob(self, shape: tuple[int, ...], pos: bool = False, nonneg: bool = False) -> T:
        self.blob_count += 1
        shape = tuple(int(d) for d in shape)
        if any(d <= 0 for d in shape):
            raise ValueError(f"generator bug: blob shape {shape}")
        name = str(self.blob_count)
        if self.layers and self.rng.random() < self.odd_name_rate:
            ly = self.rng.choice(self.layers)
            ref = self.rng.choice([*ly.outputs, *ly.inputs]).name if ly.outputs or ly.inputs else name
            odd = self.rng.choice((f"{ref}_splitncnn_0", f"{ly.name}_v3", f"{ly.name}_y3", f"{ly.name}_y",
                                   f"{ly.name}_fp32"))
            name = odd if odd not in self.names else name
        self.names.add(name)
        return T(name, shape, pos, pos or nonneg)

    def layer_name(self, type_: str) -> str:
        used = [ly.name for ly in self.layers if ly.type != "Input"]
        r = self.rng
        if used and r.random() < self.shared_name_rate:
            return r.choice(used)  # ncnn allows layers that share a name
        if used and r.random() < self.odd_name_rate:
            return r.choice((f"splitncnn_{r.randrange(4)}", f"{r.choice(used)}_flatten", f"{r.choice(used)}_c"))
        k = self.counts[type_]
        self.counts[type_] += 1
        return f"{type_.lower()}_{k}"

    def add(self, type_: str, inputs: list[T], outputs: list[T], params: dict[int, object] | None = None,
            weights: list[W] | None = None, featmask: bool = True) -> L:
        params = dict(params or {})
        if self.rng.random() < self.explicit_default_rate:
            params = with_defaults(type_, params)
        if featmask and type_ != "Input" and self.rng.random() < self.featmask_rate:
            params[31] = self.rng.choice((1, 2, 3, 4, 6, 7, 32, 64, 128, 2 | 32))
        if outputs and type_ != "Input" and self.rng.random() < self.hint_rate:
            hint: list[int] = []
            for t in outputs:  # per top: dims, w, h, c (ncnn Net::load_param)
                hint += [t.rank, *reversed(t.shape), *([0] * (3 - t.rank))] if t.rank <= 3 else [0, 0, 0, 0]
            params[30] = hint
        ly = L(type_, self.layer_name(type_), list(inputs), list(outputs), params, list(weights or []))
        self.layers.append(ly)
        return ly

    def one(self, type_: str, x: T | list[T], shape: tuple[int, ...], params: dict[int, object] | None = None,
            weights: list[W] | None = None, pos: bool = False, nonneg: bool = False) -> T:
        out = self.blob(shape, pos, nonneg)
        self.add(type_, x if isinstance(x, list) else [x], [out], params, weights)
        return out

    # -- weights -----------------------------------------------------------------------------------
    def pick_storage(self) -> str:
        if self.storage == "mixed":
            return self.rng.choice(("fp32", "fp16", "bf16"))
        return self.storage

    def tagged(self, count: int, fan_in: int) -> W:
        """A weight array scaled so outputs keep the magnitude of inputs (U(-1,1)·sqrt(3/fan_in))."""
        scale = np.sqrt(3.0 / max(fan_in, 1))
        return W(self.np.uniform(-scale, scale, count).astype(np.float32), True, self.pick_storage())

    def raw(self, values) -> W:
        return W(np.asarray(values, np.float32).reshape(-1), False)

    def uniform(self, lo: float, hi: float, count: int) -> np.ndarray:
        return self.np.uniform(lo, hi, count).astype(np.float32)

    def signed(self, lo: float, hi: float, count: int) -> np.ndarray:
        """Magnitudes in [lo, hi] with random signs (scales that never come near zero)."""
        return self.uniform(lo, hi, count) * self.np.choice(np.array([-1.0, 1.0], np.float32), count)

    # -- output ------------------------------------------------------------------------------------
    def consumers(self) -> dict[T, list[tuple[L, int]]]:
        out: dict[T, list[tuple[L, int]]] = {}
        for ly in self.layers:
            for i, b in enumerate(ly.inputs):
                out.setdefault(b, []).append((ly, i))
        return out

    def finish(self, split_style: float = 0.0) -> tuple[str, bytes]:
        """The ``.param`` text (Splits inserted after producers) and the ``.bin`` bytes.

        ``split_style``: probability per multi-consumer blob of an odd (but valid) Split: an extra unused
        top or a featmask on the Split."""
        readers = self.consumers()
        lines: list[str] = []
        blobs: set[str] = set()
        for ly in self.layers:
            lines.append(self._line(ly.type, ly.name, [b.name for b in ly.inputs], [b.name for b in ly.outputs],
                                    ly.params))
            blobs.update(b.name for b in (*ly.inputs, *ly.outputs))
            for b in ly.outputs:
                slots = readers.get(b, [])
                if len(slots) < 2:
                    continue
                tops = [self._fresh(f"{b.name}_splitncnn_{k}") for k in range(len(slots))]
                extra: dict[int, object] = {}
                if self.rng.random() < split_style:
                    if self.rng.random() < 0.5:
                        tops.append(self._fresh(f"{b.name}_splitncnn_{len(slots)}"))  # a top nobody reads
                    else:
                        extra[31] = self.rng.choice((2, 7))
                k = self.counts["Split"]
                self.counts["Split"] += 1
                lines.append(self._line("Split", f"splitncnn_{k}", [b.name], tops, extra))
                blobs.update(tops)
                for (reader, i), top in zip(slots, tops, strict=False):
                    reader.inputs[i] = T(top, b.shape, b.pos, b.nonneg)
        text = f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n"
        data = b"".join(encode(w) for ly in self.layers for w in ly.weights)
        return text, data

    def _fresh(self, name: str) -> str:
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    @staticmethod
    def _line(type_: str, name: str, ins: list[str], outs: list[str], params: dict[int, object]) -> str:
        head = f"{type_:<24} {name:<24} {len(ins)} {len(outs)}"
        body = " ".join([*ins, *outs, *(format_value(k, v) for k, v in params.items())])
        return f"{head} {body}"
