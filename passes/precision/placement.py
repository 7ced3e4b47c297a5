"""A mixed-precision placement: one choice per layer among ncnn's per-layer featmask forms.

Choices (featmask ``31=``, bits from ncnn's ``get_masked_option``; every form is right on x86, the ARM CPU
and the Vulkan GPU, docs/gpu.md):

- ``fp16``: as converted (the target's default options: fp16 storage and arithmetic on phones);
- ``nowino``: ``31=64``, fp16 kept but no winograd convolution (ncnn's ARM fp16 winograd F(6,3) loses far
  more than the direct fp16 kernels on a 3x3 stride-1 convolution); only for such convolutions;
- ``arith``: ``31=1``, fp32 arithmetic on fp16 storage; no cast boundary on any path, stays on the GPU under
  Vulkan. Not offered for the ARM ``Softmax``, which computes in fp16 whatever bit 0 says;
- ``fp32``: ``31=23`` (fp32 arithmetic and storage, off the GPU), with the cast boundaries and masked Splits
  of :func:`ncnnpass.ir.featmask.make_featmask_safe`.

A :class:`Placement` maps layer names to choices (absent = ``fp16``). :func:`apply_placement` writes it into
a copy of the graph; :func:`fp16_share` says how much of the compute stays in fp16 (on the GPU for Vulkan).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ncnnpass.ir import Graph, Layer
from ncnnpass.ir.featmask import KEEP_FP32_BITS, make_featmask_safe
from ncnnpass.ir.schema import FEATMASK_BITS

FP16, NOWINO, ARITH, FP32 = "fp16", "nowino", "arith", "fp32"
CHOICES = (FP16, NOWINO, ARITH, FP32)
#: featmask bits each choice adds
BITS = {FP16: 0, NOWINO: FEATMASK_BITS["no_winograd"], ARITH: FEATMASK_BITS["no_fp16_arithmetic"], FP32: KEEP_FP32_BITS}
#: choices whose arithmetic stays fp16
FP16_ARITHMETIC = (FP16, NOWINO)
#: layer types that move or reshape data and compute nothing (fp32 arithmetic means nothing there)
DATA_MOVEMENT = frozenset({"Split", "Reshape", "Permute", "Flatten", "Squeeze", "ExpandDims", "Slice", "Concat",
                           "Crop", "Padding", "Noop", "Dropout", "Tile", "Input", "MemoryData"})
#: no Vulkan class in ncnn's src/layer/vulkan/ (they run on the CPU under Vulkan whatever the featmask)
NO_VULKAN_TYPES = frozenset({"Exp", "Log", "Power", "Tile", "Squeeze", "ExpandDims", "MatMul", "RNN", "LSTM", "GRU",
                             "Embed", "GridSample"})


def winograd_eligible(layer: Layer) -> bool:
    """A dense 3x3 stride-1 dilation-1 convolution: ncnn may run it with winograd (ARM fp16: >= 16 channels in
    and out; Vulkan: its own thresholds), so ``31=64`` changes its kernel."""
    if layer.type != "Convolution":
        return False
    kw = int(layer.get(1, 0))
    kh = int(layer.get(11, kw))
    sw = int(layer.get(3, 1))
    sh = int(layer.get(13, sw))
    dw = int(layer.get(2, 1))
    dh = int(layer.get(12, dw))
    return (kw, kh, sw, sh, dw, dh) == (3, 3, 1, 1, 1, 1)


def winograd_in_fp16(graph: Graph, names: Sequence[str], base: Placement) -> list[str]:
    """The winograd-eligible layers among ``names`` that ``base`` leaves in plain fp16: what "winograd off"
    (``31=64``) changes."""
    return [n for n in names if base.choice(n) == FP16 and winograd_eligible(graph.layer(n))]


def choices_for(layer: Layer, target: str) -> tuple[str, ...]:
    """The choices that mean something for ``layer`` on ``target`` (``arm``, ``vulkan``, ...)."""
    if layer.type in ("Input", "MemoryData") or not layer.inputs:
        return (FP16,)
    out = [FP16]
    if winograd_eligible(layer):
        out.append(NOWINO)
    if layer.type not in DATA_MOVEMENT and not (layer.type == "Softmax" and target.startswith("arm")):
        out.append(ARITH)
    out.append(FP32)
    return tuple(out)


@dataclass(frozen=True)
class Placement:
    """Layer name -> choice; layers not named stay ``fp16``. Hashable, so evaluations can be cached."""

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, choices: Mapping[str, str] | Iterable[tuple[str, str]]) -> Placement:
        pairs = choices.items() if isinstance(choices, Mapping) else choices
        merged: dict[str, str] = {}
        for name, choice in pairs:
            if choice not in CHOICES:
                raise ValueError(f"unknown precision choice {choice!r} (one of {', '.join(CHOICES)})")
            merged[name] = choice
        return cls(tuple(sorted((n, c) for n, c in merged.items() if c != FP16)))

    @classmethod
    def uniform(cls, names: Iterable[str], choice: str) -> Placement:
        return cls.of((n, choice) for n in names)

    def as_dict(self) -> dict[str, str]:
        return dict(self.items)

    def choice(self, name: str) -> str:
        return self.as_dict().get(name, FP16)

    def merged(self, other: Placement | Mapping[str, str]) -> Placement:
        """This placement with ``other``'s choices on top."""
        extra = other.as_dict() if isinstance(other, Placement) else dict(other)
        return Placement.of({**self.as_dict(), **extra})

    def names(self, *choices: str) -> list[str]:
        return [n for n, c in self.items if c in choices]

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in CHOICES if c != FP16}
        for _, c in self.items:
            out[c] += 1
        return out

    def describe(self) -> str:
        c = self.counts()
        parts = [f"{v} {k}" for k, v in c.items() if v]
        return ", ".join(parts) if parts else "all fp16 (as converted)"

    def __len__(self) -> int:
        return len(self.items)


def apply_placement(graph: Graph, placement: Placement, *, copy: bool = True) -> Graph:
    """``graph`` (a copy unless ``copy=False``) with the featmask bits of ``placement`` added to what its
    layers already carry, made safe on every path (:func:`~ncnnpass.ir.featmask.make_featmask_safe`)."""
    g = graph.copy() if copy else graph
    for name, choice in placement.items:
        ly = g.layer(name)
        ly.featmask = ly.featmask | BITS[choice]
    make_featmask_safe(g)
    return g


def fp16_share(macs: Mapping[str, int], placement: Placement, *, gpu: bool = False,
               cpu_layers: Iterable[str] = ()) -> float:
    """Share of the MACs computed in fp16 under ``placement``: layers whose choice keeps fp16 arithmetic
    (``fp16``, ``nowino``) and, with ``gpu``, that also run on the GPU (not ``cpu_layers``: types with no
    Vulkan implementation; ``fp32`` layers leave the GPU anyway). 1.0 when nothing is counted."""
    total = sum(macs.values())
    if total == 0:
        return 1.0
    choices = placement.as_dict()
    off = set(cpu_layers) if gpu else set()
    kept = sum(v for n, v in macs.items() if choices.get(n, FP16) in FP16_ARITHMETIC and n not in off)
    return kept / total


def existing_placement(graph: Graph) -> Placement:
    """The choices the featmasks ``graph`` already carries (bit 1: ``fp32``, else bit 0: ``arith``, else bit 6:
    ``nowino``), so shares count layers a previous pass kept fp32."""
    out = {}
    for ly in graph.layers:
        bits = ly.featmask
        if bits & FEATMASK_BITS["no_fp16_storage"]:
            out[ly.name] = FP32
        elif bits & FEATMASK_BITS["no_fp16_arithmetic"]:
            out[ly.name] = ARITH
        elif bits & FEATMASK_BITS["no_winograd"]:
            out[ly.name] = NOWINO
    return Placement.of(out)
