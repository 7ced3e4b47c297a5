"""Decoded strings on rendered text lines (``passes/compare/text_lines.py``, ``compare --text-lines``).

Unit tests: CTC decoding and confidence, seeded rendering, the agreement arithmetic. Real: PP-OCRv3 rec
(RapidOCR ONNX, pnnx fp16=0) on x86 and on the emulated phone (Cortex-A76, ncnn's default fp16 options).
"""

from __future__ import annotations

import json
from pathlib import Path

import fixtures
import numpy as np
import pytest

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes.compare.text_lines import (
    LineModel,
    LineResult,
    TargetLines,
    decode_line,
    line_inputs,
    line_texts,
    text_lines,
)


def _probs(frames: list[int], classes: int = 5, p: float = 0.9) -> np.ndarray:
    out = np.full((len(frames), classes), (1 - p) / (classes - 1), np.float32)
    for t, k in enumerate(frames):
        out[t, k] = p
    return out


def test_decode_line_ctc_rules_and_confidence() -> None:
    chars = ["blank", "a", "b", "c", " "]
    probs = _probs([1, 1, 0, 1, 2, 0, 0, 3])
    probs[4, 2] = 0.6  # the kept 'b' frame is less sure
    text, conf = decode_line(probs, chars)
    assert text == "aabc"  # a,a -> a; a,blank,a -> aa
    assert conf == pytest.approx((0.9 + 0.9 + 0.6 + 0.9) / 4, rel=1e-6)
    assert decode_line(_probs([0, 0]), chars) == ("", 0.0)
    assert decode_line(_probs([2, 3]), None)[0] == "<2><3>"


def test_rendering_is_seeded_and_paddleocr_normalised() -> None:
    texts = line_texts(5, seed=3)
    assert texts == line_texts(5, seed=3) and texts != line_texts(5, seed=4)
    assert all(4 <= len(t) <= 14 for t in texts)
    xs = line_inputs(texts[:2], (3, 48, 160), seed=3)
    assert [x.shape for x in xs] == [(1, 3, 48, 160)] * 2
    for x in xs:
        assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
        assert x.min() < -0.5  # dark text present
    assert np.array_equal(xs[0], line_inputs(texts[:1], (3, 48, 160), seed=3)[0])


def test_cli_text_lines_on_a_non_image_model_is_one_line(tmp_path: Path, capsys) -> None:
    from test_compare import build_ncnn, build_onnx

    onnx = build_onnx(tmp_path / "se.onnx")
    param, bin = build_ncnn(tmp_path / "se.param", tmp_path / "se.bin")
    code = main(["compare", str(onnx), str(param), str(bin), "--options", "fp32", "--no-isolated",
                 "--text-lines", "2", "-q"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3-channel image input" in err[0]


def test_agreement_and_confidence_change() -> None:
    ref = [("ab", 0.9), ("cd", 0.8), ("ef", 0.7)]
    lines = [LineResult("ab", 0.91, 1e-3), LineResult("cb", 0.5, 2e-1), LineResult("ef", 0.7, 0.0)]
    t = TargetLines("phone", "arm", "default", lines, ref)
    assert t.identical == 2 and t.agreement == pytest.approx(2 / 3)
    assert t.max_conf_change == pytest.approx(0.3) and t.max_abs == pytest.approx(0.2)
    assert t.differences() == [(1, "cd", "cb")]
    d = t.to_dict()
    assert d["identical"] == 2 and d["differences"] == [{"line": 1, "onnxruntime": "cd", "ncnn": "cb"}]


@pytest.fixture(scope="module")
def v3(ppocrv3_rec_onnx) -> dict[str, Path]:
    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec (fp16=0)")
    return {"onnx": ppocrv3_rec_onnx, "param": param, "bin": bin}


@pytest.mark.real
def test_v3_x86_strings_match_onnxruntime(v3) -> None:
    g = Graph.load(v3["param"], v3["bin"])
    rep = text_lines(v3["onnx"], [LineModel("x86", g), LineModel("x86 fp32", g, "x86", "fp32")], n=6, seed=1)
    assert rep.dictionary and rep.reference_accuracy >= 0.5  # the lines are readable: the test measures something
    x86, fp32 = rep.targets
    assert x86.identical == 6 and fp32.identical == 6
    assert x86.max_abs < 5e-3 and x86.max_conf_change < 1e-3  # x86 defaults: only the SE InnerProducts use fp16
    assert fp32.max_abs < 1e-4 and fp32.max_conf_change < 1e-5
    assert fp32.max_abs < x86.max_abs


@pytest.mark.real
def test_bad_requests_are_one_clear_error(v3) -> None:
    g = Graph.load(v3["param"], v3["bin"])
    with pytest.raises(NcnnpassError, match="at least one line"):
        text_lines(v3["onnx"], [LineModel("x86", g)], n=0)
    g.find("Input")[0].set(0, 320)  # a converter that writes the input shape: 3x48x320
    g.find("Input")[0].set(1, 48)
    g.find("Input")[0].set(2, 3)
    with pytest.raises(NcnnpassError, match="declares input 3x48x320"):
        text_lines(v3["onnx"], [LineModel("x86", g)], n=1, shape=(3, 48, 160))


def _arm_ready():
    from ncnnpass.ir.runtime.arm_env import ensure_arm_runtime

    return ensure_arm_runtime()


@pytest.mark.real
@pytest.mark.slow
def test_v3_phone_strings_cli_json(v3, tmp_path: Path, capsys) -> None:
    """The emulated phone (fp16 storage + arithmetic) moves probabilities ~100x more than x86, yet the
    strings of these lines stay those of onnxruntime; two lines keep the emulated cost near 30 s (``--repair``
    is tested on the GPU target, tests/test_vulkan_commands.py: its search costs minutes emulated)."""
    fixtures.require(_arm_ready, "emulated ARM runtime (qemu-user-static + aarch64 ncnn; .ci/install)")
    out = tmp_path / "r.json"
    code = main(["compare", str(v3["onnx"]), str(v3["param"]), str(v3["bin"]), "--options", "fp32",
                 "--no-isolated", "--text-lines", "2", "--target", "arm", "--json", str(out), "-q"])
    assert code == 0
    text = capsys.readouterr().out
    assert "decoded strings on 2 rendered text lines" in text and "arm cortex-a76 (emulated)" in text
    data = json.loads(out.read_text())
    assert data["target"] == "arm"
    tl = {t["label"]: t for t in data["text_lines"]["targets"]}
    x86, arm = tl["x86"], tl["arm"]
    assert x86["lines"] == arm["lines"] == 2
    assert arm["identical"] == 2 and x86["identical"] == 2
    assert 1e-3 < arm["max_abs"] < 0.2  # fp16 on the phone: clearly above x86, still far from a flip
    assert arm["max_abs"] > 5 * x86["max_abs"]
    assert arm["max_conf_change"] < 0.05
    # the per-layer report ran on the phone as well: fp32 there is the fp32 floor
    assert data["runs"]["fp32"]["final_max_abs"] < 1e-4 < data["runs"]["default"]["final_max_abs"]
