"""``ncnnpass ocr`` (``passes/compare/ocr.py``, ``ocr_draw.py``): det → reading order and rotate-crop → cls → rec,
ncnn against onnxruntime, per page and over all pages.

Unit tests: the reading order, the per-page differences and the totals. Real (x86): PP-OCRv3 det and rec with
the mobile v2 classifier on built-in pages, the ncnn side under bf16 storage (so that strings really
change); both sides are checked against an independent end-to-end computation: rapidocr_onnxruntime 1.2.3's
own pipeline (``RapidOCR.__call__``: its detector, box sorting, crops, classifier, recogniser and score
filter), once with its onnxruntime sessions and once with ncnn behind the same calls, and the agreement
numbers against a count made from those two results with shapely's IoU.

rapidocr's deviations from PaddleOCR, set or accounted for here: its detector settings (we pass PaddleOCR's
960/max, box_thresh 0.6, unclip 1.5, no dilation), its recogniser's canvas (at least 320 wide as in
PaddleOCR's predict_rec, patched), batches of one, its confidence ``mean(kept + [1e-50])`` (one extra element:
we filter at drop_score ourselves), its box corner order (we compare corner sets), its single-pass row sort.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import fixtures
import numpy as np
import pytest

from ncnnpass.cli.main import main
from ncnnpass.passes.compare.ocr import Line, OcrReport, PageRun, _diff, reading_order
from ncnnpass.passes.measure.samples import Provenance, Sample, TextBox


def _box(x: float, y: float, w: float = 40, h: float = 12) -> np.ndarray:
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)


def test_reading_order_is_rows_then_left_to_right() -> None:
    row = [_box(300, 105), _box(200, 101), _box(100, 108)]  # one row (tops within 10 px), right to left
    below = _box(50, 130)
    out = reading_order([below, *row])
    assert [float(b[0][0]) for b in out] == [100, 200, 300, 50]  # a single bubble pass would leave 200 first
    assert [float(b[0][0]) for b in reading_order([_box(100, 100), _box(10, 110)])] == [100, 10]  # 10 px: next row


def _line(x: float, text: str, score: float = 0.9) -> Line:
    return Line(_box(x, 10), text, score, score >= 0.5)


def test_page_differences_and_totals() -> None:
    truth = (TextBox(_box(0, 10), "alpha"), TextBox(_box(100, 10), "beta"), TextBox(_box(200, 10), "###"))
    sample = Sample(Provenance("builtin-pages", "builtin-pages", seed=0, index=0), boxes=truth)
    ref = PageRun([_line(0, "alpha"), _line(100, "beta"), _line(300, "gamma"), _line(400, "low", 0.4)], 1.0)
    cand = PageRun([_line(1, "alpha"), _line(100, "bata"), _line(500, "new"), _line(400, "low", 0.6)], 1.0)
    d = _diff(sample, ref, cand)
    assert d.pairs == [(0, 0), (1, 1)] and d.changed == [(1, 1)] and d.missing == [2]
    assert d.extra == [2, 3]  # "low" crossed drop_score: kept by the candidate only
    assert d.label_hits == {"reference": (2, 1, 0), "candidate": (1, 3, 1)}
    same = _diff(sample, ref, PageRun(list(ref.lines), 1.0))
    n = OcrReport([d, same], "onnxruntime", "ncnn", "2 pages").numbers()
    assert (n["reference_lines"], n["candidate_lines"], n["identical"]) == (6, 7, 4)
    assert (n["changed"], n["missing"], n["extra"], n["pages_identical"]) == (1, 1, 2, 1)
    assert n["precision"] == pytest.approx(4 / 7) and n["recall"] == pytest.approx(4 / 6)
    text = "\n".join(OcrReport([d, same], "onnxruntime", "ncnn", "2 pages").render())
    assert "'beta' -> 'bata'" in text and "missing 'gamma'" in text and "extra 'new'" in text


# -------------------------------------------------------------------------------- real models, x86


@pytest.fixture(scope="module")
def models() -> dict[str, str]:
    det_onnx = fixtures.require(fixtures.ppocrv3_det_onnx, "PP-OCRv3 det ONNX")
    det_param, _ = fixtures.require(lambda: fixtures.ppocrv3_det_ncnn_any_size(False), "PP-OCRv3 det, convert output")
    rec_onnx = fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX")
    rec_param, _ = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn_any_width(False), "PP-OCRv3 rec, pnnx")
    cls_onnx = fixtures.require(fixtures.ppocrv2_cls_onnx, "mobile v2 cls ONNX")
    cls_param, _ = fixtures.require(lambda: fixtures.converted_pnnx("ppocrv2-cls"), "mobile v2 cls, pnnx")
    outdir = Path(det_param).parent.parent  # convert's OUTDIR: model.onnx + the repaired model.ncnn.*
    assert (outdir / "model.onnx").is_file() and Path(det_onnx).is_file()
    return {"det": str(outdir), "rec": f"{rec_onnx},{rec_param}", "cls": f"{cls_onnx},{cls_param}",
            "det_onnx": str(outdir / "model.onnx"), "det_param": str(outdir / "model.ncnn.param"),
            "rec_onnx": str(rec_onnx), "rec_param": str(rec_param), "cls_onnx": str(cls_onnx), "cls_param": str(cls_param)}


def _rapidocr(models: dict[str, str], ncnn_options: str | None) -> object:
    """rapidocr's RapidOCR pipeline with PaddleOCR's settings; ``ncnn_options``: ncnn behind its model calls."""
    root = fixtures.require(fixtures.rapidocr_code, "rapidocr_onnxruntime 1.2.3's code (pip download)")
    sys.path.insert(0, str(root))
    from rapidocr_onnxruntime.ch_ppocr_v2_cls.text_cls import TextClassifier
    from rapidocr_onnxruntime.ch_ppocr_v3_det.text_detect import TextDetector
    from rapidocr_onnxruntime.ch_ppocr_v3_rec.text_recognize import TextRecognizer
    from rapidocr_onnxruntime.rapid_ocr_api import RapidOCR
    from rapidocr_onnxruntime.utils import LoadImage

    det = TextDetector({"use_cuda": False, "model_path": models["det_onnx"], "limit_side_len": 960, "limit_type": "max",
                        "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000, "unclip_ratio": 1.5,
                        "use_dilation": False, "score_mode": "fast"})
    cls = TextClassifier({"use_cuda": False, "model_path": models["cls_onnx"], "cls_image_shape": [3, 48, 192],
                          "cls_batch_num": 1, "cls_thresh": 0.9, "label_list": ["0", "180"]})
    rec = TextRecognizer({"use_cuda": False, "model_path": models["rec_onnx"], "rec_img_shape": [3, 48, 320],
                          "rec_batch_num": 1})
    rec.resize_norm_img = lambda img, ratio: TextRecognizer.resize_norm_img(rec, img, max(320 / 48, ratio))
    if ncnn_options is not None:
        from ncnnpass.ir import Graph
        from ncnnpass.ir.runtime import load

        def behind(param: str, rank: int) -> types.FunctionType:
            """ncnn's output (no batch dim) with the leading 1-dims onnxruntime gives (rank 4, 2 or 3)."""
            g = Graph.load(param, str(Path(param).with_suffix(".bin")))
            net = load(g, ncnn_options, 1)

            def run(x: np.ndarray) -> list[np.ndarray]:
                y = net.run(x[0], g.outputs[0])[g.outputs[0]]
                return [y.reshape((1,) * (rank - y.ndim) + y.shape)]

            return run

        det.infer = behind(models["det_param"], 4)
        cls.infer = behind(models["cls_param"], 2)
        rec.session = behind(models["rec_param"], 3)
    engine = RapidOCR.__new__(RapidOCR)
    engine.__dict__.update(print_verbose=False, text_score=0.0, min_height=30, width_height_ratio=8,
                           use_text_det=True, text_detector=det, text_recognizer=rec, use_angle_cls=True,
                           text_cls=cls, load_img=LoadImage())
    return engine


def _read(engine, img: np.ndarray) -> list[tuple[frozenset, str]]:
    found, _ = engine(img)
    out = []
    for box, text, score in found or []:
        n = len(text)
        if n and float(score) * (n + 1) / n >= 0.5:  # PaddleOCR's confidence and drop_score
            out.append((frozenset(tuple(map(float, p)) for p in box), text))
    return out


def _ours(lines: list[dict]) -> list[tuple[frozenset, str]]:
    return [(frozenset(tuple(map(float, p)) for p in ln["box"]), ln["text"]) for ln in lines]


def _agreement(ref: list[tuple[frozenset, str]], cand: list[tuple[frozenset, str]]) -> tuple[int, int, int, int]:
    """(identical, changed, missing, extra) by shapely IoU >= 0.5, greedy, one to one."""
    from shapely.geometry import MultiPoint

    def poly(corners: frozenset):
        return MultiPoint(list(corners)).convex_hull

    pairs = sorted(((-poly(a).intersection(poly(b)).area / poly(a).union(poly(b)).area, i, j)
                    for i, (a, _) in enumerate(ref) for j, (b, _) in enumerate(cand)))
    used_r, used_c, matched = set(), set(), []
    for neg, i, j in pairs:
        if -neg >= 0.5 and i not in used_r and j not in used_c:
            used_r.add(i)
            used_c.add(j)
            matched.append((i, j))
    same = sum(ref[i][1] == cand[j][1] for i, j in matched)
    return same, len(matched) - same, len(ref) - len(matched), len(cand) - len(matched)


@pytest.mark.real
@pytest.mark.slow
def test_ocr_bf16_against_rapidocr_end_to_end(models, tmp_path: Path, capsys) -> None:
    from ncnnpass.passes.measure.task_data import builtin_part

    out, js = tmp_path / "ocr", tmp_path / "ocr.json"
    code = main(["ocr", "--det", models["det"], "--rec", models["rec"], "--cls", models["cls"], "--pages", "2",
                 "--options", "bf16", "-o", str(out), "--json", str(js), "--strict", "-q"])
    text = capsys.readouterr().out
    doc = json.loads(js.read_text())
    n = doc["numbers"]
    assert code == (3 if n["pages_identical"] < 2 else 0), text
    assert n["pages"] == 2 and n["reference_lines"] >= 20 and "ncnn on x86, bf16 options against onnxruntime" in text
    assert n["changed"] >= 1, "bf16 storage was expected to change at least one string on these pages"
    assert doc["models"]["rec"]["facts"].startswith("rec") and doc["models"]["det"]["param"].endswith("model.ncnn.param")
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 - n["pages_identical"] and (out / "ocr.json").is_file()
    reference, candidate = _rapidocr(models, None), _rapidocr(models, "bf16")
    totals = np.zeros(4, int)
    from ncnnpass.passes.measure.model_files import model_facts

    chars = model_facts(models["rec_onnx"])[0].dictionary
    for sample, page in zip(builtin_part("det", 2, dictionary=chars).samples, doc["pages"], strict=True):
        img = sample.image()
        want_ref, want_cand = _read(reference, img), _read(candidate, img)
        assert sorted(_ours(page["reference"]), key=str) == sorted(want_ref, key=str), page["sample"]
        assert sorted(_ours(page["candidate"]), key=str) == sorted(want_cand, key=str), page["sample"]
        totals += _agreement(want_ref, want_cand)
    assert tuple(totals) == (n["identical"], n["changed"], n["missing"], n["extra"])
    # the cls turned nothing here (the built-in pages are upright) but ran on every line of both sides
    assert all("angle" in ln for p in doc["pages"] for ln in p["reference"] + p["candidate"])
    assert "labels_outside_dictionary" not in doc  # the built-in pages are drawn in the recogniser's characters


@pytest.mark.real
def test_ocr_bad_input_is_one_line(models, tmp_path: Path, capsys) -> None:
    for args, words in ((["--det", models["rec"], "--rec", models["rec"]], "this is a rec model"),
                        (["--det", models["det"], "--rec", models["rec"], str(tmp_path / "none")],
                         "no such file or directory"),
                        (["--det", models["det"], "--rec", "a.onnx,b.param,c.bin,d"], "expected a convert output"),
                        (["--det", models["det"], "--rec", models["rec"], "--annotate-all"], "needs -o OUTDIR")):
        assert main(["ocr", *args, "-q"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
