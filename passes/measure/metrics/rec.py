"""Recognition: what a user of the recognised text sees change between the reference and the candidate.

Per line both outputs (``T x classes`` scores, softmax included as PaddleOCR exports it) are decoded with
greedy CTC (:func:`ncnnpass.passes.measure.ctc_decode.greedy_decode`, ``CTCLabelDecode`` semantics), then:

- ``identical``: lines whose candidate string equals the reference's;
- ``max_conf_change`` / ``mean_conf_change``: |candidate - reference| line confidence;
- ``drop_score_crossings``: lines kept by one and dropped by the other at PaddleOCR's ``drop_score``
  (0.5; ``TextSystem`` keeps a line when its confidence >= drop_score);
- ``max_prob_diff``: max |candidate - reference| over every frame's scores;
- with labels: ``cer_reference`` / ``cer_candidate`` (corpus CER) and ``accuracy_*`` (exact match) against
  the label as the dictionary can spell it (characters outside the dictionary are dropped from the label;
  the data loader reports them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ncnnpass.passes.measure.ctc_decode import Charset, greedy_decode
from ncnnpass.passes.measure.model_input import ModelInput

from .base import MetricResult, check_pairs
from .edit_distance import cer, edit_distance

__all__ = ["RecMetric", "DROP_SCORE"]

DROP_SCORE = 0.5  # PaddleOCR's --drop_score default


def _frames(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    return a.reshape(-1, a.shape[-1])


class RecMetric:
    """Strings, confidence, drop_score crossings, prob diff and CER (see the module docstring)."""

    kind: ClassVar[str] = "rec"

    def __init__(self, dictionary: Sequence[str] | None = None, drop_score: float = DROP_SCORE) -> None:
        self.dictionary = list(dictionary) if dictionary else None
        self.drop_score = float(drop_score)

    def evaluate(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                 inputs: Sequence[ModelInput]) -> MetricResult:
        check_pairs(self.kind, reference, candidate, inputs)
        classes = int(np.shape(reference[0])[-1])
        charset = Charset.fitting(self.dictionary, classes)
        chars = charset.characters if charset is not None else None
        notes = []
        if self.dictionary and charset is None:
            notes.append(f"the dictionary ({len(self.dictionary)} entries) does not fit {classes} classes: "
                         f"strings are class ids")
        per, labels, ref_texts, cand_texts = [], [], [], []
        for inp, r, c in zip(inputs, reference, candidate, strict=True):
            rf, cf = _frames(r), _frames(c).reshape(_frames(r).shape)
            rt, rc = greedy_decode(rf, chars)
            ct, cc = greedy_decode(cf, chars)
            rec = {"sample": str(inp.sample.provenance), "reference": rt, "candidate": ct,
                   "reference_confidence": rc, "candidate_confidence": cc, "conf_change": abs(cc - rc),
                   "crosses_drop_score": (rc >= self.drop_score) != (cc >= self.drop_score),
                   "max_prob_diff": float(np.abs(cf - rf).max()), "differs": rt != ct}
            label = inp.sample.text if charset is not None else None  # class ids do not spell a label
            if label is not None:
                spelled = charset.encode_label(label)[0]
                rec["label"] = spelled
                rec["reference_edits"] = edit_distance(rt, spelled)
                rec["candidate_edits"] = edit_distance(ct, spelled)
                labels.append(spelled)
                ref_texts.append(rt)
                cand_texts.append(ct)
            rec["describe"] = (f"{rec['sample']}: reference {rt!r} ({rc:.3f}) vs candidate {ct!r} ({cc:.3f})"
                               + (f", label {rec['label']!r}" if "label" in rec else ""))
            per.append(rec)
        n = len(per)
        identical = sum(not p["differs"] for p in per)
        changes = [p["conf_change"] for p in per]
        numbers = {"lines": n, "identical": identical, "identical_share": identical / n,
                   "max_conf_change": max(changes), "mean_conf_change": float(np.mean(changes)),
                   "drop_score_crossings": sum(p["crosses_drop_score"] for p in per),
                   "max_prob_diff": max(p["max_prob_diff"] for p in per)}
        if labels:
            numbers.update({"labelled": len(labels), "cer_reference": cer(ref_texts, labels),
                            "cer_candidate": cer(cand_texts, labels),
                            "accuracy_reference": sum(a == b for a, b in zip(ref_texts, labels, strict=True)) / len(labels),
                            "accuracy_candidate": sum(a == b for a, b in zip(cand_texts, labels, strict=True)) / len(labels)})
        summary = [f"rec: strings identical {identical}/{n} ({identical / n:.1%}), confidence change max "
                   f"{numbers['max_conf_change']:.2e} mean {numbers['mean_conf_change']:.2e}, drop_score "
                   f"{self.drop_score:g} crossings {numbers['drop_score_crossings']}, max prob diff "
                   f"{numbers['max_prob_diff']:.2e}"]
        if labels:
            summary.append(f"     against {len(labels)} labels: CER reference {numbers['cer_reference']:.2%} "
                           f"candidate {numbers['cer_candidate']:.2%}; exact reference "
                           f"{numbers['accuracy_reference']:.1%} candidate {numbers['accuracy_candidate']:.1%}")
        return MetricResult(self.kind, numbers, per, summary, notes)
