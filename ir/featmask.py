"""Featmask placement that runs correctly on every ncnn path: x86, the ARM CPU and the Vulkan GPU.

A layer kept out of fp16 storage (featmask ``31=`` bit 1) must receive fp32 blobs, on every path.

**ARM CPU** (ncnn ``src/net.cpp`` ``convert_layout`` and ``get_masked_option``; evidence in docs/phone.md):
ncnn casts a blob between fp16 and fp32 in front of a layer using that layer's *masked* options. A layer
with bit 1 therefore gets an fp16 blob uncast when its producer stored fp16, runs its fp32 code on half-size
data and returns garbage, NaN, or corrupts the heap. An unmasked ``Split`` (ncnnpass regenerates them)
supports fp16 storage and casts an fp32 blob back to fp16 on its way. So a blob read by a masked layer must
be fp32 at run time: its producer is the net input, a masked layer (whose own inputs are fp32), or a layer
that never stores fp16 on ARM, and any Split in between is masked too. Where the producer stores fp16,
:func:`make_featmask_safe` inserts a cast boundary: an unmasked ``Dropout`` (scale 1, an identity). ncnn's
ARM Dropout does not support fp16 storage, so ncnn casts the blob to fp32 in front of it and the Dropout
hands fp32 on; on x86 it is a no-op.

**Vulkan GPU** (``src/net.cpp``, ``src/gpu.cpp``, ``src/command.cpp``; evidence in docs/gpu.md): between two
GPU layers ncnn never casts, it only repacks, and each shader reads its input as the storage type of its own
masked options. A GPU layer with bit 1 reads fp16 data as fp32 (NaN, garbage), and ``31=2`` alone does not
even compile (``use_fp16_uniform`` is not masked). A layer with bit 4 (``31=16``) runs on the CPU instead:
its inputs are downloaded, which always yields fp32, and its outputs are uploaded in the GPU's storage type.
So every layer with bit 1 also carries bit 4, as do the masked Splits: ``31=23`` (1|2|4|16) is the form
that is right on all three paths (on x86 and ARM bit 4 changes nothing). Bit 0 alone (``31=1``: fp32
arithmetic, fp16 storage) needs no boundary on any path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ncnnpass.ir import Graph, Layer
from ncnnpass.ir.schema import FEATMASK_BITS
from ncnnpass.ir.splits import SplitRecord, consumer_slots

NO_FP16_STORAGE = FEATMASK_BITS["no_fp16_storage"]
NO_VULKAN = FEATMASK_BITS["no_vulkan"]
NO_FP16_ARITHMETIC = FEATMASK_BITS["no_fp16_arithmetic"]
NO_BF16_STORAGE = FEATMASK_BITS["no_bf16_storage"]
#: the bits that change which precision or device a layer runs on (0-4); the others (sgemm, winograd, one
#: thread) never change a blob's type
PRECISION_BITS = NO_FP16_ARITHMETIC | NO_FP16_STORAGE | NO_BF16_STORAGE | FEATMASK_BITS["no_int8"] | NO_VULKAN
BOUNDARY_TYPE = "Dropout"
#: a layer kept fp32 on every path: no fp16 arithmetic/storage, no bf16 storage, on the CPU under Vulkan
KEEP_FP32_BITS = FEATMASK_BITS["no_fp16_arithmetic"] | NO_FP16_STORAGE | FEATMASK_BITS["no_bf16_storage"] | NO_VULKAN
# Masks the Splits inside a masked region get (the same form).
SPLIT_MASK = KEEP_FP32_BITS
#: the paths a placement is checked for
PATHS = ("arm", "vulkan")


@dataclass
class SafetyEdits:
    """What :func:`make_featmask_safe` changed."""

    boundaries: list[str] = field(default_factory=list)  # names of the inserted Dropout layers
    masked_splits: list[str] = field(default_factory=list)  # blobs whose regenerated Split is masked
    off_gpu: list[str] = field(default_factory=list)  # masked layers that got bit 4 (on the CPU under Vulkan)

    def __bool__(self) -> bool:
        return bool(self.boundaries or self.masked_splits or self.off_gpu)


def is_masked(layer: Layer) -> bool:
    """True when ``layer`` keeps its blobs out of fp16 storage (featmask bit 1)."""
    return bool(layer.featmask & NO_FP16_STORAGE)


def _is_boundary(layer: Layer) -> bool:
    return layer.type == BOUNDARY_TYPE and not is_masked(layer) and float(layer.get(0, 1.0)) == 1.0


def blob_is_fp32(graph: Graph, blob: str) -> bool:
    """Whether ``blob`` leaves its producer as fp32 on ARM with fp16 storage on (before any Split)."""
    producer = graph.blobs[blob].producer
    return producer is None or producer.type == "Input" or is_masked(producer) or _is_boundary(producer)


def unsafe_edges(graph: Graph, paths: tuple[str, ...] = PATHS) -> list[tuple[Layer, int, str]]:
    """(masked layer, input slot, reason) for every placement that breaks a path: on ARM, an input that would
    reach a masked layer as fp16 (or through an unmasked Split); on Vulkan, a masked layer left on the GPU
    (bit 1 without bit 4; slot -1) or a masked Split without bit 4."""
    bad = []
    for ly in graph.layers:
        if not is_masked(ly):
            continue
        if "vulkan" in paths and not ly.featmask & NO_VULKAN:
            bad.append((ly, -1, f"vulkan: 31={ly.featmask} keeps it on the GPU, where it reads fp16 data as fp32 "
                                "(needs bit 4, 31=16)"))
        for i, name in enumerate(ly.inputs):
            if "arm" in paths and not blob_is_fp32(graph, name):
                bad.append((ly, i, f"arm: producer {graph.blobs[name].producer.name} stores fp16"))
            elif len(graph.blobs[name].consumers) > 1:
                bits = split_mask(graph, name)
                if "arm" in paths and not bits & NO_FP16_STORAGE:
                    bad.append((ly, i, f"arm: the Split of {name} is unmasked"))
                elif "vulkan" in paths and bits & NO_FP16_STORAGE and not bits & NO_VULKAN:
                    bad.append((ly, i, f"vulkan: the Split of {name} stays on the GPU (needs bit 4)"))
    return bad


def split_mask(graph: Graph, blob: str) -> int:
    """The featmask the Split regenerated for ``blob`` will carry (0 when unmasked or when it will be new)."""
    rec = graph.splits.get(blob)
    if rec is None or not _same_consumers(graph, rec, blob):
        return 0
    return next((int(t[3:], 0) for t in rec.params if t.startswith("31=")), 0)


def split_masked(graph: Graph, blob: str) -> bool:
    """Whether the Split of ``blob`` keeps fp32 on every path (bits 1 and 4)."""
    bits = split_mask(graph, blob)
    return bool(bits & NO_FP16_STORAGE and bits & NO_VULKAN)


def _same_consumers(graph: Graph, rec: SplitRecord, blob: str) -> bool:
    slots = consumer_slots(graph, blob)
    return (None not in rec.slots and len(rec.slots) == len(slots)
            and {(id(c), i) for c, i in rec.slots} == {(id(c), i) for c, i in slots})


def mask_split(graph: Graph, blob: str, bits: int = SPLIT_MASK) -> None:
    """Make the Split ncnnpass regenerates for ``blob`` carry ``31=bits`` (kept while its consumers stay)."""
    slots = consumer_slots(graph, blob)
    rec = graph.splits.get(blob)
    if rec is None or not _same_consumers(graph, rec, blob):
        name = graph.unique_layer_name(f"{blob}_split_fp32")
        tops = [graph.unique_blob_name(f"{blob}_fp32_{k}") for k in range(len(slots))]
        rec = SplitRecord(name, tops, list(slots), [])
    params = [t for t in rec.params if not t.startswith("31=")]
    old = next((int(t[3:], 0) for t in rec.params if t.startswith("31=")), 0)
    graph.splits[blob] = SplitRecord(rec.layer_name, list(rec.top_names), list(rec.slots),
                                     params + [f"31={old | bits}"])


def make_featmask_safe(graph: Graph) -> SafetyEdits:
    """Make every placement right on every path: masked layers get bit 4 (they leave the GPU), cast boundaries
    go in front of masked readers of fp16 blobs, and the Splits between masked layers get ``31=23``.

    Idempotent; layers already masked stay masked and no layer is unmasked. Run it after the last edit
    that changes which layers read a blob (a Split mask is dropped when its consumers change).
    """
    edits = SafetyEdits()
    for ly in graph.layers:
        if is_masked(ly) and not ly.featmask & NO_VULKAN:
            ly.featmask = ly.featmask | NO_VULKAN
            edits.off_gpu.append(ly.name)
    for blob in list(graph.blobs):
        b = graph.blobs[blob]
        masked_readers = [c for c in dict.fromkeys(b.consumers) if is_masked(c)]
        if not masked_readers:
            continue
        if not blob_is_fp32(graph, blob):
            src = blob
            out = graph.unique_blob_name(f"{blob}_fp32")
            after = b.producer
            boundary = graph.add_layer(BOUNDARY_TYPE, graph.unique_layer_name(f"{blob}_to_fp32"),
                                       inputs=[src], outputs=[out], after=after)
            for c in masked_readers:
                c.inputs = [out if n == src else n for n in c.inputs]
            edits.boundaries.append(boundary.name)
            blob = out
        if len(graph.blobs[blob].consumers) > 1 and not split_masked(graph, blob):
            mask_split(graph, blob)
            edits.masked_splits.append(blob)
    return edits


def carries_featmask(graph: Graph) -> bool:
    """Whether the file ``graph`` writes sets any precision/placement bit (0-4) on a layer or a Split."""
    return (any(ly.featmask & PRECISION_BITS for ly in graph.layers)
            or any(split_mask(graph, blob) & PRECISION_BITS for blob in graph.splits))


@dataclass(frozen=True)
class PlacementProblem:
    """A featmask placement that breaks one ncnn path (see :func:`placement_problems`)."""

    path: str  # "arm", "vulkan", or "x86-bf16" (x86 with use_bf16_storage, an opt-in option)
    layer: str
    type: str
    featmask: int
    slot: int | None  # the input slot concerned; None: the layer's own bits
    reason: str

    @property
    def opt_in(self) -> bool:
        """The path needs an option no ncnn default sets (bf16 storage)."""
        return self.path == "x86-bf16"

    def to_dict(self) -> dict:
        return {"path": self.path, "layer": self.layer, "type": self.type, "featmask": self.featmask,
                "input": self.slot, "reason": self.reason, "opt_in": self.opt_in}


def placement_problems(graph: Graph, paths: tuple[str, ...] = (*PATHS, "x86-bf16")) -> list[PlacementProblem]:
    """Every featmask placement that breaks a path: :func:`unsafe_edges` for the ARM CPU and the Vulkan GPU (a
    layer with bit 1 but neither bit 0 nor bit 4 is named as the shader that does not compile), and, with
    ``x86-bf16``, layers with bit 2 reading a blob an unmasked layer stores as bf16 under ``use_bf16_storage``
    on x86 (no ncnn default sets it): x86 casts bf16 per layer like ARM casts fp16 and its Dropout is no
    boundary for it; the every-path form returns garbage there (PP-OCRv3 rec, head kept fp32: 0.71 off) or crashes
    (the synthetic net of docs/gpu.md: SIGSEGV, or a hang)."""
    out = []
    for ly, slot, why in unsafe_edges(graph, tuple(p for p in paths if p in PATHS)):
        path, _, reason = why.partition(": ")
        if slot == -1 and not ly.featmask & NO_FP16_ARITHMETIC:
            reason = (f"31={ly.featmask} is fp32 storage with fp16 arithmetic on the GPU: no Vulkan shader compiles "
                      "for it and the run crashes (needs bit 4, or bit 0 as well)")
        out.append(PlacementProblem(path, ly.name, ly.type, ly.featmask, None if slot == -1 else slot, reason))
    if "x86-bf16" in paths:
        for ly in graph.layers:
            if not ly.featmask & NO_BF16_STORAGE:
                continue
            for i, name in enumerate(ly.inputs):
                producer = graph.blobs[name].producer
                if producer is None or producer.type == "Input":
                    continue
                shared = len(graph.blobs[name].consumers) > 1 and not split_mask(graph, name) & NO_BF16_STORAGE
                if not producer.featmask & NO_BF16_STORAGE or shared:
                    what = "an unmasked Split" if producer.featmask & NO_BF16_STORAGE else f"{producer.name}"
                    out.append(PlacementProblem("x86-bf16", ly.name, ly.type, ly.featmask, i,
                                                f"with use_bf16_storage, {what} hands it a bf16 blob it reads as "
                                                "fp32 (garbage or a crash)"))
    return out


def featmask_safe_closure(graph: Graph, layers) -> set[str]:
    """Layers to mask so that masking ``layers`` needs no cast boundary: ``layers`` plus every producer
    that stores fp16 upstream of them, up to the net input. Shown for comparison with the boundary
    route; it usually masks far more (every ancestor)."""
    todo = [graph.layer(n) if isinstance(n, str) else n for n in layers]
    out: set[str] = set()
    while todo:
        ly = todo.pop()
        if ly.name in out or ly.type == "Input":
            continue
        out.add(ly.name)
        for name in ly.inputs:
            p = graph.blobs[name].producer
            if p is not None and p.type != "Input" and not _is_boundary(p):
                todo.append(p)
    return out
