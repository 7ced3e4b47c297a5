"""Direction classification: does the candidate turn the same lines as the reference?

Per line the scores (``K`` classes, PaddleOCR's ``ClsPostProcess`` labels ``0`` and ``180``) give a label
(argmax) and its score. ``agreement``: lines with the same label; ``max_score_change``: max |Δ| of the
score of the reference's label; ``rotation_flips``: lines where PaddleOCR's decision to rotate (label
``180`` with score > ``cls_thresh`` 0.9) differs; ``max_prob_diff``. With orientation labels, both sides'
accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ncnnpass.passes.measure.model_input import ModelInput

from .base import MetricResult, check_pairs

__all__ = ["ClsMetric", "CLS_LABELS", "CLS_THRESH"]

CLS_LABELS = ("0", "180")
CLS_THRESH = 0.9


class ClsMetric:
    """Label agreement, score change, rotation decisions (module docstring)."""

    kind: ClassVar[str] = "cls"

    def __init__(self, labels: Sequence[str] = CLS_LABELS, cls_thresh: float = CLS_THRESH) -> None:
        self.labels = list(labels)
        self.cls_thresh = float(cls_thresh)

    def _name(self, i: int) -> str:
        return self.labels[i] if i < len(self.labels) else str(i)

    def _rotates(self, label: str, score: float) -> bool:
        return "180" in label and score > self.cls_thresh

    def evaluate(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                 inputs: Sequence[ModelInput]) -> MetricResult:
        check_pairs(self.kind, reference, candidate, inputs)
        per = []
        right = {"reference": 0, "candidate": 0}
        labelled = 0
        for inp, r, c in zip(inputs, reference, candidate, strict=True):
            rp = np.asarray(r, dtype=np.float32).reshape(-1)
            cp = np.asarray(c, dtype=np.float32).reshape(-1)
            ri, ci = int(rp.argmax()), int(cp.argmax())
            rl, cl = self._name(ri), self._name(ci)
            rs, cs = float(rp[ri]), float(cp[ci])
            rec = {"sample": str(inp.sample.provenance), "reference": rl, "candidate": cl,
                   "reference_score": rs, "candidate_score": cs, "score_change": abs(float(cp[ri]) - rs),
                   "rotation_flip": self._rotates(rl, rs) != self._rotates(cl, cs),
                   "max_prob_diff": float(np.abs(cp - rp).max()), "differs": ri != ci}
            if inp.sample.orientation is not None:
                labelled += 1
                rec["label"] = inp.sample.orientation
                right["reference"] += rl == inp.sample.orientation
                right["candidate"] += cl == inp.sample.orientation
            rec["describe"] = f"{rec['sample']}: reference {rl} ({rs:.3f}) vs candidate {cl} ({cs:.3f})"
            per.append(rec)
        n = len(per)
        agree = sum(not x["differs"] for x in per)
        numbers = {"lines": n, "agreement": agree, "agreement_share": agree / n,
                   "max_score_change": max(x["score_change"] for x in per),
                   "rotation_flips": sum(x["rotation_flip"] for x in per),
                   "max_prob_diff": max(x["max_prob_diff"] for x in per)}
        summary = [f"cls: labels agree {agree}/{n} ({agree / n:.1%}), score change max "
                   f"{numbers['max_score_change']:.2e}, rotation decisions that flip {numbers['rotation_flips']}, "
                   f"max prob diff {numbers['max_prob_diff']:.2e}"]
        if labelled:
            numbers.update({"labelled": labelled, "accuracy_reference": right["reference"] / labelled,
                            "accuracy_candidate": right["candidate"] / labelled})
            summary.append(f"     against {labelled} labels: reference {numbers['accuracy_reference']:.1%}, "
                           f"candidate {numbers['accuracy_candidate']:.1%}")
        return MetricResult(self.kind, numbers, per, summary)
