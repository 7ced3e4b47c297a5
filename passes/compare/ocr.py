"""End to end, as an app runs it: detector → reading order and rotate-crop → direction classifier →
recogniser, through ncnn on a target and through onnxruntime, and what differs (``ncnnpass ocr``).

Each side runs PaddleOCR's ``TextSystem`` on its own: DetResizeForTest and DB post-processing
(:mod:`ncnnpass.passes.measure.det_preprocess`, :mod:`~ncnnpass.passes.measure.metrics.db_postprocess`),
boxes in reading order (:func:`reading_order`: top to bottom, then left to right within 10 pixels of height),
each box cut as ``get_rotate_crop_image`` does (:func:`~ncnnpass.passes.measure.crops.rotate_crop`), the
classifier at 3×48×192 turning a line by 180° when it says ``180`` with a score above 0.9, the recogniser at
the line's own width (a batch of one; a model converted for one width gets that width), greedy CTC, and a
line kept when its confidence reaches ``drop_score`` (0.5). The ncnn side's boxes are its own: a box the
candidate misses, one it adds and a string it reads differently are what an app developer sees change.

Per page the kept results of both sides are matched by box (IoU >= 0.5, one to one): ``identical`` = matched
with the same string. Over all pages: precision/recall/F of the candidate's results against the reference's
(a result counts when its box matches and its string is identical), and, with labels (a det label file, the
built-in pages), each side's end-to-end F against them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError, RuntimeBridgeError
from ncnnpass.ir.runtime.targets import Target, TargetPool, describe_target, normalize_target
from ncnnpass.passes.measure.crops import rotate_crop
from ncnnpass.passes.measure.ctc_decode import Charset, greedy_decode
from ncnnpass.passes.measure.det_preprocess import DetResize, det_resize_for, det_tensor
from ncnnpass.passes.measure.metrics.cls import CLS_LABELS, CLS_THRESH
from ncnnpass.passes.measure.metrics.db_postprocess import DBParams, db_boxes
from ncnnpass.passes.measure.metrics.matching import match_boxes, prf
from ncnnpass.passes.measure.metrics.rec import DROP_SCORE
from ncnnpass.passes.measure.model_files import ModelFiles
from ncnnpass.passes.measure.onnx_runner import OnnxRunner
from ncnnpass.passes.measure.prepare import CLS_SHAPE
from ncnnpass.passes.measure.rec_preprocess import rec_tensor
from ncnnpass.passes.measure.samples import Sample

__all__ = ["OcrModels", "Line", "PageRun", "PageDiff", "OcrReport", "reading_order", "ocr_page", "ocr_compare"]

Infer = Callable[[str, np.ndarray], np.ndarray]  # (role "det" / "cls" / "rec", 1xCxHxW input) -> first output
Progress = Callable[[str], None] | None
ROW_TOLERANCE = 10  # pixels: boxes whose tops are closer are on one row (PaddleOCR's sorted_boxes)


def reading_order(boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Boxes sorted top to bottom by their first corner, then each moved left past the boxes of its row
    (tops within :data:`ROW_TOLERANCE` pixels) that start to its right."""
    out = sorted(boxes, key=lambda b: (float(b[0][1]), float(b[0][0])))
    for i in range(len(out) - 1):
        j = i
        while j >= 0 and abs(out[j + 1][0][1] - out[j][0][1]) < ROW_TOLERANCE and out[j + 1][0][0] < out[j][0][0]:
            out[j], out[j + 1] = out[j + 1], out[j]
            j -= 1
    return out


@dataclass
class OcrModels:
    """The three models (cls optional) and what their facts say about pre- and post-processing."""

    det: ModelFiles
    rec: ModelFiles
    cls: ModelFiles | None = None
    det_resize: DetResize = field(default_factory=DetResize)
    characters: list[str] | None = None  #: blank + dictionary (+ space), None: class ids
    drop_score: float = DROP_SCORE
    db: DBParams = field(default_factory=DBParams)

    @classmethod
    def of(cls, det: ModelFiles, rec: ModelFiles, classifier: ModelFiles | None = None) -> OcrModels:
        """With the detector's resize from its facts and the recogniser's characters when its dictionary fits
        the class count of its ONNX output (else strings are class ids)."""
        out = cls(det, rec, classifier, det_resize_for(det.model_dir))
        dims = OnnxRunner.cached(rec.onnx, num_threads=1).session.get_outputs()[0].shape
        classes = dims[-1] if dims and isinstance(dims[-1], int) else None
        charset = Charset.fitting(rec.info.dictionary, classes) if classes else None
        out.characters = charset.characters if charset is not None else None
        return out

    def graphs(self) -> dict[str, Graph]:
        out = {"det": Graph.load(self.det.param, self.det.bin), "rec": Graph.load(self.rec.param, self.rec.bin)}
        if self.cls is not None:
            out["cls"] = Graph.load(self.cls.param, self.cls.bin)
        return out


@dataclass
class Line:
    """One detected text line of one side: box (4x2, page pixels), string, confidence, the classifier's
    decision, and whether PaddleOCR keeps it (confidence >= drop_score)."""

    box: np.ndarray
    text: str
    score: float
    kept: bool
    angle: str | None = None
    angle_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"box": np.round(self.box, 1).tolist(), "text": self.text, "score": self.score,
                               "kept": self.kept}
        if self.angle is not None:
            out.update({"angle": self.angle, "angle_score": self.angle_score})
        return out


@dataclass
class PageRun:
    lines: list[Line]
    seconds: float
    error: str | None = None

    @property
    def kept(self) -> list[Line]:
        return [ln for ln in self.lines if ln.kept]


def ocr_page(img: np.ndarray, infer: Infer, models: OcrModels) -> list[Line]:
    """PaddleOCR's ``TextSystem`` on one BGR page through ``infer`` (see the module docstring)."""
    x, _ = det_tensor(img, models.det_resize)
    prob = np.asarray(infer("det", x), dtype=np.float32).squeeze()
    boxes, _ = db_boxes(prob, img.shape[:2], models.db)
    lines = []
    c, h, w = models.rec.info.input_shape
    for box in reading_order(boxes):
        crop = rotate_crop(img, box)
        angle = angle_score = None
        if models.cls is not None:
            t, _ = rec_tensor(crop, CLS_SHAPE, fixed_width=CLS_SHAPE[2])
            p = np.asarray(infer("cls", t[None]), dtype=np.float32).reshape(-1)
            k = int(p.argmax())
            angle, angle_score = (CLS_LABELS[k] if k < len(CLS_LABELS) else str(k)), float(p[k])
            if "180" in angle and angle_score > CLS_THRESH:
                crop = cv2.rotate(crop, cv2.ROTATE_180)
        t, _ = rec_tensor(crop, (c, h, w), fixed_width=models.rec.static_width)
        probs = np.asarray(infer("rec", t[None]), dtype=np.float32)
        text, score = greedy_decode(probs.reshape(-1, probs.shape[-1]), models.characters)
        lines.append(Line(box, text, score, score >= models.drop_score, angle, angle_score))
    return lines


def _onnx_infer(models: OcrModels) -> Infer:
    runners = {"det": OnnxRunner.cached(models.det.onnx, num_threads=1),
               "rec": OnnxRunner.cached(models.rec.onnx, num_threads=1)}
    if models.cls is not None:
        runners["cls"] = OnnxRunner.cached(models.cls.onnx, num_threads=1)
    return lambda role, x: runners[role].run_list(x)[0]


def _ncnn_infer(graphs: dict[str, Graph], session: Target | None, options: str) -> Infer:
    if session is None:  # x86: each net loaded once in this process
        from ncnnpass.ir.runtime import load

        nets = {role: load(g, options, 1) for role, g in graphs.items()}
        return lambda role, x: nets[role].run(x[0], graphs[role].outputs[0])[graphs[role].outputs[0]]

    def infer(role: str, x: np.ndarray) -> np.ndarray:
        g = graphs[role]
        return session.run(g, x[0], [g.outputs[0]], options, 1)[g.outputs[0]]

    return infer


def _timed(img: np.ndarray, infer: Infer, models: OcrModels) -> PageRun:
    t0 = time.perf_counter()
    try:
        return PageRun(ocr_page(img, infer, models), time.perf_counter() - t0)
    except RuntimeBridgeError as exc:
        return PageRun([], time.perf_counter() - t0, str(exc))


@dataclass
class PageDiff:
    """Both sides on one page and what differs (indices into each side's kept lines)."""

    sample: Sample
    reference: PageRun
    candidate: PageRun
    pairs: list[tuple[int, int]]  #: (reference line, candidate line) matched by box
    changed: list[tuple[int, int]]  #: matched pairs whose strings differ
    missing: list[int]  #: reference lines with no candidate box
    extra: list[int]  #: candidate lines with no reference box
    label_hits: dict[str, tuple[int, int, int]] = field(default_factory=dict)  #: side -> (tp, fp, fn) vs labels

    @property
    def differs(self) -> bool:
        return bool(self.changed or self.missing or self.extra or self.candidate.error)

    @property
    def identical(self) -> int:
        return len(self.pairs) - len(self.changed)

    def to_dict(self) -> dict[str, Any]:
        ref, cand = self.reference.kept, self.candidate.kept
        return {"sample": str(self.sample.provenance), "differs": self.differs,
                "reference": [ln.to_dict() for ln in ref], "candidate": [ln.to_dict() for ln in cand],
                "identical": self.identical, "error": self.candidate.error,
                "changed": [{"reference": ref[i].text, "candidate": cand[j].text, "box": np.round(ref[i].box, 1).tolist(),
                             "reference_score": ref[i].score, "candidate_score": cand[j].score} for i, j in self.changed],
                "missing": [ref[i].to_dict() for i in self.missing], "extra": [cand[j].to_dict() for j in self.extra],
                "labels": {k: dict(zip(("matched", "extra", "missed"), v, strict=True))
                           for k, v in self.label_hits.items()},
                "seconds": {"reference": self.reference.seconds, "candidate": self.candidate.seconds}}


def _diff(sample: Sample, ref: PageRun, cand: PageRun) -> PageDiff:
    r, c = ref.kept, cand.kept
    m = match_boxes([x.box for x in c], [x.box for x in r])
    pairs = sorted((ri, ci) for ci, ri, _ in m.pairs)
    changed = [(ri, ci) for ri, ci in pairs if r[ri].text != c[ci].text]
    out = PageDiff(sample, ref, cand, pairs, changed, sorted(m.missed_references), sorted(m.unmatched_detections))
    if sample.boxes:
        gt = [b.points for b in sample.boxes]
        ignore = [b.ignore for b in sample.boxes]
        for side, lines in (("reference", r), ("candidate", c)):
            lm = match_boxes([x.box for x in lines], gt, ignore)
            tp = sum(lines[d].text == sample.boxes[g].text for d, g, _ in lm.pairs)
            out.label_hits[side] = (tp, len(lines) - len(lm.ignored_detections) - tp,
                                    sum(not b.ignore for b in sample.boxes) - tp)
    return out


@dataclass
class OcrReport:
    """Every page's :class:`PageDiff` and the totals (see the module docstring)."""

    pages: list[PageDiff]
    reference: str
    candidate: str
    data: str
    seconds: dict[str, float] = field(default_factory=dict)

    def numbers(self) -> dict[str, Any]:
        ref = sum(len(p.reference.kept) for p in self.pages)
        cand = sum(len(p.candidate.kept) for p in self.pages)
        same = sum(p.identical for p in self.pages)
        precision, recall, f = prf(same, cand - same, ref - same)
        out: dict[str, Any] = {
            "pages": len(self.pages), "pages_identical": sum(not p.differs for p in self.pages),
            "reference_lines": ref, "candidate_lines": cand, "matched_boxes": sum(len(p.pairs) for p in self.pages),
            "identical": same, "changed": sum(len(p.changed) for p in self.pages),
            "missing": sum(len(p.missing) for p in self.pages), "extra": sum(len(p.extra) for p in self.pages),
            "precision": precision, "recall": recall, "f": f,
            "failed_pages": sum(p.candidate.error is not None for p in self.pages)}
        labelled = [p for p in self.pages if p.label_hits]
        if labelled:
            out["labelled_pages"] = len(labelled)
            for side in ("reference", "candidate"):
                tp, fp, fn = (sum(p.label_hits[side][k] for p in labelled) for k in range(3))
                out[f"{side}_f_vs_labels"] = prf(tp, fp, fn)[2]
        return out

    def render(self, examples: int = 5) -> list[str]:
        n = self.numbers()
        out = [f"end to end on {self.data}: {self.candidate} against {self.reference}",
               f"  results identical {n['identical']} of {n['reference_lines']} reference / {n['candidate_lines']} "
               f"candidate lines (F {n['f']:.4f}); {n['pages_identical']}/{n['pages']} pages identical; "
               f"{n['changed']} strings differ, {n['missing']} lines missing, {n['extra']} extra"]
        if "labelled_pages" in n:
            out.append(f"  against the labels of {n['labelled_pages']} pages (box IoU >= 0.5 and the same string): "
                       f"F reference {n['reference_f_vs_labels']:.4f}, candidate {n['candidate_f_vs_labels']:.4f}")
        if n["failed_pages"]:
            first = next(p for p in self.pages if p.candidate.error)
            out.append(f"  {n['failed_pages']} pages failed on the candidate; first: {first.candidate.error}")
        shown = 0
        for p in self.pages:
            if not p.differs or shown >= examples:
                continue
            shown += 1
            ref, cand = p.reference.kept, p.candidate.kept
            bits = [f"{ref[i].text!r} -> {cand[j].text!r}" for i, j in p.changed[:3]]
            bits += [f"missing {ref[i].text!r}" for i in p.missing[:2]] + [f"extra {cand[j].text!r}" for j in p.extra[:2]]
            out.append(f"    {p.sample.provenance}: {'; '.join(bits)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "candidate": self.candidate, "data": self.data,
                "numbers": self.numbers(), "seconds": self.seconds, "pages": [p.to_dict() for p in self.pages]}


def ocr_compare(pages: Sequence[Sample], models: OcrModels, *, target: str = "x86", options: str = "default",
                workers: int = 2, progress: Progress = None, data: str = "") -> OcrReport:
    """Both pipelines on every page (see the module docstring): onnxruntime in this process, ncnn on
    ``target`` (x86 here; a worker target on ``workers`` sessions in parallel, one page per job)."""
    if not pages:
        raise NcnnpassError("no pages to read")
    say = progress or (lambda _m: None)
    target = normalize_target(target)
    images = [s.image() for s in pages]
    t0 = time.perf_counter()
    reference = _onnx_infer(models)
    refs = []
    for i, img in enumerate(images):
        refs.append(_timed(img, reference, models))
        say(f"onnxruntime: page {i + 1}/{len(images)}, {len(refs[-1].lines)} lines")
    t1 = time.perf_counter()
    graphs = models.graphs()
    if target == "x86":
        infer = _ncnn_infer(graphs, None, options)
        cands = []
        for i, img in enumerate(images):
            cands.append(_timed(img, infer, models))
            say(f"ncnn x86: page {i + 1}/{len(images)}, {len(cands[-1].lines)} lines")
    else:
        with TargetPool(target, max(1, min(workers, len(images)))) as pool:
            cands = pool.spread(images, lambda session, img: _timed(img, _ncnn_infer(graphs, session, options), models))
    t2 = time.perf_counter()
    diffs = [_diff(s, r, c) for s, r, c in zip(pages, refs, cands, strict=True)]
    opts = "" if options == "default" else f", {options} options"
    return OcrReport(diffs, "onnxruntime", f"ncnn on {describe_target(target)}{opts}", data,
                     {"onnxruntime": t1 - t0, "ncnn": t2 - t1})
