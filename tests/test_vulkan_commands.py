"""``--target vulkan`` in every command that takes a target: compare (the GPU sweep, its packed / storage /
arithmetic split per layer, GPU-valid advice), convert (rows measured on the GPU), run, inspect (placements
that break a path), and bad input (no lavapipe, no device: one line, exit 1; a layer type with no Vulkan
implementation: reported by the command, run on the CPU). Numbers: docs/gpu.md. With CI=true a missing lavapipe
fails these tests."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from fixtures import require

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.ir.featmask import make_featmask_safe
from ncnnpass.ir.runtime import vulkan_env
from ncnnpass.ir.runtime.targets import close_shared_targets, open_target
from ncnnpass.passes import apply_passes
from ncnnpass.passes.compare.ncnn_side import VULKAN_SWEEP, parse_option_sets, sweep_for
from ncnnpass.passes.compare.report import LayerRow, OptionRun, fp16_split
from ncnnpass.passes.engine.testing import fill_weights, model


def _vulkan() -> None:
    import fixtures

    reason = vulkan_env.vulkan_runtime_status()
    if reason is not None:  # provision like .ci/install does (apt as root), else fail in CI / skip
        fixtures.require(lambda: vulkan_env.ensure_vulkan_runtime(), f"lavapipe for the Vulkan target: {reason}")


@pytest.fixture(scope="module")
def v3():
    import fixtures

    onnx = require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX (rapidocr_onnxruntime==1.2.3)")
    param, bin_ = require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    return str(onnx), str(param), str(bin_)


def test_gpu_sweep_and_split_with_packing() -> None:
    assert sweep_for("vulkan") == VULKAN_SWEEP == ("default", "fp16-storage", "fp16-packed", "fp32")
    assert [o.name for o in parse_option_sets(None, "vulkan")] == list(VULKAN_SWEEP)
    from ncnnpass.passes.compare.metrics import Metrics
    from ncnnpass.passes.compare.ncnn_side import OptionSet

    def run(name: str, isos: list[float], final: float) -> OptionRun:
        rows = [LayerRow(k, f"b{k}", f"l{k}", "Convolution", "", f"t{k}", "value", (1,), (1,), "same",
                         Metrics(final, final, final, 1.0, final, final), Metrics(s, s, s, 1.0, s, s),
                         divergent=s > 1e-5) for k, s in enumerate(isos)]
        return OptionRun(OptionSet.preset(name), rows, {"b3": Metrics(final, final, final, 1.0, final, final)})

    runs = {"default": run("default", [1e-3] * 4, 5e-2), "fp16-storage": run("fp16-storage", [1e-7, 1e-3, 1e-3, 1e-3], 3e-2),
            "fp16-packed": run("fp16-packed", [1e-7, 1e-7, 1e-3, 1e-3], 2e-2),
            "fp32": run("fp32", [1e-7, 1e-7, 1e-7, 8e-4], 1e-5)}
    s = fp16_split(runs)
    assert [x["cause"] for x in s["layers"]] == ["arithmetic", "storage", "packed", "neither"]
    assert s["arithmetic"] == pytest.approx(2e-2) and s["storage"] == pytest.approx(1e-2)
    assert s["packed"] == pytest.approx(2e-2 - 1e-5)


@pytest.mark.real
@pytest.mark.slow
def test_compare_on_the_gpu_attributes_per_layer_and_names_gpu_valid_fixes(v3, tmp_path, capsys) -> None:
    """PP-OCRv3 rec on lavapipe (docs/gpu.md): 5.9e-2 with ncnn's defaults, 1.7e-3 with fp32 arithmetic, 1.1e-5
    fp32; the Softmax over 6,625 classes carries the arithmetic loss (iso 8.1e-2 -> 1.4e-3), the rest is the
    rounding of stored blobs, spread over ~100 layers. The advice is 31=1 on the Softmax (stays on the GPU), and
    applying it brings 5.9e-2 to ~1.1e-2 on the GPU."""
    _vulkan()
    onnx, param, bin_ = v3
    out = tmp_path / "cmp.json"
    assert main(["compare", onnx, param, bin_, "--target", "vulkan", "--brief", "--json", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rep["target"] == "vulkan" and list(rep["runs"]) == list(VULKAN_SWEEP)
    finals = {k: r["final_max_abs"] for k, r in rep["runs"].items()}
    assert 1e-2 < finals["default"] < 0.3 and finals["fp32"] < 1e-4 and finals["fp16-storage"] < finals["default"] / 10
    split = rep["fp16_split"]
    assert split["arithmetic"] > 10 * (split["storage"] + split["packed"])
    causes = {x["layer"]: (x["type"], x["cause"]) for x in split["layers"]}
    assert causes["softmax_46"] == ("Softmax", "arithmetic")
    assert sum(c == "arithmetic" for _, c in causes.values()) == 1 and len(causes) > 50
    # the advice names only masks valid on the GPU: 31=1 (stays there) or 31=23 (leaves it), never bit 1 alone
    masks = [a for a in rep["advice"] if a["action"] == "keep-fp32"]
    assert masks and masks[0]["layers"] == ["softmax_46"] and masks[0]["featmask"] == 1  # stays on the GPU
    assert all(a["featmask"] in (1, 23) for a in masks)
    gap = [a for a in rep["advice"] if a["action"] == "gap-fc-to-conv"]  # the SE blocks: no masks, valid everywhere
    assert [a["layers"] for a in gap] == [["fcrelu_0", "linear_72", "fcrelu_1", "linear_74"]]
    # the layer with no Vulkan implementation is in the report, not only on the worker's stderr
    assert rep["no_vulkan_implementation"] == [{"layer": "squeeze_82", "type": "Squeeze"}]
    assert "1 layer(s) have no Vulkan implementation; ncnn runs them on the CPU" in text and "Squeeze squeeze_82" in text
    assert "fp16 loss, packed vs storage vs arithmetic" in text
    # the advised mask, applied as --fix would (keep-fp32 bits=1), on the GPU
    g = Graph.load(param, bin_)
    apply_passes(g, [f"keep-fp32[names=softmax_46,bits={masks[0]['featmask']}]"])
    x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 320)).astype(np.float32)
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x[None]})[0].reshape(40, 6625)
    with open_target("vulkan", progress=None) as t:
        fixed = float(np.abs(t.run(g, x, num_threads=1)["out0"].reshape(ref.shape) - ref).max())
        assert t.cpu_layers(g) == [("squeeze_82", "Squeeze")]  # 31=1 keeps the Softmax on the GPU
    assert fixed < finals["default"] / 3, (fixed, finals["default"])


@pytest.mark.real
@pytest.mark.slow
def test_compare_repair_on_the_gpu_decodes_with_the_repaired_model(v3, tmp_path, capsys) -> None:
    """``compare --repair 0.1 --target vulkan``: the quick repair-for-target search runs on lavapipe (0.1 is a
    confidence change the model as given already meets, so it keeps every layer fp16), and the lines are decoded
    with what it returns: exactly the GPU's numbers."""
    _vulkan()
    onnx, param, bin_ = v3
    out = tmp_path / "r.json"
    assert main(["compare", onnx, param, bin_, "--options", "fp32", "--no-isolated", "--text-lines", "2",
                 "--target", "vulkan", "--repair", "0.1", "--json", str(out), "-q"]) == 0
    data = json.loads(out.read_text())
    tl = {t["label"]: t for t in data["text_lines"]["targets"]}
    gpu, repaired = tl["vulkan"], tl["vulkan after repair"]
    note = next(n for n in data["text_lines"]["notes"] if n.startswith("phone repair: vulkan"))
    assert "all fp16 (as converted)" in note
    assert [x["confidence"] for x in repaired["per_line"]] == [x["confidence"] for x in gpu["per_line"]]
    assert repaired["max_abs"] == gpu["max_abs"] and repaired["identical"] == gpu["identical"] == 2


@pytest.mark.real
@pytest.mark.slow
def test_convert_with_gpu_rows(tmp_path, capsys) -> None:
    _vulkan()
    out = tmp_path / "cls"
    assert main(["convert", "ppocrv2-cls", "-o", str(out), "--target", "vulkan", "--no-report"]) == 0
    text = capsys.readouterr().out
    rows = [ln for ln in text.splitlines() if "on vulkan (lavapipe)" in ln]
    assert [r.split(",")[-1].split()[0] for r in rows] == ["default", "fp32"], text
    gpu = json.loads((out / "convert.json").read_text())["phone"]
    assert gpu["target"] == "vulkan" and gpu["no_vulkan_implementation"] == []
    # fp32 on the GPU reaches the converter's fp32 floor (~1e-7 here); fp16 there costs far more (1.2e-3)
    assert gpu["after"]["fp32"] < 1e-5 and gpu["after"]["default"] > 100 * gpu["after"]["fp32"]
    assert gpu["before"]["default"] > 1e-4


@pytest.mark.real
def test_gpu_rows_report_layers_without_a_vulkan_implementation(v3) -> None:
    """convert's GPU rows name the layers the GPU hands to the CPU (PP-OCRv3 rec: its Squeeze)."""
    _vulkan()
    from ncnnpass.passes.toolchain.convert import _phone_figures
    from ncnnpass.passes.toolchain.convert_figures import ConvertResult, ModelFigures

    onnx, param, bin_ = v3
    g = Graph.load(param, bin_)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 320)).astype(np.float32)
    rows = _phone_figures(g, g, onnx, x, "vulkan")
    assert rows["no_vulkan_implementation"] == [{"layer": "squeeze_82", "type": "Squeeze"}]
    assert 1e-2 < rows["after"]["default"] < 0.3 and rows["after"]["fp32"] < 1e-4
    fig = ModelFigures(len(g.layers), 0.0, 0.0, 1.0)
    res = ConvertResult("o", onnx, ("a", "b"), ("c", "d"), "repair", [], {"before": fig, "after": fig}, "", 1e-4,
                        phone=rows)
    assert ("on vulkan (lavapipe): 1 layer(s) have no Vulkan implementation and run on the CPU: Squeeze squeeze_82"
            in res.table())


def test_inspect_flags_placements_that_break_a_path(tmp_path, capsys) -> None:
    body = """
Input in0 0 1 in 0=16 1=16 2=8
Convolution c1 1 1 in a 0=16 1=3 4=1 5=1 6=1152
Convolution c2 1 1 a b 0=16 1=1 5=1 6=256
Convolution c3 1 1 b out 0=16 1=1 5=1 6=256
"""
    cases = {}
    for name, bits, safe in (("arm-only", 7, True), ("bit1", 2, False), ("every", 7, True), ("no-boundary", 23, False)):
        g = fill_weights(model(body), seed=0, scale=0.5)
        g.layer("c2").featmask = bits
        if safe:
            make_featmask_safe(g)
            g.layer("c2").featmask = bits if name == "arm-only" else g.layer("c2").featmask
        g.save(tmp_path / f"{name}.param", tmp_path / f"{name}.bin")
        assert main(["inspect", str(tmp_path / f"{name}.param"), "--json"]) == 0
        cases[name] = json.loads(capsys.readouterr().out)["featmask"]
        assert main(["inspect", str(tmp_path / f"{name}.param")]) == 0
        cases[name]["text"] = capsys.readouterr().out
    flagged = {k: sorted((b["path"], b["layer"], b["input"]) for b in v["breaks"] if not b["opt_in"])
               for k, v in cases.items()}
    assert flagged == {"arm-only": [("vulkan", "c2", None)], "bit1": [("arm", "c2", 0), ("vulkan", "c2", None)],
                       "every": [], "no-boundary": [("arm", "c2", 0)]}
    assert "no Vulkan shader compiles" in next(b["reason"] for b in cases["bit1"]["breaks"] if b["path"] == "vulkan")
    assert "vulkan: c2 (Convolution 31=7): 31=7 keeps it on the GPU" in cases["arm-only"]["text"]
    assert "featmask placements: right on x86, the ARM CPU and the Vulkan GPU" in cases["every"]["text"]
    assert cases["every"]["by_value"] == {"23": 1}
    # x86 with bf16 storage (opt-in): the every-path form's masked reader of a boundary gets bf16 (docs/gpu.md)
    assert [(b["path"], b["opt_in"]) for b in cases["every"]["breaks"]] == [("x86-bf16", True)]
    assert "with use_bf16_storage on x86 (opt-in" in cases["every"]["text"]


def _one_line_error(capsys, code: int, what: str) -> None:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert code == 1 and len(lines) == 1 and what in lines[0], err


def test_no_lavapipe_is_one_line_in_every_command(tmp_path, capsys, monkeypatch) -> None:
    """Without lavapipe (and not root to install it) compare, run and convert stop before any work."""
    g = fill_weights(model("Input in0 0 1 in 0=4 1=4 2=4\nConvolution c 1 1 in out 0=4 1=1 6=16"), seed=0)
    g.save(tmp_path / "m.param", tmp_path / "m.bin")
    (tmp_path / "m.onnx").write_bytes(b"")
    monkeypatch.setattr(vulkan_env, "ICD_DIRS", (str(tmp_path),))
    monkeypatch.setattr(vulkan_env.os, "geteuid", lambda: 1000)
    what = "the Vulkan target needs the Debian package(s) mesa-vulkan-drivers"
    files = [str(tmp_path / "m.param"), str(tmp_path / "m.bin")]
    _one_line_error(capsys, main(["compare", str(tmp_path / "m.onnx"), *files, "--target", "vulkan"]), what)
    _one_line_error(capsys, main(["run", *files, "-o", str(tmp_path / "o.param"), str(tmp_path / "o.bin"),
                                  "--target", "vulkan"]), what)
    _one_line_error(capsys, main(["convert", "ppocrv2-cls", "-o", str(tmp_path / "c"), "--target", "vulkan"]), what)
    assert not (tmp_path / "o.param").exists() and not (tmp_path / "c").exists()


def test_no_vulkan_device_is_one_line_in_compare_and_run(v3, tmp_path, capsys, monkeypatch) -> None:
    """lavapipe provisioned but the worker sees no device (its manifest gone): one line naming it, exit 1, not a
    model mismatch (compare) and nothing written (run)."""
    _vulkan()
    onnx, param, bin_ = v3
    close_shared_targets()
    monkeypatch.setattr(vulkan_env.VulkanRuntime, "environment",
                        lambda self, base=None: {"VK_ICD_FILENAMES": str(tmp_path / "none.json"),
                                                 "VK_DRIVER_FILES": str(tmp_path / "none.json"),
                                                 "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    try:
        _one_line_error(capsys, main(["compare", onnx, param, bin_, "--target", "vulkan", "-q"]),
                        "finds no Vulkan device")
        _one_line_error(capsys, main(["run", param, bin_, "-o", str(tmp_path / "o.param"), str(tmp_path / "o.bin"),
                                      "--target", "vulkan", "--shape", "3,48,320"]), "finds no Vulkan device")
    finally:
        close_shared_targets()
    assert not (tmp_path / "o.param").exists()
