"""One file, every path: a written model that carries featmask bits must run correctly on x86, the ARM CPU and the
Vulkan GPU (``ncnnpass.passes.measure.paths``, called by ``run`` through ``check_before_write`` and by ``convert``).

The broken files are the ones docs/gpu.md measured: the ARM-only form of the last release (``31=7`` + Dropout
boundary: NaN on Vulkan), ``31=2`` (no Vulkan shader compiles), ``31=23`` without a boundary (ARM crashes).
With CI=true a missing emulated ARM runtime or lavapipe fails these tests."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures import require

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.featmask import carries_featmask, make_featmask_safe, mask_split
from ncnnpass.passes.engine.testing import fill_weights, model
from ncnnpass.passes.measure.paths import (
    ALL_PATHS,
    PathResult,
    check_every_path,
    resolve_paths,
    without_featmasks,
)
from ncnnpass.passes.measure.tolerance import compare_outputs

# the synthetic net of docs/gpu.md: c2 reads an fp16 blob directly, c4 through a Split, add2 after a BinaryOp
SYNTH = """
Input in0 0 1 in 0=16 1=16 2=8
Convolution c1 1 1 in a 0=16 1=3 4=1 5=1 6=1152
Convolution c2 1 1 a b 0=16 1=1 5=1 6=256
Convolution c3 1 1 a c 0=16 1=1 5=1 6=256
Convolution c4 1 1 b d 0=16 1=1 5=1 6=256
BinaryOp add 2 1 b c e 0=0
BinaryOp add2 2 1 d e out 0=0
"""
KEPT = ("c2", "c4", "add2")


def _synth(bits: int, boundaries: bool) -> Graph:
    g = fill_weights(model(SYNTH), seed=0, scale=0.5)
    for n in KEPT:
        g.layer(n).featmask = bits
    if boundaries:
        make_featmask_safe(g)  # the every-path form (31=23 with boundaries, Splits 31=23)
        for n in KEPT:
            g.layer(n).featmask = bits
    return g


def _need(*paths: str) -> None:
    from ncnnpass.passes.measure.paths import path_status

    for p in paths:
        require(path_status(p) is None, f"the {p} path: {path_status(p)}")


def test_without_featmasks_clears_the_precision_bits_of_layers_and_splits() -> None:
    g = _synth(7, True)
    g.layer("c3").featmask = 64 | 1  # no winograd (kept) + fp32 arithmetic (cleared)
    assert carries_featmask(g) and "31=23" in g.to_param_text()
    plain = without_featmasks(g)
    assert not carries_featmask(plain) and "31=23" not in plain.to_param_text()
    assert plain.layer("c3").featmask == 64 and g.layer("c3").featmask == 65  # the original is untouched
    assert [ly.type for ly in plain.layers] == [ly.type for ly in g.layers]  # the Dropout boundaries stay
    assert not carries_featmask(_synth(0, False))


def test_resolve_paths() -> None:
    chosen, skipped = resolve_paths("available")
    assert chosen[0] == "x86" and set(chosen) | set(skipped) == set(ALL_PATHS)
    assert resolve_paths("none") == ([], {})
    assert resolve_paths("vulkan,x86") == (["vulkan", "x86"], {})
    with pytest.raises(NcnnpassError, match="unknown path"):
        resolve_paths("gpu")


def _result(masked: np.ndarray | None, plain: np.ndarray | None, ref: np.ndarray) -> PathResult:
    r = PathResult("vulkan", "vulkan (lavapipe)", failure=None if masked is not None else "crashed")
    if masked is not None:
        r.masked = compare_outputs({"out": ref}, {"out": masked})
    if plain is not None:
        r.plain = compare_outputs({"out": ref}, {"out": plain})
    return r


def test_clearly_wrong_means_worse_than_without_masks_beyond_the_margin() -> None:
    ref = np.linspace(-2, 2, 100).astype(np.float32)
    e = np.zeros_like(ref)
    e[3] = 1e-2
    assert _result(ref + 1.5 * e, ref + e, ref).broken is None  # within 2x
    assert _result(ref + 0.1 * e, ref + e, ref).broken is None  # better
    assert "off (max abs)" in _result(ref + 3 * e, ref + e, ref).broken  # 3x worse
    # the slack (1e-4 relative above magnitude 1): an unmasked file exact on this path leaves rounding room
    assert _result(ref + 1e-5, ref, ref).broken is None
    nan = ref.copy()
    nan[0] = np.nan
    assert "NaN/Inf" in _result(nan, ref + e, ref).broken
    assert _result(ref + e, nan, ref).broken is None  # no scale without masks: finite is enough
    assert "the run fails" in _result(None, ref, ref).broken


@pytest.mark.slow
def test_every_path_on_the_synthetic_net() -> None:
    """31=23 without a boundary runs on x86 and Vulkan and crashes the emulated A76 (docs/gpu.md): refused,
    naming arm. The every-path form runs on all three. The ARM-only form (31=7 + boundary) is NaN on Vulkan
    and the emulated minute on ARM is spared."""
    _need("arm", "vulkan")
    bad = check_every_path(_synth(23, False), paths="all")
    verdict = {r.path: r.broken for r in bad.results}
    assert verdict["x86"] is None and verdict["vulkan"] is None
    assert "crash" in verdict["arm"] or "SIGABRT" in verdict["arm"] or "corrupt" in verdict["arm"], verdict
    assert bad.refusal.startswith("its featmasks break arm") and "c2 (Convolution 31=23, arm)" in bad.refusal
    good = check_every_path(_synth(23, True), paths="all")
    assert [r.path for r in good.results] == ["x86", "vulkan", "arm"] and good.refusal is None, good.lines()
    arm_only = check_every_path(_synth(7, True), paths="all")
    assert [r.path for r in arm_only.broken] == ["vulkan"] and "NaN/Inf" in arm_only.broken[0].broken
    assert "arm" in arm_only.skipped and "vulkan is broken already" in arm_only.skipped["arm"]


def test_run_refuses_31_2_on_the_gpu(tmp_path, capsys) -> None:
    """31=2 alone: no Vulkan shader compiles (the worker's one-line error); nothing is written."""
    _need("vulkan")
    _synth(2, False).save(tmp_path / "m.param", tmp_path / "m.bin")
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", str(tmp_path / "m.param"), str(tmp_path / "m.bin"), "-o", *out, "--paths", "x86,vulkan"]) == 1
    cap = capsys.readouterr()
    assert "vulkan (lavapipe): BROKEN: the run fails" in cap.out and "could not compile a Vulkan shader" in cap.out
    assert "refusing to write" in cap.err and "c2 (Convolution 31=2, vulkan)" in cap.err
    assert not (tmp_path / "o.param").exists()


@pytest.fixture(scope="module")
def v3_forms(tmp_path_factory):
    """PP-OCRv3 rec with its head (Permute, Gemm, Softmax) kept fp32: in the ARM-only form of the last release
    (31=7, Dropout boundary, Splits 31=7) and in the every-path form make_featmask_safe writes (31=23)."""
    import fixtures

    param, bin_ = require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    g = Graph.load(param, bin_)
    head = [ly.name for ly in g.layers if ly.type not in ("Input", "MemoryData") and ly.inputs][-3:]
    d = tmp_path_factory.mktemp("v3forms")
    files = {}
    for form, bits in (("arm-only", 7), ("every-path", 23)):
        h = g.copy()
        for n in head:
            h.layer(n).featmask = 7
        for blob in make_featmask_safe(h).masked_splits:
            mask_split(h, blob, bits)
        for n in head:
            h.layer(n).featmask = bits
        files[form] = (str(d / f"{form}.param"), str(d / f"{form}.bin"))
        h.save(*files[form])
    return files


@pytest.mark.real
@pytest.mark.slow
def test_run_refuses_the_arm_only_form_and_writes_the_every_path_form(v3_forms, tmp_path, capsys) -> None:
    """The file issue 18 found: right on x86 and the ARM CPU, NaN on the GPU. run refuses it (on a machine without
    lavapipe by the placement rule; here by running it); the every-path form of the same head is written, 3.6e-3
    on lavapipe against 5.9e-2 without masks (docs/gpu.md)."""
    _need("vulkan")
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *v3_forms["arm-only"], "-o", *out, "--shape", "3,48,320"]) == 1
    cap = capsys.readouterr()
    assert "vulkan (lavapipe): BROKEN: output 'out0' has NaN/Inf" in cap.out
    assert "refusing to write" in cap.err and "its featmasks break vulkan" in cap.err
    assert "softmax_46 (Softmax 31=7, vulkan)" in cap.err and not (tmp_path / "o.param").exists()
    # no input size known (the pnnx file declares none): the placement rule decides, nothing runs
    assert main(["run", *v3_forms["arm-only"], "-o", *out]) == 1
    cap = capsys.readouterr()
    assert "vulkan: not run (no input size known: give --shape); 3 placement(s) break it" in cap.out
    assert "refusing to write" in cap.err and not (tmp_path / "o.param").exists()
    # the every-path form: x86 and the GPU run it correctly (the emulated minute is spared with --paths)
    assert main(["run", *v3_forms["every-path"], "-o", *out, "--shape", "3,48,320", "--paths", "x86,vulkan"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("vulkan (lavapipe): ok"))
    masked, plain = (float(v) for v in line.split("max abs ")[1].replace("(without masks ", "").split(")")[0].split())
    assert masked < plain / 5 and plain > 1e-2, line  # 3.6e-3 vs 5.9e-2
    assert "1 layer(s) have no Vulkan implementation and run on the CPU: Squeeze squeeze_82" in text
    assert (tmp_path / "o.param").exists()


def test_convert_fails_when_the_pipeline_leaves_a_file_that_breaks_a_path() -> None:
    """convert's stage "verify on every ncnn path" (run only when the pipeline wrote featmask bits) is fatal like
    the verification against onnxruntime; a file without masks skips it."""
    _need("vulkan")
    from ncnnpass.ir.errors import VerificationError
    from ncnnpass.passes.toolchain.convert import _every_path_stage
    from ncnnpass.passes.toolchain.convert_figures import ConvertResult

    said: list[str] = []
    result = ConvertResult("o", "m.onnx", ("a", "b"), ("c", "d"), "repair", [], {}, "", 1e-4)
    stages: list = []
    _every_path_stage(stages, _synth(0, False), (8, 16, 16), 0, "x86,vulkan", said.append, result)
    assert stages == [] and result.paths is None
    with pytest.raises(VerificationError, match=r"stage 'verify on every ncnn path' failed: model.ncnn.param is not "
                                                r"right on every path: its featmasks break vulkan"):
        _every_path_stage(stages, _synth(7, True), (8, 16, 16), 0, "x86,vulkan", said.append, result)
    assert [r["path"] for r in result.paths["paths"]] == ["x86", "vulkan"] and "NaN/Inf" in result.paths["refusal"]
    assert stages[0].status == "failed" and "checking the written file on vulkan (lavapipe)" in said
