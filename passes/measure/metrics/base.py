"""The interface every task metric has, and the plain-data result it returns.

A metric compares a reference run (onnxruntime, Paddle) with a candidate run (ncnn on a target) of the
same model on the same prepared samples:

    result = metric.evaluate(reference_outputs, candidate_outputs, inputs)

``reference_outputs[i]`` and ``candidate_outputs[i]`` are the model's first output for ``inputs[i]`` (a
:class:`ncnnpass.passes.measure.model_input.ModelInput`, which carries the sample, its label if any and
the original image size). The result holds headline numbers, one record per sample and notes; it renders
to text lines and to JSON-ready dicts and has no behaviour beyond that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from ncnnpass.ir.errors import NcnnpassError

if TYPE_CHECKING:
    from ncnnpass.passes.measure.model_input import ModelInput

__all__ = ["Metric", "MetricResult", "MetricError", "check_pairs", "json_number"]


class MetricError(NcnnpassError):
    """Outputs that cannot be compared (count or shape mismatch, no samples)."""


def json_number(value: Any) -> Any:
    """numpy scalars to Python numbers; NaN/inf to None (JSON has neither)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


@dataclass
class MetricResult:
    """What a metric found: ``numbers`` (name -> value, in display order), ``per_sample`` records (each has
    ``sample`` = provenance text and ``differs`` = whether the candidate's task output differs), ``summary``
    (the text lines a terminal shows) and ``notes``."""

    kind: str
    numbers: dict[str, Any]
    per_sample: list[dict[str, Any]]
    summary: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return len(self.per_sample)

    def differing(self) -> list[dict[str, Any]]:
        return [s for s in self.per_sample if s.get("differs")]

    def to_dict(self, per_sample: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "samples": self.samples,
                               "numbers": {k: json_number(v) for k, v in self.numbers.items()},
                               "summary": list(self.summary), "notes": list(self.notes)}
        if per_sample:
            out["per_sample"] = [{k: json_number(v) for k, v in s.items()} for s in self.per_sample]
        return out

    def render(self, examples: int = 3) -> list[str]:
        """The summary, then up to ``examples`` samples whose task output differs."""
        lines = list(self.summary)
        for s in self.differing()[:examples]:
            lines.append("    " + s.get("describe", s["sample"]))
        lines += [f"  {n}" for n in self.notes]
        return lines


class Metric(Protocol):
    """A task metric for one model kind (``rec``, ``det``, ``cls``)."""

    kind: ClassVar[str]

    def evaluate(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                 inputs: Sequence[ModelInput]) -> MetricResult: ...


def check_pairs(kind: str, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                inputs: Sequence[ModelInput]) -> None:
    """Same number of outputs as inputs, at least one, and matching sizes per sample."""
    if not inputs:
        raise MetricError(f"{kind} metric: no samples to compare")
    if len(reference) != len(inputs) or len(candidate) != len(inputs):
        raise MetricError(f"{kind} metric: {len(inputs)} samples but {len(reference)} reference and "
                          f"{len(candidate)} candidate outputs")
    for i, (r, c) in enumerate(zip(reference, candidate, strict=True)):
        if np.size(r) != np.size(c):
            raise MetricError(f"{kind} metric: sample {i} ({inputs[i].sample.provenance}): reference output "
                              f"{'x'.join(map(str, np.shape(r)))} vs candidate {'x'.join(map(str, np.shape(c)))}")
