"""Unit tests of the task metrics: edit distance/CER, polygon IoU (against shapely), matching and P/R/F,
greedy CTC decoding, and the rec/det/cls metrics on hand-made outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncnnpass.passes.measure.ctc_decode import Charset, greedy_decode
from ncnnpass.passes.measure.metrics import MetricError, metric_for
from ncnnpass.passes.measure.metrics.db_postprocess import db_boxes, order_clockwise
from ncnnpass.passes.measure.metrics.edit_distance import cer, edit_distance
from ncnnpass.passes.measure.metrics.matching import match_boxes, prf
from ncnnpass.passes.measure.metrics.polygons import iou, polygon_area
from ncnnpass.passes.measure.model_input import ModelInput
from ncnnpass.passes.measure.samples import Provenance, Sample, TextBox


def _inp(i: int, text: str | None = None, boxes=None, hw=(48, 200), orientation=None) -> ModelInput:
    s = Sample(Provenance("builtin-lines", "t", seed=0, index=i, key=str(i)), text=text, boxes=boxes,
               orientation=orientation)
    return ModelInput(s, np.zeros((1, 3, 8, 8), np.float32), hw)


def test_edit_distance_and_cer() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance("中文识别", "中文识剐") == 1
    assert edit_distance("the markers", "themarkers") == 1
    assert cer(["abc", "xy"], ["abd", "xyz"]) == pytest.approx(2 / 6)
    assert cer([""], [""]) == 0.0
    with pytest.raises(ValueError):
        cer(["a"], [])


def test_polygon_iou_against_shapely() -> None:
    shapely = pytest.importorskip("shapely.geometry")
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        a = rng.uniform(0, 100, (4, 2))
        b = a + rng.uniform(-25, 25, (4, 2))
        pa, pb = shapely.Polygon(a), shapely.Polygon(b)
        if not (pa.is_valid and pb.is_valid) or pa.area < 1 or pb.area < 1:
            continue  # self-intersecting quads: shapely's area is not the covered area
        want = pa.intersection(pb).area / pa.union(pb).area
        assert iou(a, b) == pytest.approx(want, abs=2e-3)
        assert polygon_area(a) == pytest.approx(pa.area, rel=1e-3, abs=0.05)
        checked += 1
    assert checked > 100
    sq = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    assert iou(sq, sq) == pytest.approx(1.0)
    assert iou(sq, sq + 20) == 0.0
    assert iou(sq, sq + [5, 0]) == pytest.approx(50 / 150)
    assert iou(sq, np.array([[0, 0], [1, 1], [2, 2]], float)) == 0.0  # degenerate


def test_matching_is_one_to_one_at_half_iou_and_ignores_dont_care() -> None:
    sq = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    refs = [sq, sq + [100, 0], sq + [200, 0]]
    dets = [sq + [1, 0], sq + [2, 0], sq + [100 + 6, 0], sq + [300, 0]]
    m = match_boxes(dets, refs)
    assert [(d, r) for d, r, _ in m.pairs] == [(0, 0)]  # det 1 overlaps ref 0 too but ref 0 is taken
    assert m.unmatched_detections == [1, 2, 3]  # det 2: IoU 4/16 < 0.5
    assert m.missed_references == [1, 2]
    assert m.precision_recall_f == pytest.approx((0.25, 1 / 3, 2 * 0.25 / 3 / (0.25 + 1 / 3)))
    # a detection inside a "###" region counts neither way, nor does the region
    ign = match_boxes([sq + [200, 0]], refs, ignore=[False, False, True])
    assert ign.ignored_detections == [0] and ign.fp == 0 and ign.missed_references == [0, 1]
    assert prf(0, 0, 0) == (1.0, 1.0, 1.0)
    assert prf(0, 3, 0)[0] == 0.0


def test_greedy_decode_has_ctc_label_decode_semantics() -> None:
    charset = Charset(["a", "b"], use_space_char=True)  # blank, a, b, " "
    frames = np.eye(4, dtype=np.float32)[[1, 1, 0, 1, 3, 2, 2]] * 0.9
    frames[0, 1] = 0.7
    text, conf = greedy_decode(frames, charset.characters)
    assert text == "aa b"
    assert conf == pytest.approx(np.mean([0.7, 0.9, 0.9, 0.9]))  # kept frames: 0, 3, 4, 5
    assert greedy_decode(np.eye(4, dtype=np.float32)[[0, 0]], charset.characters) == ("", 0.0)
    assert greedy_decode(np.eye(4, dtype=np.float32)[[2, 0, 2]], None)[0] == "<2><2>"
    assert Charset.fitting(["a", "b"], 4).use_space_char and not Charset.fitting(["a", "b"], 3).use_space_char
    assert Charset.fitting(["a", "b"], 9) is None


def _probs(ids: list[int], conf: float, classes: int = 4) -> np.ndarray:
    p = np.full((len(ids), classes), (1 - conf) / (classes - 1), np.float32)
    p[np.arange(len(ids)), ids] = conf
    return p[None]


def test_rec_metric_strings_confidence_drop_score_and_cer() -> None:
    metric = metric_for("rec", dictionary=["a", "b"])
    ref = [_probs([1, 0, 2], 0.9), _probs([1, 2], 0.55), _probs([3, 1], 0.8)]
    cand = [_probs([1, 0, 2], 0.88), _probs([1, 2], 0.45), _probs([3, 2], 0.8)]
    inputs = [_inp(0, "ab"), _inp(1, "ab"), _inp(2, " aé")]
    res = metric.evaluate(ref, cand, inputs)
    n = res.numbers
    assert (n["lines"], n["identical"], n["drop_score_crossings"]) == (3, 2, 1)
    assert n["max_conf_change"] == pytest.approx(0.1, abs=1e-6)
    assert n["max_prob_diff"] == pytest.approx(0.8 - (0.2 / 3), abs=1e-6)  # line 2 frame 1: a 0.8 -> 0.067
    # labels as the dictionary spells them: " aé" -> " a"; reference " a" exact, candidate " b" one edit
    assert res.per_sample[2]["label"] == " a"
    assert n["cer_reference"] == pytest.approx(0 / 6) and n["cer_candidate"] == pytest.approx(1 / 6)
    assert n["accuracy_reference"] == 1.0 and n["accuracy_candidate"] == pytest.approx(2 / 3)
    assert res.differing()[0]["candidate"] == " b"
    json.dumps(res.to_dict())  # plain data
    text = "\n".join(res.render())
    assert "strings identical 2/3" in text and "' a'" in text
    with pytest.raises(MetricError, match="3 samples but 2 reference"):
        metric.evaluate(ref[:2], cand, inputs)


def test_cls_metric_agreement_and_rotation_flips() -> None:
    metric = metric_for("cls")
    ref = [np.array([[0.95, 0.05]]), np.array([[0.05, 0.95]]), np.array([[0.3, 0.7]])]
    cand = [np.array([[0.90, 0.10]]), np.array([[0.12, 0.88]]), np.array([[0.6, 0.4]])]
    res = metric.evaluate(ref, cand, [_inp(0, orientation="0"), _inp(1, orientation="180"), _inp(2, orientation="180")])
    n = res.numbers
    assert (n["agreement"], n["rotation_flips"]) == (2, 1)  # line 1: 0.95 -> 0.88 drops below cls_thresh 0.9
    assert n["max_score_change"] == pytest.approx(0.3)
    assert n["accuracy_reference"] == 1.0 and n["accuracy_candidate"] == pytest.approx(2 / 3)
    assert json.loads(json.dumps(res.to_dict()))["per_sample"][1]["rotation_flip"] is True


def test_db_boxes_and_det_metric_on_drawn_maps() -> None:
    import cv2

    page = np.zeros((160, 320), np.float32)
    cv2.rectangle(page, (20, 20), (200, 40), 0.9, -1)
    cv2.rectangle(page, (20, 80), (120, 100), 0.9, -1)
    boxes, scores = db_boxes(page, (320, 640))  # the map is half the image: boxes come back doubled
    assert len(boxes) == 2 and min(scores) > 0.85
    wide, small = sorted(boxes, key=lambda b: -np.ptp(b[:, 0]))
    assert wide[0, 0] < 40 and wide[1, 0] > 400  # unclipped outwards, scaled by 2
    cand = page.copy()
    cand[80:101, 20:121] = 0.2  # the second line falls below thresh
    truth = (TextBox(wide + np.float32([[3, 4], [-3, 4], [-3, -4], [3, -4]]), "one"),  # a tight label box
             TextBox(small + np.float32([[3, 4], [-3, 4], [-3, -4], [3, -4]]), "###"))
    res = metric_for("det").evaluate([page[None, None]], [cand[None, None]], [_inp(0, boxes=truth, hw=(320, 640))])
    n = res.numbers
    assert (n["reference_boxes"], n["candidate_boxes"]) == (2, 1)
    assert n["precision"] == 1.0 and n["recall"] == 0.5 and n["flipped_pixels"] == 21 * 101
    assert n["max_map_diff"] == pytest.approx(0.7)
    assert n["reference_f_vs_labels"] == 1.0
    assert n["candidate_f_vs_labels"] == 1.0  # the lost box was "###"
    assert res.per_sample[0]["differs"]
    back = json.loads(json.dumps(res.to_dict()))
    assert back["numbers"]["recall"] == 0.5 and len(back["per_sample"][0]["reference"]) == 2


def test_order_clockwise_starts_top_left() -> None:
    box = np.array([[10, 10], [0, 10], [0, 0], [10, 0]], np.float32)
    assert order_clockwise(box).tolist() == [[0, 0], [10, 0], [10, 10], [0, 10]]
