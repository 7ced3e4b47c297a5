"""``ncnnpass compare --target arm``: per-layer forensics on the emulated phone (qemu Cortex-A76, the aarch64
ncnn wheel), the phone sweep (default / fp16-storage / fp32) and the fp16 storage vs arithmetic split.

Unit tests cover the sweep choice, the split arithmetic, the batched isolated runs on a worker target (a
synthetic model in the ``isolated`` x86 worker: cheap, same code path as ARM) and ``phone_rows``. The real
test runs PP-OCRv3 rec on the emulated phone (~1-2 min on a quiet machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import fixtures
import numpy as np
import pytest
from test_compare import SHAPE, build_ncnn, build_onnx

from ncnnpass.ir import Graph
from ncnnpass.passes.compare import OptionSet, compare_models, parse_option_sets
from ncnnpass.passes.compare.metrics import Metrics
from ncnnpass.passes.compare.ncnn_side import PHONE_SWEEP, NcnnModel, sweep_for
from ncnnpass.passes.compare.output import plot_png
from ncnnpass.passes.compare.phone_rows import phone_rows
from ncnnpass.passes.compare.render import render_text
from ncnnpass.passes.compare.report import LayerRow, OptionRun, fp16_split


def test_phone_sweep_is_the_storage_arithmetic_triple() -> None:
    assert sweep_for("arm") == sweep_for("arm-a57") == PHONE_SWEEP == ("default", "fp16-storage", "fp32")
    assert [o.name for o in parse_option_sets(None, "arm")] == list(PHONE_SWEEP)
    assert [o.name for o in parse_option_sets(["all"], "x86")][:2] == ["default", "fp32"]
    assert len(parse_option_sets(None, "x86")) == 5
    fs = OptionSet.preset("fp16-storage")
    assert fs.dict == {"use_fp16_arithmetic": False} and "arithmetic off" in fs.description


def _m(scaled: float, max_abs: float | None = None) -> Metrics:
    v = max_abs if max_abs is not None else scaled
    return Metrics(v, v, v, 1.0, v, scaled)


def _run(name: str, isos: list[float], final: float) -> OptionRun:
    rows = [LayerRow(k, f"b{k}", f"l{k}", "Convolution", "", f"t{k}", "value", (1,), (1,), "same", _m(final),
                     _m(s), divergent=s > 1e-5) for k, s in enumerate(isos)]
    return OptionRun(OptionSet.preset(name), rows, {"b2": _m(final)})


def test_fp16_split_classifies_layers() -> None:
    runs = {"default": _run("default", [1e-3, 1e-3, 1e-3], 5e-2),
            "fp16-storage": _run("fp16-storage", [1e-7, 1e-3, 1e-3], 3e-2),
            "fp32": _run("fp32", [1e-7, 1e-7, 8e-4], 1e-5)}
    s = fp16_split(runs)
    assert [x["cause"] for x in s["layers"]] == ["arithmetic", "storage", "neither"]
    assert s["layer_counts"] == {"storage": 1, "arithmetic": 1, "neither": 1}
    assert s["storage"] == pytest.approx(3e-2 - 1e-5) and s["arithmetic"] == pytest.approx(2e-2)
    assert fp16_split({"default": runs["default"], "fp32": runs["fp32"]}) is None


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("arm_synth")
    onnx = build_onnx(d / "se.onnx")
    param, bin = build_ncnn(d / "se.param", d / "se.bin")
    return {"onnx": onnx, "param": param, "bin": bin}


def test_worker_target_gives_the_in_process_numbers(synth) -> None:
    """Same model, same options: the isolated-worker path (one load, runs dealt to 2 workers) must give
    bit-identical per-layer numbers to the in-process path; this is the code path of --target arm."""
    here = compare_models(synth["onnx"], synth["param"], synth["bin"], options=["default", "fp32"])
    there = compare_models(synth["onnx"], synth["param"], synth["bin"], options=["default", "fp32"],
                           target="isolated", workers=2)
    assert there.target == "isolated" and here.target == "x86"
    for name in ("default", "fp32"):
        a, b = here.runs[name].rows, there.runs[name].rows
        assert [r.blob for r in a] == [r.blob for r in b]
        assert [r.cum.max_abs for r in a] == [r.cum.max_abs for r in b]
        assert [r.iso.max_abs if r.iso else None for r in a] == [r.iso.max_abs if r.iso else None for r in b]
    assert [r.layer for r in there.default.divergent] == [r.layer for r in here.default.divergent]
    assert there.default.divergent  # the SE InnerProducts: the comparison found something to compare
    assert "ncnn runs on: x86 (isolated worker)" in render_text(there)


def test_run_layers_batches_and_survives_a_refused_layer(synth) -> None:
    g = Graph.load(synth["param"], synth["bin"])
    model = NcnnModel(g, num_threads=1, target="isolated", workers=2)
    try:
        net = model.load(OptionSet.preset("fp32"))
        x = np.random.default_rng(0).uniform(-1, 1, SHAPE).astype(np.float32)
        full = model.run_all(net, {g.inputs[0]: x})
        jobs = [({b: full[b] for b in ly.inputs}, ly.outputs) for ly in g.layers if ly.type != "Input"]
        jobs.append(({"no_such_blob": x}, [g.outputs[0]]))  # ncnn refuses: None, the rest still runs
        res = model.run_layers(net, jobs)
        assert res[-1] is None and len(model._sessions) == 2
        for (_, outs), r in zip(jobs[:-1], res[:-1], strict=True):
            assert r is not None
            for b in outs:
                np.testing.assert_allclose(r[b], full[b], rtol=1e-6, atol=1e-6)
    finally:
        model.close()


def test_phone_rows_on_isolated_worker(synth) -> None:
    g = Graph.load(synth["param"], synth["bin"])
    x = np.random.default_rng(1).uniform(-1, 1, (1, *SHAPE)).astype(np.float32)
    rows = phone_rows(g, synth["onnx"], x, target="isolated", options=("default", "fp32"))
    assert rows["target"] == "isolated" and set(rows["rows"]) == {"default", "fp32"}
    # x86 defaults run the InnerProducts with fp16 weights: measurably worse than fp32
    assert rows["rows"]["fp32"]["max_abs"] < 1e-5 < rows["rows"]["default"]["max_abs"] < 1e-1


def _arm_ready():
    from ncnnpass.ir.runtime.arm_env import ensure_arm_runtime

    return ensure_arm_runtime()


@pytest.mark.real
@pytest.mark.slow
def test_v3_rec_on_the_emulated_phone(tmp_path: Path) -> None:
    """PP-OCRv3 rec on the emulated Cortex-A76 (see /work/shared/docs/arm-precision.md: 5.7e-2 default,
    3.7e-2 storage only, 1.1e-5 fp32 on seeded inputs)."""
    fixtures.require(_arm_ready, "emulated ARM runtime (qemu-user-static + aarch64 ncnn; .ci/install)")
    onnx = fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX (rapidocr_onnxruntime==1.2.3)")
    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    rep = compare_models(onnx, param, bin, target="arm", workers=2)
    assert rep.target == "arm" and list(rep.runs) == list(PHONE_SWEEP)
    assert rep.mapping.coverage >= 0.9
    d, s, f = (rep.runs[k] for k in PHONE_SWEEP)
    assert f.final_max_abs < 1e-4 < s.final_max_abs <= d.final_max_abs
    assert d.final_max_abs > 1e-2  # ~100x the x86 default error (1.7e-4)
    assert len(d.divergent) > 10  # fp16 storage/arithmetic on most layers, not just the SE InnerProducts (x86)
    assert sum(r.iso is not None for r in d.rows) >= 0.8 * len(d.rows)  # isolated runs happened on the phone
    split = rep.fp16_split
    assert split["layer_counts"]["storage"] > 0 and split["storage"] > 0
    actions = [a.action for a in rep.advice]
    assert actions[0] == "repair-for-phone" and "keep-fp32" not in actions  # masks on ARM: the repair search
    assert len(rep.advice[0].layers) > 10
    text = render_text(rep)
    assert "arm cortex-a76 (emulated)" in text and "storage vs arithmetic" in text
    assert "run --pipeline repair --target arm" in text
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["target"] == "arm" and data["fp16_split"]["final_max_abs"]["fp32"] < 1e-4
    # convert's phone rows: the same input on the phone, outputs only, must give the same default error
    rows = phone_rows(Graph.load(param, bin), onnx, rep.input.array, "arm", ("default",))
    assert rows["rows"]["default"]["max_abs"] == pytest.approx(d.final_max_abs, abs=1e-5)
    plot_png(rep, str(tmp_path / "arm.png"))
    assert (tmp_path / "arm.png").read_bytes()[:4] == b"\x89PNG"
