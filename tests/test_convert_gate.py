"""convert's gate judges what ncnnpass did: a rewrite may not make the model worse than the converter's output;
the converter's own error is reported, fatal only past a bound with task-level evidence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes.toolchain import convert as convert_mod
from ncnnpass.passes.toolchain import pnnx as pnnx_mod
from ncnnpass.passes.toolchain.convert_gate import CONVERTER_BOUND, judge, task_changes


def _errors(before: float, after: float, default_before: float = 1e-3, default_after: float = 1e-5) -> dict:
    return {"before": {"fp32": before, "default": default_before},
            "after": {"fp32": after, "default": default_after}}


def test_a_rewrite_that_makes_the_model_worse_fails() -> None:
    res = judge(_errors(5e-6, 3e-4), tolerance=1e-4, fp16_weights=False, kind="rec", task=None)
    assert res.failure and "worse than the converter's output under fp32" in res.failure
    res = judge(_errors(5e-6, 6e-6, default_after=2e-3), tolerance=1e-4, fp16_weights=False, kind="rec", task=None)
    assert res.failure and "under default options" in res.failure
    res = judge(_errors(5e-6, float("nan")), tolerance=1e-4, fp16_weights=False, kind="rec", task=None)
    assert res.failure


def test_the_converter_floor_is_reported_and_fatal_only_past_the_bound_with_task_evidence() -> None:
    res = judge(_errors(1.24e-4, 1.2e-4), tolerance=1e-4, fp16_weights=False, kind="rec", task=None)
    assert res.failure is None and not res.warnings and "floor 1.24e-04" in res.notes[-1]
    past = 3 * CONVERTER_BOUND
    res = judge(_errors(past, past), tolerance=1e-4, fp16_weights=False, kind="rec", task=(0, 40))
    assert res.failure is None and "0 of 40 frame classes change" in res.warnings[0]
    res = judge(_errors(past, past), tolerance=1e-4, fp16_weights=False, kind="det", task=(12, 409600))
    assert res.failure and "12 of 409600 pixels crossing 0.3 change" in res.failure
    res = judge(_errors(past, past), tolerance=1e-4, fp16_weights=True, kind="rec", task=(1, 40))
    assert res.failure is None or past > 2e-2


def test_task_changes_per_kind() -> None:
    ref = np.array([[[0.9, 0.1], [0.2, 0.8]]])
    assert task_changes("rec", ref, np.array([[[0.4, 0.6], [0.2, 0.8]]])) == (1, 2)
    assert task_changes("cls", np.array([[0.7, 0.3]]), np.array([[0.7, 0.3]])) == (0, 1)
    m = np.array([[[[0.29, 0.31, 0.9]]]])
    assert task_changes("det", m, np.array([[[[0.31, 0.31, 0.1]]]])) == (2, 3)


def _lossy(real_run_pnnx):
    """pnnx, then every weight rounded to fp16 values (kept as fp32): a converter whose own error against
    onnxruntime is ~4e-4, four times the old fixed 1e-4 gate."""

    def run(onnx_path, out_dir, *args, **kwargs):
        param, bin_ = real_run_pnnx(onnx_path, out_dir, *args, **kwargs)
        g = Graph.load(param, bin_)
        for ly in g.layers:
            for name, w in list(ly.weights.items()):
                if w.count > 1:
                    ly.set_weight(name, w.float32().astype(np.float16).astype(np.float32), "fp32")
        tmp_p, tmp_b = Path(str(param) + ".lossy"), Path(str(bin_) + ".lossy")
        g.save(tmp_p, tmp_b)
        tmp_p.replace(param)
        tmp_b.replace(bin_)
        return param, bin_

    return run


@pytest.mark.real
@pytest.mark.slow
def test_a_model_whose_converter_floor_exceeds_the_tolerance_converts(ppocrv3_rec_onnx: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pnnx_mod, "run_pnnx", _lossy(pnnx_mod.run_pnnx))
    out = tmp_path / "o"
    res = convert_mod.convert(str(ppocrv3_rec_onnx), out, report=False)
    floor = res.figures["before"].max_abs_fp32
    assert 1e-4 < floor < CONVERTER_BOUND, floor  # the old gate (fp32 error <= 1e-4) refused this model
    assert res.figures["after"].max_abs_fp32 <= floor + 1e-4
    stage = next(s for s in json.loads((out / "convert.json").read_text())["stages"]
                 if s["name"] == "verify against onnxruntime")
    assert stage["status"] == "done" and f"floor {floor:.2e}" in stage["note"], stage["note"]
    assert (out / "model.ncnn.param").is_file()
    with pytest.raises(NcnnpassError, match="made the model worse than the converter's output"):
        convert_mod.convert(str(ppocrv3_rec_onnx), tmp_path / "strict", report=False, tolerance=1e-12)
