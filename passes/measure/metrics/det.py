"""Detection: the boxes a user gets, reference against candidate.

Both probability maps go through PaddleOCR's DB post-processing (:mod:`.db_postprocess`, boxes in the
original image's pixels); the candidate's boxes are matched one-to-one to the reference's at IoU >= 0.5
(:mod:`.matching`) and summed over pages into precision / recall / F. Also ``max_map_diff`` (max |Δ| over
the maps) and ``flipped_pixels`` (pixels on different sides of ``thresh``). With labelled pages, both
sides' boxes are also scored against the labels (``###`` regions ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ncnnpass.passes.measure.model_input import ModelInput

from .base import MetricResult, check_pairs
from .db_postprocess import DBParams, db_boxes
from .matching import IOU_THRESHOLD, match_boxes, prf

__all__ = ["DetMetric"]


def _boxes_json(boxes: Sequence[np.ndarray]) -> list[list[list[float]]]:
    return [np.asarray(b, dtype=float).round(1).tolist() for b in boxes]


class DetMetric:
    """Boxes matched at IoU >= ``iou_threshold`` → P/R/F, map diff, flipping pixels (module docstring)."""

    kind: ClassVar[str] = "det"

    def __init__(self, params: DBParams | None = None, iou_threshold: float = IOU_THRESHOLD) -> None:
        self.params = params or DBParams()
        self.iou_threshold = float(iou_threshold)

    def evaluate(self, reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                 inputs: Sequence[ModelInput]) -> MetricResult:
        check_pairs(self.kind, reference, candidate, inputs)
        per = []
        tot = {"tp": 0, "fp": 0, "fn": 0}
        lab = {"reference": [0, 0, 0], "candidate": [0, 0, 0]}
        labelled = 0
        flipped = pixels = 0
        for inp, r, c in zip(inputs, reference, candidate, strict=True):
            rm = np.asarray(r, dtype=np.float32).squeeze()
            cm = np.asarray(c, dtype=np.float32).reshape(rm.shape)
            rb, _ = db_boxes(rm, inp.src_hw, self.params)
            cb, _ = db_boxes(cm, inp.src_hw, self.params)
            m = match_boxes(cb, rb, threshold=self.iou_threshold)
            flips = int(np.count_nonzero((rm > self.params.thresh) != (cm > self.params.thresh)))
            flipped += flips
            pixels += rm.size
            tot["tp"] += m.tp
            tot["fp"] += m.fp
            tot["fn"] += m.fn
            rec = {"sample": str(inp.sample.provenance), "reference_boxes": len(rb), "candidate_boxes": len(cb),
                   "matched": m.tp, "extra": m.fp, "missed": m.fn, "max_map_diff": float(np.abs(cm - rm).max()),
                   "flipped_pixels": flips, "differs": bool(m.fp or m.fn),
                   "reference": _boxes_json(rb), "candidate": _boxes_json(cb)}
            if inp.sample.boxes is not None:
                labelled += 1
                gt = [b.points for b in inp.sample.boxes]
                ignore = [b.ignore for b in inp.sample.boxes]
                for side, boxes in (("reference", rb), ("candidate", cb)):
                    lm = match_boxes(boxes, gt, ignore, self.iou_threshold)
                    rec[f"{side}_vs_labels"] = {"matched": lm.tp, "extra": lm.fp, "missed": lm.fn}
                    acc = lab[side]
                    acc[0] += lm.tp
                    acc[1] += lm.fp
                    acc[2] += lm.fn
            rec["describe"] = (f"{rec['sample']}: {len(rb)} reference boxes, {len(cb)} candidate; {m.fp} extra, "
                               f"{m.fn} missed; map diff {rec['max_map_diff']:.2e}, {flips} pixels flip")
            per.append(rec)
        p, rcl, f = prf(tot["tp"], tot["fp"], tot["fn"])
        n = len(per)
        numbers = {"pages": n, "pages_identical": sum(not x["differs"] for x in per),
                   "reference_boxes": sum(x["reference_boxes"] for x in per),
                   "candidate_boxes": sum(x["candidate_boxes"] for x in per),
                   "precision": p, "recall": rcl, "f": f,
                   "max_map_diff": max(x["max_map_diff"] for x in per),
                   "flipped_pixels": flipped, "flipped_share": flipped / pixels if pixels else 0.0}
        summary = [f"det: F {f:.4f} (precision {p:.4f}, recall {rcl:.4f}) of {numbers['candidate_boxes']} candidate "
                   f"against {numbers['reference_boxes']} reference boxes on {n} pages ({numbers['pages_identical']} "
                   f"with the same boxes), max map diff {numbers['max_map_diff']:.2e}, {flipped} pixels flip at "
                   f"{self.params.thresh:g}"]
        if labelled:
            numbers["labelled"] = labelled
            for side in ("reference", "candidate"):
                lp, lr, lf = prf(*lab[side])
                numbers.update({f"{side}_precision_vs_labels": lp, f"{side}_recall_vs_labels": lr,
                                f"{side}_f_vs_labels": lf})
            summary.append(f"     against the labels of {labelled} pages: F reference "
                           f"{numbers['reference_f_vs_labels']:.4f}, candidate {numbers['candidate_f_vs_labels']:.4f}")
        return MetricResult(self.kind, numbers, per, summary)
