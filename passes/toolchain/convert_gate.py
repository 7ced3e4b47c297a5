"""The gate of ``convert``: it judges what ncnnpass did, not the converter.

- **The rewrite** must not make the model worse than the converter's output (pnnx) under the same
  options: ``error_after <= error_before + tolerance`` against onnxruntime, under fp32 and under default
  options, at each verified size (``tolerance`` :meth:`Tolerance.of` semantics: absolute up to magnitude
  1, relative above; default 1e-4). A miss is fatal: ncnnpass broke something.
- **The converter's floor** (its own error against onnxruntime under fp32 options) is reported. It is fatal
  only past :data:`CONVERTER_BOUND` (:data:`CONVERTER_BOUND_FP16` with fp16 weights) *and* with task-level
  evidence: the converter's output changes what the model says on the verification input (rec: a frame's
  winning class; cls: the label; det: a pixel of the probability map crossing PaddleOCR's 0.3 threshold).
  Below the bound, or past it without such a change, convert goes on with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ncnnpass.passes.measure.tolerance import Tolerance

__all__ = ["CONVERTER_BOUND", "CONVERTER_BOUND_FP16", "DET_THRESHOLD", "GateResult", "judge", "task_changes"]

CONVERTER_BOUND = 1e-2  # max |pnnx output - onnxruntime| (fp32 options, fp32 weights) before the task decides
CONVERTER_BOUND_FP16 = 2e-2  # the same with fp16 weights (pnnx fp16=1: 3.8e-4 on PP-OCRv3 rec, 5.9e-3 on v4)
DET_THRESHOLD = 0.3  # PaddleOCR DBPostProcess thresh


@dataclass
class GateResult:
    notes: list[str] = field(default_factory=list)  # what was measured (convert.json, the stage note)
    warnings: list[str] = field(default_factory=list)  # the converter's floor past the bound, not fatal
    failure: str | None = None  # fatal: ncnnpass made it worse, or the converter changes the task's answer


def task_changes(kind: str | None, ref: np.ndarray, got: np.ndarray) -> tuple[int, int]:
    """(changed, total) task-level answers between two outputs of one model kind."""
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64).reshape(np.shape(ref))
    if kind == "det":
        a, b = ref > DET_THRESHOLD, got > DET_THRESHOLD
        return int(np.count_nonzero(a != b)), int(a.size)
    a, b = ref.argmax(axis=-1), got.argmax(axis=-1)  # rec: per frame; cls: the label
    return int(np.count_nonzero(a != b)), int(a.size)


def judge(errors: dict[str, dict[str, float]], *, tolerance: float | Tolerance, fp16_weights: bool,
          kind: str | None, task: tuple[int, int] | None) -> GateResult:
    """``errors[model][measure]``: max |ncnn - onnxruntime| of ``before`` (the converter's output) and ``after``
    (ncnnpass's) for each measure (``fp32``, ``default``, ``fp32 at WxH``, ...); ``task``: the converter
    output's task-level changes against onnxruntime (needed only past the bound)."""
    tol = Tolerance.of(tolerance)
    res = GateResult()
    before, after = errors["before"], errors["after"]
    for what, b in before.items():
        a = after[what]
        res.notes.append(f"{what}: converter {b:.2e}, ncnnpass {a:.2e}")
        if not np.isfinite(a) or a - b > tol.bound(1.0):  # PaddleOCR outputs are probabilities (<= 1)
            res.failure = (f"the rewrite made the model worse than the converter's output under {what} options: "
                           f"{a:.2e} against onnxruntime, was {b:.2e} (tolerance {tol})")
            return res
    bound = CONVERTER_BOUND_FP16 if fp16_weights else CONVERTER_BOUND
    floor = max(v for k, v in before.items() if k.startswith("fp32"))
    if floor > bound:
        changed, total = task if task is not None else (0, 0)
        what = "pixels crossing 0.3" if kind == "det" else "labels" if kind == "cls" else "frame classes"
        msg = (f"the converter's output differs from onnxruntime by {floor:.2e} under fp32 options (> {bound:g}); "
               f"{changed} of {total} {what} change")
        if changed:
            res.failure = msg
        else:
            res.warnings.append(msg + ", so the conversion goes on")
    elif floor > tol.bound(1.0):
        res.notes.append(f"the converter's floor {floor:.2e} is above {tol} (reported, not fatal)")
    return res
