"""Map ncnn blobs to ONNX tensors.

0. Graph inputs by name or position; graph outputs that nothing below matched, by position (ONNX
   output k is ncnn output k when the counts agree and the shapes agree up to 1-dims).
1. **By name** where the converter kept ONNX tensor names (onnx2ncnn, ncnnoptimize): the blob name, or
   the name with a ``_splitncnn_<k>`` suffix removed.
2. **By structure and values** where it did not (pnnx numbers its blobs): a candidate tensor must have
   the same number of elements, must depend on the graph input, and must be a strict descendant (in
   the ONNX graph) of every tensor the blob's producing layer reads (its input blobs' tensors, or their
   nearest mapped ancestors); among those, the one whose values match the blob best (relative L2 error,
   under a full-precision ncnn run) wins if the error is below the acceptance threshold.
   Tensors with identical values (``Identity``/``Dropout`` copies) are recorded as aliases of the
   earliest one. When two tensors that are *not* copies of each other fit equally well, the closest
   one (earliest in topological order) is taken and the mapping is marked ``ambiguous`` with the
   alternatives listed. Blobs nothing fits are reported as unmapped, with the closest miss.

Layouts: ncnn Mats have no batch axis and may squeeze or permute dims. A :class:`Layout` maps between
an ONNX tensor (e.g. ``1×40×120``) and an ncnn blob (``40×120``): squeeze size-1 dims on both sides,
then a permutation of the remaining dims (identity preferred), or, as a last resort, a plain reshape.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph

from .reference import OnnxReference

__all__ = ["Layout", "BlobMapping", "MappingResult", "map_blobs", "candidate_layouts", "ACCEPT_FIT"]

ACCEPT_FIT = 1e-2  # relative L2 error under full-precision ncnn below which values "match"
OUTPUT_MAX_ABS_FRACTION = 1e-3  # a graph output matches its ONNX output by position within this fraction
OUTPUT_MAX_ABS_FLOOR = 1e-6  # of the ONNX output's max |value|, plus this
_SPLIT_SUFFIX = re.compile(r"_splitncnn_\d+$")


@dataclass(frozen=True)
class Layout:
    """How an ncnn blob's array relates to an ONNX tensor's array."""

    onnx_shape: tuple[int, ...]
    ncnn_shape: tuple[int, ...]
    perm: tuple[int, ...] | None  # over the squeezed ONNX dims; None = plain reshape

    @property
    def kind(self) -> str:
        if self.perm is None:
            return "reshape"
        if self.perm != tuple(range(len(self.perm))):
            return "permute"
        return "same" if self.onnx_shape == self.ncnn_shape else "squeeze"

    def _squeezed(self) -> tuple[int, ...]:
        return tuple(d for d in self.onnx_shape if d != 1)

    def onnx_to_ncnn(self, ref: np.ndarray) -> np.ndarray:
        if self.perm is None:
            return ref.reshape(self.ncnn_shape)
        return np.ascontiguousarray(ref.reshape(self._squeezed()).transpose(self.perm)).reshape(self.ncnn_shape)

    def ncnn_to_onnx(self, arr: np.ndarray) -> np.ndarray:
        if self.perm is None:
            return arr.reshape(self.onnx_shape)
        sq = self._squeezed()
        permuted = tuple(sq[p] for p in self.perm)
        inv = np.argsort(self.perm)
        return arr.reshape(permuted).transpose(inv).reshape(self.onnx_shape)

    def gather(self, ref: np.ndarray, flat_idx: np.ndarray) -> np.ndarray:
        """``onnx_to_ncnn(ref).ravel()[flat_idx]`` without materializing the whole transposed array."""
        flat_ref = np.ascontiguousarray(ref).reshape(-1)
        if self.perm is None or self.perm == tuple(range(len(self.perm))):
            return flat_ref[flat_idx]
        sq = self._squeezed()
        permuted = tuple(sq[p] for p in self.perm)
        coords = np.unravel_index(flat_idx, permuted)
        onnx_coords: list[np.ndarray] = [coords[0]] * len(sq)
        for k, p in enumerate(self.perm):
            onnx_coords[p] = coords[k]
        return flat_ref[np.ravel_multi_index(tuple(onnx_coords), sq)]

    def describe(self) -> str:
        k = self.kind
        if k == "same":
            return "same"
        if k == "squeeze":
            return "squeeze"
        if k == "permute":
            return "permute(" + ",".join(map(str, self.perm or ())) + ")"
        return "reshape"


@functools.lru_cache(maxsize=4096)
def candidate_layouts(onnx_shape: tuple[int, ...], ncnn_shape: tuple[int, ...]) -> list[Layout]:
    """Every plausible layout between the two shapes, identity first; [] if sizes differ."""
    if math.prod(onnx_shape) != math.prod(ncnn_shape):
        return []
    so = tuple(d for d in onnx_shape if d != 1)
    sn = tuple(d for d in ncnn_shape if d != 1)
    if so == sn:
        return [Layout(onnx_shape, ncnn_shape, tuple(range(len(so))))]
    if sorted(so) == sorted(sn) and len(so) <= 6:
        perms = [p for p in itertools.permutations(range(len(so))) if tuple(so[i] for i in p) == sn]
        return [Layout(onnx_shape, ncnn_shape, p) for p in perms]
    return [Layout(onnx_shape, ncnn_shape, None)]


@dataclass
class BlobMapping:
    """What one ncnn blob maps to."""

    blob: str
    layer: str | None  # producing layer (None for graph inputs)
    layer_type: str | None
    tensor: str | None = None
    how: str = ""  # "input", "name", "name (split)", "value", "value, ambiguous"
    layout: Layout | None = None
    fit: float | None = None  # relative L2 error in the mapping run
    aliases: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    fused: list[str] = field(default_factory=list)  # earlier tensors of a fused chain, indistinguishable by value
    reason: str = ""  # why unmapped, or what is odd about a name mapping

    @property
    def mapped(self) -> bool:
        return self.tensor is not None

    @property
    def ambiguous(self) -> bool:
        return "ambiguous" in self.how


@dataclass
class MappingResult:
    blobs: list[BlobMapping]

    def by_blob(self) -> dict[str, BlobMapping]:
        return {m.blob: m for m in self.blobs}

    @property
    def mapped(self) -> list[BlobMapping]:
        return [m for m in self.blobs if m.mapped]

    @property
    def unmapped(self) -> list[BlobMapping]:
        return [m for m in self.blobs if not m.mapped]

    @property
    def coverage(self) -> float:
        return len(self.mapped) / len(self.blobs) if self.blobs else 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.blobs:
            key = m.how.split(",")[0] if m.mapped else "unmapped"
            out[key] = out.get(key, 0) + 1
        return out


def _fit(a: np.ndarray, b: np.ndarray) -> float:
    """Relative L2 error of ``a`` against ``b`` (both float)."""
    a32 = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    b32 = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = a32 - b32
        # float32 pairwise sums: accurate to ~1e-7 relative, no float64 temporaries, no BLAS threads
        d2, nb2 = float(np.add.reduce(diff * diff)), float(np.add.reduce(b32 * b32))
    if not (math.isfinite(d2) and math.isfinite(nb2)):
        d64, b64 = a32.astype(np.float64) - b32, b32.astype(np.float64)
        d2, nb2 = float(np.add.reduce(d64 * d64)), float(np.add.reduce(b64 * b64))
        if not (math.isfinite(d2) and math.isfinite(nb2)):
            return float("inf")
    d, nb = math.sqrt(d2), math.sqrt(nb2)
    if nb == 0.0:
        return 0.0 if d == 0.0 else float("inf")
    return d / nb


def _best_layout(ncnn_arr: np.ndarray, ref: np.ndarray, layouts: list[Layout]) -> tuple[Layout | None, float]:
    best: tuple[Layout | None, float] = (None, float("inf"))
    for lay in layouts:
        f = _fit(ncnn_arr, lay.onnx_to_ncnn(ref))
        if f < best[1]:
            best = (lay, f)
    return best


_SAMPLE = 2048
_sample_cache: dict[int, np.ndarray] = {}


def _sample_idx(size: int) -> np.ndarray:
    idx = _sample_cache.get(size)
    if idx is None:
        if size <= _SAMPLE:
            idx = np.arange(size)
        else:
            idx = np.sort(np.random.default_rng(size).choice(size, _SAMPLE, replace=False))
        _sample_cache[size] = idx
    return idx


def _sample_fit(a: np.ndarray, b: np.ndarray, nb: float) -> float:
    diff = a - b
    d = math.sqrt(float(np.add.reduce(diff * diff)))
    if not math.isfinite(d):
        return float("inf")
    if nb == 0.0:
        return 0.0 if d == 0.0 else float("inf")
    return d / nb


class _Screen:
    """Fits on a fixed sample of elements: cheap, confirmed on all elements for the few survivors."""

    def __init__(self, ref_vals: dict[str, np.ndarray]) -> None:
        self.ref_vals = ref_vals
        self.cache: dict[str, tuple[np.ndarray, float]] = {}

    def __call__(self, ncnn_sample: np.ndarray, t: str, layouts: list[Layout]) -> tuple[Layout | None, float]:
        ref = self.ref_vals[t]
        idx = _sample_idx(int(ref.size))
        best: tuple[Layout | None, float] = (None, float("inf"))
        for lay in layouts:
            if lay.perm is not None and lay.kind != "permute":
                hit = self.cache.get(t)
                if hit is None:
                    b = np.ascontiguousarray(ref).reshape(-1)[idx].astype(np.float64)
                    hit = self.cache[t] = (b, math.sqrt(float(np.add.reduce(b * b))))
                b, nb = hit
            else:
                b = lay.gather(ref, idx).astype(np.float64)
                nb = math.sqrt(float(np.add.reduce(b * b)))
            f = _sample_fit(ncnn_sample, b, nb)
            if f < best[1]:
                best = (lay, f)
        return best


def map_blobs(graph: Graph, blob_order: list[str], ncnn_vals: dict[str, np.ndarray], ref: OnnxReference,
              ref_vals: dict[str, np.ndarray], accept: float = ACCEPT_FIT,
              known: MappingResult | None = None, constants: dict[str, np.ndarray] | None = None
              ) -> MappingResult:
    """Map every blob of ``blob_order`` (topological) using a full-precision ncnn run ``ncnn_vals``.

    ``known``: a mapping of an earlier version of this graph (e.g. before a rewrite); its entries are
    reused for blobs still produced by the same layer with the same shape. ``constants``: ONNX
    initializers and Constant outputs, candidates for blobs of layers without inputs (MemoryData).
    """
    tensors = ref.tensors
    usable = {n for n in ref.order if n in ref_vals and isinstance(ref_vals[n], np.ndarray)
              and ref_vals[n].dtype.kind == "f"}
    by_size: dict[int, list[str]] = {}
    for n in ref.order:
        if n in usable and tensors[n].from_input:
            by_size.setdefault(int(ref_vals[n].size), []).append(n)

    screen = _Screen(ref_vals)
    result: dict[str, BlobMapping] = {}
    graph_inputs = list(graph.inputs)

    # graph inputs: by name, else by position
    for k, b in enumerate(graph_inputs):
        m = BlobMapping(b, None, None)
        t = b if b in ref.input_names else (ref.input_names[k] if len(graph_inputs) == len(ref.input_names) else None)
        if t is not None and b in ncnn_vals:
            lays = candidate_layouts(tuple(ref_vals[t].shape), tuple(ncnn_vals[b].shape))
            lay, f = _best_layout(ncnn_vals[b], ref_vals[t], lays)
            if lay is not None:
                m.tensor, m.how, m.layout, m.fit = t, "input", lay, f
        if not m.mapped:
            m.reason = "graph input with no matching ONNX input"
        result[b] = m

    def anchors(blob: str, seen: set[str] | None = None) -> set[str]:
        """ONNX tensors the blob must descend from: its producer's inputs' tensors (or theirs)."""
        b = graph.blobs.get(blob)
        if b is None or b.producer is None:
            return set()
        out: set[str] = set()
        seen = seen if seen is not None else set()
        for inp in b.producer.inputs:
            if inp in seen:
                continue
            seen.add(inp)
            mi = result.get(inp)
            if mi is not None and mi.mapped:
                if mi.tensor in tensors:  # constants (initializers) constrain nothing
                    out.add(mi.tensor)  # type: ignore[arg-type]
            else:
                out |= anchors(inp, seen)
        return out

    if known is not None:
        for old in known.mapped:
            blob = graph.blobs.get(old.blob)
            if old.blob in result or blob is None or old.layout is None or old.blob not in ncnn_vals:
                continue
            p = blob.producer
            if (p is None) != (old.layer is None) or (p is not None and (p.name, p.type) != (old.layer, old.layer_type)):
                continue
            if tuple(ncnn_vals[old.blob].shape) != old.layout.ncnn_shape:
                continue
            result[old.blob] = old

    for b in blob_order:
        if b in result:
            continue
        blob = graph.blobs.get(b)
        producer = blob.producer if blob is not None else None
        m = BlobMapping(b, producer.name if producer else None, producer.type if producer else None)
        result[b] = m
        arr = ncnn_vals.get(b)
        if arr is None:
            m.reason = "ncnn produced no value for this blob"
            continue
        # 1. by name
        for name, how in ((b, "name"), (_SPLIT_SUFFIX.sub("", b), "name (split)")):
            if name in usable and (how == "name" or name != b):
                lays = candidate_layouts(tuple(ref_vals[name].shape), tuple(arr.shape))
                if not lays:
                    m.reason = (f"ONNX tensor {name!r} has the same name but shape {tuple(ref_vals[name].shape)} "
                                f"vs ncnn {tuple(arr.shape)}")
                    break
                lay, f = _best_layout(arr, ref_vals[name], lays)
                m.tensor, m.how, m.layout, m.fit = name, how, lay, f
                if f > accept:
                    m.reason = f"mapped by name but values differ (relative L2 {f:.2g} under full precision)"
                break
        if m.mapped or m.reason:
            continue
        # 2. a constant (MemoryData): an equal ONNX initializer or Constant
        if producer is not None and not producer.inputs and producer.type != "Input":
            best_c: tuple[float, str, Layout] | None = None
            for t, cval in (constants or {}).items():
                if cval.size != arr.size:
                    continue
                lay, f = _best_layout(arr, cval, candidate_layouts(tuple(cval.shape), tuple(arr.shape)))
                if lay is not None and (best_c is None or f < best_c[0]):
                    best_c = (f, t, lay)
            if best_c is not None and best_c[0] <= 1e-3:
                m.tensor, m.how, m.layout, m.fit = best_c[1], "value (constant)", best_c[2], best_c[0]
            else:
                m.reason = "a constant (no ONNX initializer or Constant with these values)"
            continue
        # 3. by structure and values
        anc = anchors(b)
        anc_bits = [1 << tensors[t].index for t in anc]
        anc_fit = max((result[x].fit or 0.0 for x in (producer.inputs if producer else ())
                       if x in result and result[x].mapped), default=0.0)
        threshold = max(accept, 10.0 * anc_fit)
        screened = []
        sample = np.ascontiguousarray(arr).reshape(-1)[_sample_idx(int(arr.size))].astype(np.float64)
        for t in by_size.get(int(arr.size), ()):
            ti = tensors[t]
            if any(not (ti.ancestors & bit) for bit in anc_bits):
                continue
            lays = candidate_layouts(tuple(ref_vals[t].shape), tuple(arr.shape))
            lay, f = screen(sample, t, lays)
            if lay is not None:
                screened.append((f, ti.index, t, lays))
        if not screened:
            m.reason = f"no ONNX tensor of {arr.size} elements downstream of its inputs"
            continue
        screened.sort(key=lambda c: (c[0], c[1]))
        best_s = screened[0][0]
        if best_s > 4.0 * threshold:  # clearly nothing matches: do not confirm on every element
            m.reason = f"closest ONNX tensor {screened[0][2]!r} differs (relative L2 ~{best_s:.2g} > {threshold:.2g})"
            continue
        # confirm on every element: the best by sample, plus whatever sampled close to it
        limit = min(max(4.0 * best_s, best_s + 1e-5), 4.0 * threshold)
        cands = []
        for fs, index, t, lays in screened:
            if fs <= limit:
                lay, f = _best_layout(arr, ref_vals[t], lays)
                if lay is not None:
                    cands.append((f, index, t, lay))
        cands.sort(key=lambda c: (c[0], c[1]))
        best_f = cands[0][0]
        if best_f > threshold:
            m.reason = f"closest ONNX tensor {cands[0][2]!r} differs (relative L2 {best_f:.2g} > {threshold:.2g})"
            continue
        tie = [c for c in cands if c[0] <= best_f + max(1e-6, 3.0 * best_f)]
        tie.sort(key=lambda c: c[1])  # earliest first
        # 1. tensors with identical values collapse onto the earliest (Identity, Dropout, Mul by 1, reshapes)
        reps: list[tuple[tuple, np.ndarray, list[str]]] = []
        for c in tie:
            vals = c[3].onnx_to_ncnn(ref_vals[c[2]])
            for rep in reps:
                if _fit(vals, rep[1]) <= 1e-7:
                    if c[3].kind == rep[0][3].kind and c[3].perm == rep[0][3].perm:
                        rep[2].append(c[2])
                    break
            else:
                reps.append((c, vals, []))
        # 2. distinct but indistinguishable tensors (within the ncnn noise) on one chain: a fused chain,
        #    whose ncnn blob is the last tensor (e.g. LayerNorm's Mul before its Add of a tiny beta)
        chain = all(tensors[reps[k][0][2]].ancestors >> tensors[reps[k - 1][0][2]].index & 1
                    for k in range(1, len(reps)))
        if chain:
            chosen, _, aliases = reps[-1]
            fused, alternatives = [r[0][2] for r in reps[:-1]], []
        else:
            chosen, _, aliases = min(reps, key=lambda r: (r[0][0], r[0][1]))
            fused, alternatives = [], [r[0][2] for r in reps if r[0] is not chosen]
        m.tensor, m.layout, m.fit = chosen[2], chosen[3], chosen[0]
        m.aliases, m.alternatives, m.fused = aliases, alternatives, fused
        m.how = "value, ambiguous" if alternatives else "value"
    _map_outputs_by_position(graph, ncnn_vals, ref, ref_vals, result, accept)
    return MappingResult([result[b] for b in blob_order if b in result])


def _map_outputs_by_position(graph: Graph, ncnn_vals: dict[str, np.ndarray], ref: OnnxReference,
                             ref_vals: dict[str, np.ndarray], result: dict[str, BlobMapping], accept: float) -> None:
    """Graph outputs nothing matched by value take the ONNX output at their position, when the counts
    of outputs agree and the shapes do up to leading/inner 1-dims (ncnn drops the batch and may drop
    more: a DB detector's ONNX 1×1×H×W is ncnn's 1×H×W or H×W). The values must agree, but by max
    absolute error against the output's range rather than by relative L2: a detector's probability
    map on random input is nearly all ~0, where relative L2 is ill-conditioned (measured 0.007 to
    over 0.01 for a 1.4e-7 max error). Outputs of another model or shape stay unmapped."""
    outs = list(graph.outputs)
    if len(outs) != len(ref.output_names):
        return
    for b, t in zip(outs, ref.output_names, strict=True):
        m = result.get(b)
        if m is None or m.mapped or b not in ncnn_vals or t not in ref_vals:
            continue
        arr, r = ncnn_vals[b], ref_vals[t]
        if not isinstance(r, np.ndarray) or r.dtype.kind != "f":
            continue
        lay, f = _best_layout(arr, r, candidate_layouts(tuple(r.shape), tuple(arr.shape)))
        if lay is None or lay.kind == "reshape":
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            diff = float(np.max(np.abs(arr.astype(np.float64) - lay.onnx_to_ncnn(r).astype(np.float64))))
            scale = float(np.max(np.abs(r))) if r.size else 0.0
        if not (f <= accept or diff <= OUTPUT_MAX_ABS_FRACTION * scale + OUTPUT_MAX_ABS_FLOOR):
            m.reason += f"; by position: ONNX output {t!r} differs (max abs {diff:.2g} of range {scale:.2g})"
            continue
        m.tensor, m.how, m.layout, m.fit, m.reason = t, "output (position)", lay, f, ""
