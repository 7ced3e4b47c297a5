"""Named pass pipelines. Each is a plain list of pass specs (``NAME`` or ``NAME[key=value,...]``).

On a phone target (``arm``, ``arm-a57``: the phone CPU; ``vulkan``: the phone GPU) the precision pipelines end
with ``repair-for-target``, which searches the placement with the most MACs in fp16 whose task metrics (strings,
confidence, det boxes) match the reference on held-out data there (:func:`pipeline_passes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Pass

#: pipelines that end with ``repair-for-target`` on a phone target
TARGET_REPAIRED = ("repair", "optimize")


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


def targets_repair(target: str | None) -> bool:
    """Whether ``target`` has a repair-for-target step (the phone CPU and GPU targets)."""
    return bool(target) and (str(target).lower().startswith("arm") or str(target).lower() == "vulkan")


def pipeline_passes(name: str, *, target: str | None = None, tolerance: float | None = None,
                    reference: str | None = None, curve: str | None = None) -> list[Pass]:
    """The passes of pipeline ``name`` for ``target``: on a phone target, ``repair``/``optimize`` end with
    ``repair-for-target[target=..., tolerance=..., reference=..., curve=...]`` (each when given)."""
    from .registry import get_pass

    passes = [get_pass(s) for s in PIPELINES[name].passes]
    if name in TARGET_REPAIRED and targets_repair(target):
        options: dict[str, object] = {"target": str(target).lower()}
        if tolerance is not None:
            options["tolerance"] = tolerance
        if reference:
            options["reference"] = str(reference)
        if curve:
            options["curve"] = str(curve)
        passes.append(get_pass("repair-for-target").configure(**options))
    return passes
