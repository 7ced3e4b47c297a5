"""The Vulkan target: the pip ncnn wheel's Vulkan path on Mesa's lavapipe (provisioned by .ci/install).

With CI=true a missing lavapipe fails these tests (never skips). Evidence and numbers: docs/gpu.md."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from ncnnpass.ir import Graph, RuntimeBridgeError, runtime
from ncnnpass.ir.errors import ToolError
from ncnnpass.ir.featmask import make_featmask_safe, mask_split, unsafe_edges
from ncnnpass.ir.runtime import vulkan_env
from ncnnpass.ir.runtime.targets import VulkanTarget, open_target
from ncnnpass.passes.engine.testing import fill_weights, model


@pytest.fixture(scope="module")
def vulkan():
    import fixtures

    reason = vulkan_env.vulkan_runtime_status()
    if reason is not None:  # provision like .ci/install does (apt as root), else fail in CI / skip
        fixtures.require(lambda: vulkan_env.ensure_vulkan_runtime(), f"lavapipe for the Vulkan target: {reason}")
    with open_target("vulkan", progress=None) as t:
        yield t


def test_missing_lavapipe_names_the_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(vulkan_env, "ICD_DIRS", (str(tmp_path),))
    assert "mesa-vulkan-drivers" in vulkan_env.vulkan_runtime_status()
    monkeypatch.setattr(vulkan_env.os, "geteuid", lambda: 1000)  # not root: no apt-get, one line
    with pytest.raises(ToolError, match=r"^the Vulkan target needs the Debian package\(s\) mesa-vulkan-drivers"):
        vulkan_env.ensure_vulkan_runtime()


def test_no_vulkan_device_is_one_line_error(vulkan, tmp_path) -> None:
    """A worker whose driver manifest does not exist sees no device: loading fails in one line
    (ncnn itself would quietly fall back to the CPU)."""
    from pathlib import Path

    import ncnnpass.ir.runtime.worker as wire

    def launch():
        env = {k: v for k, v in os.environ.items() if k not in vulkan_env.DRIVER_VARIABLES}
        env.update(VK_ICD_FILENAMES=str(tmp_path / "none.json"), VK_DRIVER_FILES=str(tmp_path / "none.json"),
                   PYTHONSAFEPATH="1")
        return [sys.executable, "-u", str(Path(wire.__file__).resolve())], env

    g = model("Input in0 0 1 in 0=4 1=4 2=4\nReLU r 1 1 in out")
    with VulkanTarget(launch) as t:
        with pytest.raises(RuntimeBridgeError, match="finds no Vulkan device") as err:
            t.run(g, np.ones((4, 4, 4), np.float32))
    assert "\n" not in str(err.value)


def test_probe_reports_lavapipe_with_fp16(vulkan) -> None:
    rt = vulkan_env.ensure_vulkan_runtime()
    assert "llvmpipe" in rt.device and rt.fp16 == {"packed": True, "storage": True, "uniform": True,
                                                     "arithmetic": True}
    assert rt.environment({"VK_ICD_FILENAMES": "/x.json", "HOME": "/h"}) == {
        "HOME": "/h", "VK_ICD_FILENAMES": str(rt.icd), "VK_DRIVER_FILES": str(rt.icd)}


# Exp has no Vulkan implementation in ncnn; c2 is sent to the CPU by featmask bit 4
CPU_NET = """
Input in0 0 1 in 0=8 1=8 2=8
Convolution c1 1 1 in a 0=8 1=3 4=1 5=1 6=576
Exp e 1 1 a b
Convolution c2 1 1 b c 0=8 1=1 5=1 6=64 31=16
ReLU r 1 1 c out
"""


def test_layers_without_vulkan_run_on_the_cpu_and_are_reported(vulkan) -> None:
    g = fill_weights(model(CPU_NET), seed=0, scale=0.1)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8)).astype(np.float32)
    assert vulkan.cpu_layers(g) == [("e", "Exp"), ("c2", "Convolution")]
    ref = runtime.run(g, x, options="fp32", num_threads=1)["out"]
    gpu = vulkan.run(g, x, options="default", num_threads=1)["out"]
    fp32 = vulkan.run(g, x, options="fp32", num_threads=1)["out"]
    assert np.abs(fp32 - ref).max() < 1e-5 * np.abs(ref).max()
    assert 1e-5 < np.abs(gpu - ref).max() / np.abs(ref).max() < 1e-2  # fp16 on the GPU, not garbage
    said: list[str] = []
    with open_target("vulkan", progress=said.append) as t:  # the user hears of the fallback, once per net
        t.run(g, x)
        t.run(g, x)
    assert [m for m in said if "no Vulkan implementation" in m] == [
        "vulkan: 1 layer(s) have no Vulkan implementation and run on the CPU: Exp e"]


# the net of tests/test_featmask_safety.py: c2, c4 and add2 kept fp32; c2 reads an fp16 blob directly,
# c4 through a Split, add2 after an unmasked BinaryOp
SYNTH = """
Input in0 0 1 in 0=16 1=16 2=8
Convolution c1 1 1 in a 0=16 1=3 4=1 5=1 6=1152
Convolution c2 1 1 a b 0=16 1=1 5=1 6=256
Convolution c3 1 1 a c 0=16 1=1 5=1 6=256
Convolution c4 1 1 b d 0=16 1=1 5=1 6=256
BinaryOp add 2 1 b c e 0=0
BinaryOp add2 2 1 d e out 0=0
"""


def _synth(bits: int, safe: bool, split_bits: int = 7) -> Graph:
    """The net with c2, c4, add2 at ``31=bits``; ``safe``: with the ARM boundaries and Splits at ``split_bits``,
    the layers' own bits left as given (the ARM-only form of the last release when bits=7)."""
    g = fill_weights(model(SYNTH), seed=0, scale=0.5)
    for n in ("c2", "c4", "add2"):
        g.layer(n).featmask = bits
    if safe:
        for blob in make_featmask_safe(g).masked_splits:
            mask_split(g, blob, split_bits)
        for n in ("c2", "c4", "add2"):
            g.layer(n).featmask = bits
    return g


def test_featmask_placements_on_vulkan(vulkan) -> None:
    """The ARM-safe form (31=7 + Dropout boundary) is garbage on the GPU: ncnn's Vulkan path never casts a
    blob between fp16 and fp32 for a layer, so a masked GPU shader reads fp16 storage as fp32. 31=2 alone
    does not compile. With bit 4 too (31=23) the kept layers run on the CPU behind a download (fp32)."""
    x = {"in": np.random.default_rng(2).uniform(-1, 1, (8, 16, 16)).astype(np.float32)}
    ref = runtime.run(_synth(0, False), x, options="fp32", num_threads=1)["out"]

    def rel(g: Graph) -> float:
        out = vulkan.run(g, x, options="default", num_threads=1)["out"]
        return float(np.abs(out - ref).max() / np.abs(ref).max()) if np.isfinite(out).all() else float("inf")

    plain = rel(_synth(0, False))
    assert 1e-4 < plain < 1e-2
    assert rel(_synth(7, True)) > 1.0  # the ARM-only form (31=7 + Dropout boundary): NaN/garbage on Vulkan
    with pytest.raises(RuntimeBridgeError, match="could not compile a Vulkan shader"):
        vulkan.run(_synth(2, False), x, num_threads=1)
    safe = fill_weights(model(SYNTH), seed=0, scale=0.5)  # what ncnnpass writes now: make_featmask_safe's form
    for n in ("c2", "c4", "add2"):
        safe.layer(n).featmask = 7
    make_featmask_safe(safe)
    assert {safe.layer(n).featmask for n in ("c2", "c4", "add2")} == {23} and unsafe_edges(safe) == []
    for g in (_synth(23, True, 7), _synth(23, True, 23), safe):
        assert rel(g) <= plain
        assert {n for n, _ in vulkan.cpu_layers(g)} >= {"c2", "c4", "add2"}
        # the same file on x86 is the fp32 result of the unmasked net's layers (blobs are fp32 there)
        np.testing.assert_allclose(runtime.run(g, x, num_threads=1)["out"], ref, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def v3(vulkan):
    """PP-OCRv3 rec (pnnx fp16=0), the seed-0 input of docs/phone.md and onnxruntime's output on it."""
    import fixtures
    import onnxruntime as ort

    param, bin_ = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    g = Graph.load(param, bin_)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 320)).astype(np.float32)
    sess = ort.InferenceSession(str(fixtures.ppocrv3_rec_onnx()), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x[None]})[0].reshape(40, 6625)
    return g, x, ref


def _abs_err(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out.reshape(ref.shape) - ref).max()) if np.isfinite(out).all() else float("inf")


@pytest.mark.real
@pytest.mark.slow
def test_ppocrv3_rec_fp16_error_on_the_gpu(vulkan, v3) -> None:
    """Measured (docs/gpu.md): lavapipe with ncnn's defaults is 5.9e-2 off onnxruntime on PP-OCRv3 rec
    (random input), fp32 options 1.1e-5; the Squeeze of the head has no Vulkan implementation."""
    g, x, ref = v3
    default = vulkan.run(g, x, options="default", num_threads=1)["out0"]
    fp32 = vulkan.run(g, x, options="fp32", num_threads=1)["out0"]
    assert default.shape == fp32.shape == (40, 6625) and np.isfinite(default).all()
    err, floor = _abs_err(default, ref), _abs_err(fp32, ref)
    assert 1e-2 < err < 0.3, err
    assert floor < 1e-4, floor
    assert [t for _, t in vulkan.cpu_layers(g)] == ["Squeeze"]


@pytest.mark.real
@pytest.mark.slow
def test_ppocrv3_head_kept_fp32_in_the_every_path_form(vulkan, v3) -> None:
    """The head (Permute, Gemm, Softmax) kept fp32 in the ARM-only form of the last release (31=7 + Dropout
    boundary) is garbage on Vulkan; in the form make_featmask_safe writes now (bit 4 too: 31=23, Splits 31=23)
    the head runs on the CPU and the error drops from 5.9e-2 to 3.6e-3 (docs/gpu.md). x86 computes both alike."""
    g, x, ref = v3
    head = [ly.name for ly in g.layers if ly.type not in ("Input", "MemoryData") and ly.inputs][-3:]
    assert [g.layer(n).type for n in head] == ["Permute", "Gemm", "Softmax"]
    forms = {}
    for bits in (7, 23):
        h = g.copy()
        for n in head:
            h.layer(n).featmask |= bits
        edits = make_featmask_safe(h)
        assert edits.boundaries  # the Permute reads an fp16 blob on ARM
        assert {h.layer(n).featmask for n in head} == {23}  # every-path form
        for blob in edits.masked_splits:
            mask_split(h, blob, bits)
        for n in head:  # bits=7: the ARM-only form, as it was written before
            h.layer(n).featmask = bits
        forms[bits] = h
    assert _abs_err(vulkan.run(forms[7], x, num_threads=1)["out0"], ref) > 0.5
    every = _abs_err(vulkan.run(forms[23], x, num_threads=1)["out0"], ref)
    default = _abs_err(vulkan.run(g, x, num_threads=1)["out0"], ref)
    assert every < default / 5, (every, default)
    assert {n for n, _ in vulkan.cpu_layers(forms[23])} >= set(head)
    np.testing.assert_array_equal(runtime.run(forms[7], x, num_threads=1)["out0"],
                                  runtime.run(forms[23], x, num_threads=1)["out0"])
