"""Every real model of ``docs`` fixtures through ``ncnnpass convert`` (issue 10 item 7).

Each case runs the CLI in-process (exit status 0), then checks ``convert.json`` against onnxruntime:

* the repaired model under ncnn's **default** options is within ``1.2 × floor + 1e-6`` of onnxruntime,
  where ``floor`` is the pnnx output's error under fp32-only options (what the conversion itself
  costs, fp16 weights included for ``--fp16-weights``), at the conversion size, and
* the same at a second input size (rec: another width; det: another height and width), against the
  fp32 floor at that size: the model is dynamic and right there too.

Random inputs in [-1, 1] (seed 0). On real text (20 built-in held-out lines, 3 pages) the table's rows must be
there, and with fp32 weights the repaired model must read like onnxruntime: every string identical and no
drop_score crossing (rec), det F >= 0.99, every cls label the same. Paddle ``inference.json`` models (PP-OCRv5) need the paddlepaddle 3
route of ``paddle_to_onnx``; they are guarded by :func:`fixtures.require` like every other fixture.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import fixtures
import pytest

from ncnnpass.cli.main import main
from ncnnpass.passes.toolchain import model_zoo

pytestmark = [pytest.mark.real, pytest.mark.slow]


def _zoo(name: str) -> Callable[[], Path]:
    return lambda: model_zoo.fetch(name, fixtures.cache_dir() / "zoo")[0]


# (case id, kind, source, fp16 weights, "form" of the source)
CASES = [
    ("ppocrv3-rec-fp16=0", "rec", fixtures.ppocrv3_rec_onnx, False),
    ("ppocrv3-rec-fp16=1", "rec", fixtures.ppocrv3_rec_onnx, True),
    ("ppocrv4-rec-pdmodel-fp16=0", "rec", fixtures.ppocrv4_rec_paddle_dir, False),
    ("ppocrv4-rec-pdmodel-fp16=1", "rec", fixtures.ppocrv4_rec_paddle_dir, True),
    ("ppocrv3-det", "det", fixtures.ppocrv3_det_onnx, False),
    ("ppocrv4-det-pdmodel", "det", fixtures.ppocrv4_det_paddle_dir, False),
    ("ppocrv2-cls-pdmodel", "cls", fixtures.ppocrv2_cls_paddle_dir, False),
    ("ppocrv5-rec-inference.json", "rec", _zoo("ppocrv5-rec"), False),
    ("ppocrv5-det-inference.json", "det", _zoo("ppocrv5-det"), False),
]


def _run(src: Path, out: Path, fp16: bool, kind: str) -> int:
    real_text = ["--pages", "3"] if kind == "det" else ["--lines", "20"]
    return main(["convert", str(src), "-o", str(out), "--no-report", *real_text] + (["--fp16-weights"] if fp16 else []))


def _run_or_raise(src: Path, out: Path, fp16: bool, kind: str) -> bool:
    """``_run`` == 0, or RuntimeError with the CLI's error line (the reason of a guarded skip)."""
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        code = _run(src, out, fp16, kind)
    sys.stderr.write(buf.getvalue())
    if code != 0:
        lines = [ln for ln in buf.getvalue().splitlines() if "error:" in ln] or ["no error line"]
        raise RuntimeError(lines[-1][:400])
    return True


@pytest.mark.parametrize(("kind", "source", "fp16"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_model_matrix(kind: str, source: Callable[[], Path], fp16: bool, tmp_path: Path) -> None:
    src = fixtures.require(source, f"model for the {kind} matrix case")
    out = tmp_path / "out"
    if (src / "inference.json").is_file():
        # the inference.json form converts only with paddle2onnx 2.x + paddlepaddle 3 (a side env)
        code = fixtures.require(lambda: _run_or_raise(src, out, fp16, kind),
                                f"convert {src.name} (inference.json needs paddle2onnx 2.x + paddlepaddle 3.0)")
    else:
        code = _run(src, out, fp16, kind) == 0
    assert code
    report = json.loads((out / "convert.json").read_text())
    before, after = report["figures"]["before"], report["figures"]["after"]
    assert report["kind"] == kind
    assert [s["status"] for s in report["stages"] if s["name"] != "onnxsim"] == ["done"] * 5
    task = report["task"]
    assert task["kind"] == kind and len(task["rows"]) >= 2
    after_real = next(p for p in task["pairs"] if p["candidate"] == "after repair")
    if not fp16:
        from ncnnpass.passes.measure.metrics import MetricResult
        from ncnnpass.passes.measure.task_eval import PairResult, TaskCriteria

        m = after_real["metric"]
        result = MetricResult(m["kind"], m["numbers"], [], m["summary"])
        assert TaskCriteria().failures(PairResult("onnxruntime", "after repair", result)) == [], m["summary"]
    if kind == "rec":  # kept for ocr/compare when the facts have one (v3: ONNX metadata, v5: inference.yml)
        assert (out / "dictionary.txt").is_file() == ("characters" in report["stages"][0]["note"])
    floor = before["max_abs_fp32"]
    assert after["max_abs_default"] <= 1.2 * floor + 1e-6, (after, before)
    assert report["second_shape"] is not None, "a dynamic model was expected"
    c, h, w = report["shape"]
    _, h2, w2 = report["second_shape"]
    assert w2 != w and (h2 != h) == (kind == "det")
    floor2 = before["max_abs_fp32_second_width"]
    assert after["max_abs_default_second_width"] <= 1.2 * floor2 + 1e-6, (after, before)
    assert (out / "model.ncnn.param").is_file() and (out / "model.ncnn.bin").is_file()
