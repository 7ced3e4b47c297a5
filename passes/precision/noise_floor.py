"""The reference's own noise floor: how much what users see moves when only the input carries fp16 rounding.

Any fp16 layer rounds what it stores to fp16, a relative error up to u = 2**-11 per value. How far the task
output moves under *one* such rounding, of the input alone and with the network itself in fp32, is a floor
below which no placement with fp16 in it can be judged: a criterion stricter than it can only be met by
keeping every layer fp32. :func:`input_noise_floor` runs the reference (onnxruntime on the ONNX, else the ncnn
model on x86 in fp32) on a part's inputs

- rounded to fp16 (deterministic), and
- with seeded relative noise of ``roundings`` x u per value (``x * (1 + e)``, ``e`` uniform in
  ``[-roundings u, roundings u]``; ``seeds`` draws),

and judges each against the unperturbed reference with the search's :class:`.criteria.Criteria`. Measured on
200 held-out built-in lines against onnxruntime (``tests/benchmarks/bench_target_repair.py floor``, docs/phone.md
"The noise floor"): one rounding's worth of input noise moves PP-OCRv4 rec's largest line-confidence change to
7.9e-3 - 1.1e-2 (above the default 5e-3; one seed of three changes a string), PP-OCRv5 mobile's to
1.8e-3 - 5.4e-3, PP-OCRv3's to 3.5e-4 - 4.8e-4.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ncnnpass.ir import Graph

from .criteria import Criteria, Verdict
from .evaluator import Part, judge_outputs, reference_outputs

#: fp16's unit roundoff: the largest relative error of one rounding to nearest
FP16_UNIT_ROUNDOFF = 2.0 ** -11


@dataclass
class NoiseFloor:
    """The verdicts of the perturbed reference on one part (module docstring)."""

    part: str
    samples: int
    rounded: Verdict  # the input rounded to fp16
    noisy: list[Verdict]  # one per seed: relative noise of ``roundings`` fp16 roundings
    roundings: float

    @property
    def verdicts(self) -> list[Verdict]:
        return [self.rounded, *self.noisy]

    @property
    def ok(self) -> bool:
        """Whether the reference itself meets the criteria under every perturbation."""
        return all(v.ok for v in self.verdicts)

    def worst(self) -> Verdict:
        return max(self.verdicts, key=lambda v: v.score)

    def summary(self) -> str:
        noisy = "; ".join(v.headline() for v in self.noisy)
        return (f"noise floor of the reference ({self.samples} {self.part} samples, network in fp32): input rounded "
                f"to fp16: {self.rounded.headline()}; input with {self.roundings:g} fp16 rounding(s) of seeded "
                f"relative noise: {noisy}"
                + ("" if self.ok else f" -> the criteria are stricter than the model's own noise floor "
                   f"({'; '.join(self.worst().reasons)})"))

    def to_dict(self) -> dict[str, Any]:
        return {"part": self.part, "samples": self.samples, "roundings": self.roundings, "ok": self.ok,
                "rounded": self.rounded.to_dict(), "noisy": [v.to_dict() for v in self.noisy]}


def perturbed(x: np.ndarray, how: str, rng: np.random.Generator | None = None, roundings: float = 1.0
              ) -> np.ndarray:
    """``x`` rounded to fp16 (``how="round"``) or times ``1 + e``, ``e`` uniform within ``roundings`` fp16
    unit roundoffs (``how="noise"``), as float32."""
    x = np.asarray(x, dtype=np.float32)
    if how == "round":
        return x.astype(np.float16).astype(np.float32)
    if how == "noise":
        if rng is None:
            raise ValueError("noise needs a random generator")
        e = rng.uniform(-1.0, 1.0, x.shape) * (roundings * FP16_UNIT_ROUNDOFF)
        return (x * (1.0 + e)).astype(np.float32)
    raise ValueError(f"unknown perturbation {how!r} (round or noise)")


def input_noise_floor(part: Part, kind: str, *, onnx: str | os.PathLike | None = None, graph: Graph | None = None,
                      criteria: Criteria | None = None, dictionary: Sequence[str] | None = None, seeds: int = 1,
                      roundings: float = 1.0) -> NoiseFloor:
    """The reference (``onnx``, else ``graph`` on x86 in fp32) on ``part``'s inputs perturbed at the input only,
    judged against ``part.references`` (module docstring)."""
    from ncnnpass.passes.measure.metrics import metric_for

    criteria = criteria or Criteria()
    metric = metric_for(kind, **({"dictionary": list(dictionary)} if kind == "rec" and dictionary else {}))
    # judged as the search judges a held-out part (the full tolerance, no calibration margin)
    judged = Part("held-out", part.inputs, part.references or reference_outputs(part.inputs, onnx=onnx, graph=graph),
                  part.source)

    def judge(inputs: list) -> Verdict:
        return judge_outputs(kind, metric, criteria, judged, reference_outputs(inputs, onnx=onnx, graph=graph))

    rounded = judge([replace(i, tensor=perturbed(i.tensor, "round")) for i in part.inputs])
    noisy = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        noisy.append(judge([replace(i, tensor=perturbed(i.tensor, "noise", rng, roundings)) for i in part.inputs]))
    return NoiseFloor(part.name, len(part), rounded, noisy, roundings)
