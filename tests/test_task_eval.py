"""The task-evaluation API (``passes/measure/task_data.py``, ``task_eval.py``, ``model_files.py``) and the
real-text parts of ``compare``, ``run --verify`` and ``convert`` (the convert rows on every model family are
checked in tests/test_model_matrix.py; end to end in tests/test_ocr.py).

Unit tests: the built-in part of the split, counts, kinds from shapes, the criteria, ``--images`` loading
with skips and characters outside the dictionary. Real (x86): PP-OCRv3 rec and det through onnxruntime and
ncnn, checked against direct runs of both runtimes decoded independently; the commands on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import fixtures
import numpy as np
import pytest

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes.measure.metrics import MetricResult
from ncnnpass.passes.measure.model_files import kind_from_shapes, model_facts, model_files
from ncnnpass.passes.measure.model_info import ModelInfo
from ncnnpass.passes.measure.split import split_samples
from ncnnpass.passes.measure.task_data import builtin_part, count_for, default_count, task_data
from ncnnpass.passes.measure.task_eval import PairResult, Side, TaskCriteria, evaluate, headline


@pytest.fixture(scope="module")
def builtin():
    from ncnnpass.passes.measure.synth import builtin_data

    return fixtures.require(lambda: builtin_data, "fonts and word lists for the built-in data (bash .ci/install)")


@pytest.mark.slow
def test_builtin_part_is_the_split_of_the_builtin_data(builtin) -> None:
    full = builtin("rec", 16, seed=4)
    split = split_samples(full.samples, 0.5, seed=4)
    assert len(split.held_out) >= 3 and len(split.calibration) >= 3
    held = builtin_part("rec", 3, part="held-out", seed=4)
    cal = builtin_part("cls", 3, part="calibration", seed=4)
    assert [s.provenance.key for s in held.samples] == [s.provenance.key for s in split.held_out[:3]]
    assert [s.provenance.key for s in cal.samples] == [s.provenance.key for s in split.calibration[:3]]
    assert np.array_equal(held.samples[0].pixels, split.held_out[0].pixels)
    assert held.samples[0].text == split.held_out[0].text
    assert {s.orientation for s in cal.samples} <= {"0", "180"}  # cls lines carry their direction
    pages = builtin_part("det", 2, seed=4)
    assert pages.form == "builtin-pages" and all(s.boxes for s in pages.samples)
    assert "held-out part" in pages.describe()


def test_counts_per_kind() -> None:
    assert count_for("rec", 5, None) == 5 and count_for("det", None, 2) == 2 and count_for("cls", None, None) is None
    with pytest.raises(NcnnpassError, match="a detector is measured on pages: give --pages N"):
        count_for("det", 5, None)
    with pytest.raises(NcnnpassError, match="--pages counts pages .*text lines: give --lines N"):
        count_for("rec", None, 5)
    with pytest.raises(NcnnpassError, match="--lines takes a positive number, got 0"):
        count_for("rec", 0, None)
    assert default_count("rec") == 100 and default_count("det") == 10
    assert default_count("rec", "arm") == 4 and default_count("det", "arm-a57") == 1


def test_kind_from_ncnn_shapes() -> None:
    assert kind_from_shapes((3, 48, 320), (40, 6625)) == "rec"
    assert kind_from_shapes((3, 48, 320), (1, 40, 6625)) == "rec"
    assert kind_from_shapes((3, 640, 480), (1, 640, 480)) == "det"
    assert kind_from_shapes((3, 48, 192), (2,)) == "cls"
    assert kind_from_shapes((3, 8, 16), (16, 8, 16)) is None
    assert kind_from_shapes((1, 48, 320), (40, 6625)) is None


def _result(kind: str, numbers: dict, differing: list[str] = ()) -> MetricResult:
    per = [{"sample": f"s{i}", "differs": True, "describe": d} for i, d in enumerate(differing)]
    return MetricResult(kind, numbers, per, [])


def test_criteria_name_what_users_would_see_change() -> None:
    crit = TaskCriteria()
    rec = {"lines": 10, "identical": 9, "identical_share": 0.9, "max_conf_change": 0.02, "mean_conf_change": 0.01,
           "drop_score_crossings": 1, "max_prob_diff": 0.3}
    fails = crit.failures(PairResult("a", "b", _result("rec", rec, ["line 3: 'the markers' vs 'themarkers'"])))
    assert fails == ["1 of 10 strings change (first: line 3: 'the markers' vs 'themarkers')",
                     "1 lines cross drop_score"]
    same = dict(rec, identical=10, drop_score_crossings=0)
    assert crit.failures(PairResult("a", "b", _result("rec", same))) == []
    assert TaskCriteria(max_conf_change=0.01).failures(PairResult("a", "b", _result("rec", same))) == [
        "confidence changes by 2.00e-02 > 0.01"]
    det = {"f": 0.985, "candidate_boxes": 66, "reference_boxes": 67, "pages": 3, "flipped_pixels": 40}
    assert crit.failures(PairResult("a", "b", _result("det", det)))[0].startswith("det F 0.9850 < 0.99")
    cls = {"lines": 4, "agreement": 3, "agreement_share": 0.75, "rotation_flips": 1}
    assert crit.failures(PairResult("a", "b", _result("cls", cls))) == ["1 of 4 labels flip"]
    assert crit.failures(PairResult("a", "b", None, "worker crashed")) == ["b did not run: worker crashed"]
    assert crit.failures(PairResult("a", "b", _result("cls", dict(cls, agreement=4)), nonfinite=2)) == [
        "2 samples return NaN/Inf"]
    assert headline(_result("rec", rec))[0] == ("strings identical", "9/10 (90.0%)")
    assert headline(_result("det", det))[0] == ("det F (boxes at IoU 0.5)", "0.9850 (3 pages)")


def _png(path: Path, text: str = "ab", w: int = 90, h: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), 235, np.uint8)
    cv2.putText(img, text, (3, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (10, 10, 10), 1)
    cv2.imwrite(str(path), img)
    return path


def test_images_are_loaded_split_and_checked_against_the_dictionary(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        _png(tmp_path / "img" / f"{name}.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG no")
    label = tmp_path / "rec.txt"
    label.write_text("img/a.png\tab\nimg/b.png\taé\nimg/broken.png\tab\nimg/c.png\tba\nimg/d.png\tbb\n",
                     encoding="utf-8")
    info = ModelInfo("rec", (3, 48, 320), (False, True), dictionary=["a", "b"])
    task = task_data(info, label)
    assert len(task.inputs) == 4 and task.part == "all" and task.data.skipped == 1
    text = "\n".join(task.describe())
    assert "4 lines from" in text and "1 skipped" in text and "broken.png: not a decodable image" in text
    assert "1 label characters outside the model's dictionary in 1 of 4 labels: 'é' x1" in text
    assert task.inputs[0].tensor.shape == (1, 3, 48, 320)  # short lines: predict_rec's minimum width
    assert len(task_data(info, label, count=2).inputs) == 2
    held = task_data(info, label, part="held-out", seed=1)
    cal = task_data(info, label, part="calibration", seed=1)
    assert sorted(s.provenance.key for s in held.samples + cal.samples) == sorted(
        s.provenance.key for s in task.samples)
    static = task_data(info, label, static_width=100)
    assert {i.tensor.shape[-1] for i in static.inputs} == {100}
    # a det label file whose only box is "don't care" has no line for a recogniser
    det_label = tmp_path / "det.txt"
    det_label.write_text('img/a.png\t[{"transcription": "###", "points": [[0, 0], [20, 0], [20, 10], [0, 10]]}]\n',
                         encoding="utf-8")
    with pytest.raises(NcnnpassError, match=r"no text lines \(labelled boxes\) to measure"):
        task_data(info, det_label)
    with pytest.raises(NcnnpassError, match="cannot tell whether the model is rec, det or cls"):
        task_data(ModelInfo(None, (3, 48, 320)), label)


def test_evaluate_refuses_what_it_cannot_compare(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    task = task_data(ModelInfo("cls", (3, 48, 192), (False, True)), tmp_path)
    with pytest.raises(NcnnpassError, match="needs a reference and at least one candidate"):
        evaluate(task, [Side.onnxruntime("x.onnx")])
    with pytest.raises(NcnnpassError, match="side labels must be unique"):
        evaluate(task, [Side.onnxruntime("x.onnx"), Side.onnxruntime("y.onnx")])
    with pytest.raises(NcnnpassError, match="names a side that is not given"):
        evaluate(task, [Side.onnxruntime("x.onnx"), Side.onnxruntime("y.onnx", "y")], [("x", "y")])


# -------------------------------------------------------------------------------- real models, x86


@pytest.fixture(scope="module")
def v3() -> dict[str, Path]:
    onnx = fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX")
    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn_any_width(False), "PP-OCRv3 rec, pnnx any width")
    return {"onnx": onnx, "param": param, "bin": bin}


@pytest.fixture(scope="module")
def v3_det() -> dict[str, Path]:
    onnx = fixtures.require(fixtures.ppocrv3_det_onnx, "PP-OCRv3 det ONNX")
    param, bin = fixtures.require(lambda: fixtures.ppocrv3_det_ncnn_any_size(False), "PP-OCRv3 det, pnnx any size")
    return {"onnx": onnx, "param": param, "bin": bin}


@pytest.mark.real
@pytest.mark.slow
def test_rec_lines_at_their_own_width_match_direct_runs(v3, builtin) -> None:
    """Each line goes in at predict_rec's width for it; the report's strings and confidences are those of
    onnxruntime and ncnn run directly on the same tensors and decoded with rapidocr's CTCLabelDecode."""
    import onnxruntime as ort

    from ncnnpass.ir.runtime import load
    from ncnnpass.passes.measure.rec_preprocess import rec_tensor

    rapid = fixtures.require(fixtures.rapidocr_code, "rapidocr_onnxruntime 1.2.3's code")
    import sys

    sys.path.insert(0, str(rapid))
    from rapidocr_onnxruntime.ch_ppocr_v3_rec.utils import CTCLabelDecode

    info, _ = model_facts(v3["onnx"])
    task = task_data(info, count=8, seed=2)
    widths = [i.tensor.shape[-1] for i in task.inputs]
    assert len(set(widths)) > 1 and min(widths) == 320
    for inp in task.inputs:
        assert np.array_equal(inp.tensor[0], rec_tensor(inp.sample.image(), (3, 48, 320))[0])
    g = Graph.load(v3["param"], v3["bin"])
    report = evaluate(task, [Side.onnxruntime(v3["onnx"]), Side.ncnn(g), Side.ncnn(g, options="bf16")])
    sess = ort.InferenceSession(str(v3["onnx"]), providers=["CPUExecutionProvider"])
    decode = CTCLabelDecode(info.dictionary)
    ref = [decode(sess.run(None, {"x": i.tensor})[0])[0] for i in task.inputs]
    for label, options in (("ncnn x86", "default"), ("ncnn x86 bf16", "bf16")):
        net = load(g, options, 1)
        got = [decode(net.run(i.tensor[0], g.outputs[0])[g.outputs[0]][None])[0] for i in task.inputs]
        res = report.pair(label).result
        assert [p["reference"] for p in res.per_sample] == [t for t, _ in ref]
        assert [p["candidate"] for p in res.per_sample] == [t for t, _ in got]
        assert res.numbers["identical"] == sum(a[0] == b[0] for a, b in zip(ref, got, strict=True))
        n = [len(t) for t, _ in got]  # rapidocr's confidence has one extra element in its mean
        assert [p["candidate_confidence"] * k / (k + 1) for p, k in zip(res.per_sample, n, strict=True)] == \
            pytest.approx([c for _, c in got], abs=1e-6)
    assert TaskCriteria().failures(report.pair("ncnn x86")) == []
    assert report.pair("ncnn x86 bf16").result.numbers["max_prob_diff"] > 10 * report.pair(
        "ncnn x86").result.numbers["max_prob_diff"]
    text = "\n".join(report.render())
    assert "ncnn x86 bf16 vs onnxruntime (ncnn on x86, bf16 options" in text
    json.dumps(report.to_dict())


@pytest.mark.real
@pytest.mark.slow
def test_det_pages_at_their_own_size(v3_det, builtin) -> None:
    info, _ = model_facts(v3_det["onnx"])
    task = task_data(info, count=2, seed=1)
    shapes = {i.tensor.shape for i in task.inputs}
    assert len(shapes) == 2 and all(s[2] % 32 == 0 and s[3] % 32 == 0 and (3, 640, 640) != s[1:] for s in shapes)
    g = Graph.load(v3_det["param"], v3_det["bin"])
    report = evaluate(task, [Side.onnxruntime(v3_det["onnx"]), Side.ncnn(g, options="fp32")])
    n = report.pairs[0].result.numbers
    assert n["pages"] == 2 and n["f"] == 1.0 and n["reference_boxes"] >= 10
    assert n["max_map_diff"] < 1e-3


@pytest.mark.real
@pytest.mark.slow
def test_compare_real_text_section_and_bad_input(v3, tmp_path: Path, capsys) -> None:
    files = [str(v3["onnx"]), str(v3["param"]), str(v3["bin"])]
    base = ["compare", *files, "--options", "fp32", "--no-isolated", "-q"]
    out = tmp_path / "c.json"
    assert main([*base, "--lines", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "what users see (rec" in text and "x86 vs onnxruntime" in text
    task = json.loads(out.read_text())["task"]
    assert task["data"]["inputs"] == 3 and task["data"]["part"] == "held-out"
    assert task["pairs"][0]["metric"]["numbers"]["identical"] == 3
    # --images: a rec label file with an unreadable image and a character the model cannot spell
    for i, word in enumerate(("TEST", "Line", "ok")):
        _png(tmp_path / "d" / f"{i}.png", word, 120, 32)
    (tmp_path / "d" / "bad.png").write_bytes(b"")
    label = tmp_path / "d" / "gt.txt"
    label.write_text("0.png\tTEST\n1.png\tLine\u2603\nbad.png\tx\n2.png\tok\n", encoding="utf-8")
    assert main([*base, "--images", str(label)]) == 0
    text = capsys.readouterr().out
    assert "3 lines from" in text and "1 skipped" in text and "bad.png: empty file" in text
    assert "label characters outside the model's dictionary in 1 of 3 labels: '\u2603' x1" in text
    for args, words in ((["--pages", "2"], "--pages counts pages"),
                        (["--images", str(tmp_path / "nope")], "no such file or directory"),
                        (["--images", str(tmp_path / "d" / "bad.png")], "no image files (1 skipped"),
                        (["--no-task", "--lines", "2"], "--no-task skips")):
        assert main([*base, *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


@pytest.fixture
def breaks_strings():
    """A wrong rewrite whose outputs stay within a loose random-input tolerance: HardSwish -> ReLU."""
    from ncnnpass.passes.engine import RulePass
    from ncnnpass.passes.registry import passes, register

    p = register(RulePass("test-hardswish-to-relu", "wrong on purpose",
                          "rule r\nmatch:\n  HardSwish s 1 1 x y ...\nreplace:\n  ReLU s 1 1 x y\n"))
    yield p.name
    del passes()[p.name]


@pytest.mark.real
@pytest.mark.slow
def test_run_verify_on_real_text(v3, v3_det, tmp_path: Path, capsys, breaks_strings) -> None:
    rec = [str(v3["param"]), str(v3["bin"])]
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *rec, "-o", *out, "--pipeline", "repair", "--verify", "--shape", "3,48,320", "--lines", "3",
                 "--onnx", str(v3["onnx"]), "--target", "x86"]) == 0
    text = capsys.readouterr().out
    assert "after vs before (ncnn on x86, fp32 options" in text and "verified on real text" in text
    assert "after, default options vs onnxruntime" in text and Path(out[0]).is_file()
    # a rewrite within --tolerance 1 on random input that changes what users read: refused
    bad = [str(tmp_path / "b.param"), str(tmp_path / "b.bin")]
    assert main(["run", *rec, "-o", *bad, "--passes", breaks_strings, "--verify", "--shape", "3,48,320",
                 "--tolerance", "1", "--lines", "3", "--target", "x86"]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]
    assert "refusing to write" in err and "on real text the rewrite changes what users see: " in err
    assert "of 3 strings change" in err and not Path(bad[0]).exists()
    assert "rec: strings identical" in captured.out  # the kind came from the ncnn output shape (no --onnx)
    # a detector without --onnx: the kind comes from the output shape, pages at their own size
    det = [str(v3_det["param"]), str(v3_det["bin"])]
    assert main(["run", *det, "-o", str(tmp_path / "d.param"), str(tmp_path / "d.bin"), "--verify",
                 "--shape", "3,640,640", "--pages", "1", "--target", "x86"]) == 0
    text = capsys.readouterr().out
    assert "what users see (det" in text and "det: F 1.0000" in text
    assert main(["run", *det, "-o", str(tmp_path / "e.param"), str(tmp_path / "e.bin"), "--lines", "2"]) == 1
    assert "only apply with --verify" in capsys.readouterr().err


@pytest.mark.real
def test_model_files_from_a_convert_output_directory(v3_det, tmp_path: Path) -> None:
    outdir = Path(v3_det["param"]).parent.parent  # the fixture is convert's OUTDIR; pnnx/ holds pnnx's files
    files = model_files(outdir, "det")
    assert files.onnx == outdir / "model.onnx" and files.param == outdir / "model.ncnn.param"
    assert files.info.kind == "det" and files.static_width is None
    with pytest.raises(NcnnpassError, match=r"--rec .*: this is a det model"):
        model_files(outdir, "rec")
    with pytest.raises(NcnnpassError, match="ncnn model not found"):
        model_files(tmp_path if (tmp_path / "model.onnx").write_bytes(b"") is None else tmp_path, "det")
    explicit = model_files(f"{v3_det['onnx']},{v3_det['param']}", "det")
    assert explicit.bin == Path(v3_det["bin"])
