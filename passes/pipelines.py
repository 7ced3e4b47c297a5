"""Named pass pipelines. Each is a plain list of pass specs (``NAME`` or ``NAME[key=value,...]``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pipeline:
    name: str
    doc: str
    passes: tuple[str, ...]


REPAIR = Pipeline(
    "repair",
    "precision fixes: SE blocks off fp16 InnerProduct (mean-reduction-to-pooling, gap-fc-to-conv), "
    "remaining InnerProducts kept fp32",
    (
        "mean-reduction-to-pooling",
        "gap-fc-to-conv",
        "keep-fp32[types=InnerProduct]",
    ),
)

OPTIMIZE = Pipeline(
    "optimize",
    "repair, then speed: fold scalar/per-channel ops and BatchNorm into weights, fuse activations, drop no-ops",
    (
        *REPAIR.passes,
        "eliminate-noop",
        "eliminate-dropout",
        "eliminate-pooling1x1",
        "eliminate-flatten-after-global-pooling",
        "eliminate-reshape-after-global-pooling",
        "eliminate-flatten-after-innerproduct",
        "replace-prelu-with-leaky-relu",
        "fuse-memorydata-binaryop",
        "fuse-batchnorm-scale",
        "fuse-batchnorm",
        "fuse-scale",
        "fuse-channel-binaryop",
        "fuse-innerproduct-dropout",
        "fold-scalar-binaryop",
        "fuse-activation",
        "eliminate-redundant-relu",
        "fuse-binaryop-eltwise",
        "adaptive-avgpool-lowering",
        "dead-code",
    ),
)

PIPELINES: dict[str, Pipeline] = {p.name: p for p in (REPAIR, OPTIMIZE)}
