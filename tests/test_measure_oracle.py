"""The measurement core against an independent computation, on real models.

Oracle: rapidocr_onnxruntime 1.2.3 (the wheel the fixtures already download), an independent port of
PaddleOCR's inference pre- and post-processing, imported from the extracted wheel at test time. Models:
PP-OCRv3 det and rec and the mobile v2 direction classifier (ONNX, onnxruntime). The candidate side is the
same model fed its input rounded to fp16 (what a phone's fp16 storage does to the first blob): a real,
small perturbation, so the metrics have something to count.

rapidocr's deviations from PaddleOCR, accounted for here: its line confidence is ``mean(kept + [1e-50])``
(one extra element), its detector config differs (box_thresh 0.5, unclip 1.6, dilation: we pass
PaddleOCR's values), and it sorts box corners by x then y (we compare corner sets).
"""

from __future__ import annotations

import sys
import types
from functools import cache

import fixtures
import numpy as np
import pytest

from ncnnpass.passes.measure.ctc_decode import Charset, dictionary_from_metadata, greedy_decode
from ncnnpass.passes.measure.det_preprocess import DetResize
from ncnnpass.passes.measure.metrics import metric_for
from ncnnpass.passes.measure.metrics.db_postprocess import db_boxes
from ncnnpass.passes.measure.prepare import prepare_inputs
from ncnnpass.passes.measure.rec_preprocess import rec_tensor

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def rapidocr() -> types.SimpleNamespace:
    root = fixtures.require(fixtures.rapidocr_code, "rapidocr_onnxruntime 1.2.3's code (pip download)")

    def load():
        sys.path.insert(0, str(root))
        from rapidocr_onnxruntime.ch_ppocr_v2_cls.text_cls import TextClassifier
        from rapidocr_onnxruntime.ch_ppocr_v2_cls.utils import ClsPostProcess
        from rapidocr_onnxruntime.ch_ppocr_v3_det import utils as det_utils
        from rapidocr_onnxruntime.ch_ppocr_v3_det.text_detect import TextDetector
        from rapidocr_onnxruntime.ch_ppocr_v3_rec.text_recognize import TextRecognizer
        from rapidocr_onnxruntime.ch_ppocr_v3_rec.utils import CTCLabelDecode
        from rapidocr_onnxruntime.utils import read_yaml

        config = read_yaml(str(root / "rapidocr_onnxruntime" / "config.yaml"))
        return types.SimpleNamespace(det=det_utils, TextDetector=TextDetector, TextRecognizer=TextRecognizer,
                                     CTCLabelDecode=CTCLabelDecode, TextClassifier=TextClassifier,
                                     ClsPostProcess=ClsPostProcess, config=config)

    return fixtures.require(load, "rapidocr 1.2.3 importable (needs shapely, six, pyclipper: pip install -e .[test])")


@pytest.fixture(scope="module")
def builtin():
    from ncnnpass.passes.measure.synth import builtin_data, builtin_lines

    return fixtures.require(lambda: types.SimpleNamespace(data=builtin_data, lines=builtin_lines),
                            "fonts and word lists for the built-in data (bash .ci/install)")


@cache
def _session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _run(path: str, inputs, fp16_input: bool = False) -> list[np.ndarray]:
    sess = _session(path)
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: i.tensor.astype(np.float16).astype(np.float32) if fp16_input else i.tensor})[0]
            for i in inputs]


def _shapely_iou(a: np.ndarray, b: np.ndarray) -> float:
    from shapely.geometry import Polygon

    pa, pb = Polygon(a), Polygon(b)
    return pa.intersection(pb).area / pa.union(pb).area


def test_det_preprocessing_and_boxes_equal_the_oracle(rapidocr, builtin) -> None:
    onnx = str(fixtures.require(fixtures.ppocrv3_det_onnx, "PP-OCRv3 det ONNX (rapidocr_onnxruntime 1.2.3)"))
    pages = builtin.data("det", 8, seed=5)
    inputs = prepare_inputs(pages.samples, "det", det_resize=DetResize(960, "max"))
    resize = rapidocr.det.DetResizeForTest(limit_side_len=960, limit_type="max")
    norm = rapidocr.det.NormalizeImage(scale=1.0 / 255.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225],
                                       order="hwc")
    post = rapidocr.det.DBPostProcess(thresh=0.3, box_thresh=0.6, max_candidates=1000, unclip_ratio=1.5,
                                      score_mode="fast", use_dilation=False)
    detector = rapidocr.TextDetector.__new__(rapidocr.TextDetector)  # only its box filter is used
    ref = _run(onnx, inputs)
    cand = _run(onnx, inputs, fp16_input=True)
    tp = fp = fn = boxes = 0
    for inp, r, c in zip(inputs, ref, cand, strict=True):
        img = inp.sample.image()
        theirs = norm(resize({"image": img.copy()}))["image"].transpose(2, 0, 1)[None]
        assert np.array_equal(theirs, inp.tensor), inp.sample.provenance  # bit-identical input
        shape = np.array([[img.shape[0], img.shape[1], *inp.ratio_hw]])
        per_side = []
        for m in (r, c):
            want = detector.filter_tag_det_res(post(m, shape)[0]["points"], img.shape[:2])
            got, _ = db_boxes(m[0, 0], inp.src_hw)
            assert sorted(map(lambda b: sorted(map(tuple, b.tolist())), got)) == \
                sorted(map(lambda b: sorted(map(tuple, b.tolist())), want)), inp.sample.provenance
            per_side.append(list(want))
        boxes += len(per_side[0])
        # independent matching: shapely IoU, greedy by IoU, one to one
        pairs = sorted(((-_shapely_iou(a, b), i, j) for i, a in enumerate(per_side[1])
                        for j, b in enumerate(per_side[0])), key=lambda x: x)
        used_c, used_r = set(), set()
        for neg, i, j in pairs:
            if -neg >= 0.5 and i not in used_c and j not in used_r:
                used_c.add(i)
                used_r.add(j)
        tp += len(used_c)
        fp += len(per_side[1]) - len(used_c)
        fn += len(per_side[0]) - len(used_r)
    assert boxes > 8 * 6
    res = metric_for("det").evaluate(ref, cand, inputs).numbers
    p, rc = tp / (tp + fp), tp / (tp + fn)
    assert (res["precision"], res["recall"]) == (pytest.approx(p), pytest.approx(rc))
    assert res["f"] == pytest.approx(2 * p * rc / (p + rc))
    want_flips = sum(int(np.count_nonzero((a > 0.3) != (b > 0.3))) for a, b in zip(ref, cand, strict=True))
    assert res["flipped_pixels"] == want_flips > 0
    assert res["max_map_diff"] == pytest.approx(max(float(np.abs(a - b).max()) for a, b in zip(ref, cand, strict=True)))


def _levenshtein(a: str, b: str) -> int:
    @cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


def test_rec_preprocessing_decoding_and_metric_equal_the_oracle(rapidocr, builtin) -> None:
    import onnx as onnx_lib

    onnx = str(fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX (rapidocr_onnxruntime 1.2.3)"))
    chars = dictionary_from_metadata(onnx_lib.load(onnx, load_external_data=False))
    lines = builtin.lines(60, seed=11, dictionary=chars)
    fake = types.SimpleNamespace(rec_image_shape=[3, 48, 320])
    for s in lines.samples:
        img = s.image()
        ratio = max(320 / 48, img.shape[1] / img.shape[0])  # predict_rec's batch of one
        assert np.array_equal(rec_tensor(img, (3, 48, 320), ratio)[0],
                              rapidocr.TextRecognizer.resize_norm_img(fake, img, ratio)), s.provenance
    inputs = prepare_inputs(lines.samples, "rec")
    ref = _run(onnx, inputs)
    cand = _run(onnx, inputs, fp16_input=True)
    decoder = rapidocr.CTCLabelDecode(list(chars))
    charset = Charset.fitting(chars, ref[0].shape[-1])
    decoded = []
    for r, c in zip(ref, cand, strict=True):
        pair = []
        for m in (r, c):
            (text, conf), = decoder(m)
            ours = greedy_decode(m[0], charset.characters)
            n = len(text)
            assert ours[0] == text
            assert conf == pytest.approx(ours[1] * n / (n + 1) if n else 1e-50, abs=1e-6)  # rapidocr's extra element
            pair.append((text, ours[1]))
        decoded.append(pair)
    res = metric_for("rec", dictionary=chars).evaluate(ref, cand, inputs).numbers
    assert res["identical"] == sum(a[0] == b[0] for a, b in decoded)
    assert res["max_conf_change"] == pytest.approx(max(abs(a[1] - b[1]) for a, b in decoded), abs=1e-7)
    assert res["drop_score_crossings"] == sum((a[1] >= 0.5) != (b[1] >= 0.5) for a, b in decoded)
    edits = sum(_levenshtein(a[0], s.text) for (a, _), s in zip(decoded, lines.samples, strict=True))
    assert res["cer_reference"] == pytest.approx(edits / sum(len(s.text) for s in lines.samples))
    # the built-in lines are realistic but readable: PP-OCRv3 reads most of them exactly
    assert res["accuracy_reference"] > 0.6 and res["cer_reference"] < 0.1


def test_cls_preprocessing_and_metric_equal_the_oracle(rapidocr, builtin) -> None:
    onnx = str(fixtures.require(fixtures.ppocrv2_cls_onnx, "mobile v2 cls ONNX (rapidocr_onnxruntime 1.2.3)"))
    data = builtin.data("cls", 60, seed=2)
    inputs = prepare_inputs(data.samples, "cls")
    fake = types.SimpleNamespace(cls_image_shape=[3, 48, 192])
    for i in inputs:
        assert np.array_equal(i.tensor[0], rapidocr.TextClassifier.resize_norm_img(fake, i.sample.image()))
    ref = _run(onnx, inputs)
    cand = _run(onnx, inputs, fp16_input=True)
    post = rapidocr.ClsPostProcess(["0", "180"])
    res = metric_for("cls").evaluate(ref, cand, inputs)
    theirs = [(post(r)[0][0], post(c)[0][0]) for r, c in zip(ref, cand, strict=True)]
    assert [(p["reference"], p["candidate"]) for p in res.per_sample] == theirs
    assert res.numbers["agreement"] == sum(a == b for a, b in theirs)
    truth = [s.orientation for s in data.samples]
    assert res.numbers["accuracy_reference"] == pytest.approx(sum(a == t for (a, _), t in zip(theirs, truth, strict=True)) / 60)
    assert res.numbers["accuracy_reference"] > 0.9  # the turned lines are really turned


def test_cls_rotation_decisions_equal_the_oracle(rapidocr, builtin) -> None:
    """PaddleOCR turns a crop when the label is 180 *and* its score passes cls_thresh: the metric's
    ``rotation_flips`` must count the lines whose turn differs, including those whose label stays 180 while its
    score crosses the threshold. Oracle: rapidocr's TextClassifier itself (its own cls_thresh from its config,
    its own turning of the image), fed the model's outputs. The candidate is the same model on the input at a
    tenth of its contrast: a strong, real perturbation that changes turns both ways (5 of 60 lines, 2 labels)."""
    onnx = str(fixtures.require(fixtures.ppocrv2_cls_onnx, "mobile v2 cls ONNX (rapidocr_onnxruntime 1.2.3)"))
    data = builtin.data("cls", 60, seed=2)
    inputs = prepare_inputs(data.samples, "cls")
    sess = _session(onnx)
    name = sess.get_inputs()[0].name

    def turned(contrast: float) -> list[bool]:
        clf = rapidocr.TextClassifier.__new__(rapidocr.TextClassifier)
        cls_cfg = rapidocr.config["Cls"]
        clf.cls_image_shape, clf.cls_batch_num = cls_cfg["cls_image_shape"], 1
        clf.cls_thresh = cls_cfg["cls_thresh"]
        clf.postprocess_op = rapidocr.ClsPostProcess(cls_cfg["label_list"])
        clf.infer = lambda batch: sess.run(None, {name: (batch * contrast).astype(np.float32)})
        images = [s.image() for s in data.samples]
        out, _, _ = clf(images)
        return [not np.array_equal(a, b) for a, b in zip(images, out, strict=True)]

    ref_turns, cand_turns = turned(1.0), turned(0.1)
    ref = _run(onnx, inputs)
    cand = [sess.run(None, {name: (i.tensor * 0.1).astype(np.float32)})[0] for i in inputs]
    res = metric_for("cls").evaluate(ref, cand, inputs)
    theirs = [a != b for a, b in zip(ref_turns, cand_turns, strict=True)]
    assert [p["rotation_flip"] for p in res.per_sample] == theirs
    assert res.numbers["rotation_flips"] == sum(theirs) > 0
    label_flips = res.numbers["lines"] - res.numbers["agreement"]
    assert sum(theirs) > label_flips  # some turns flip with the label unchanged: the score crossed cls_thresh
    assert sum(ref_turns) > 10  # the built-in data has turned lines, and the reference turns them
