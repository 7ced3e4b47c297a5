"""The emulated phone target: the aarch64 ncnn wheel under qemu-user (provisioned by .ci/install).

Slow by nature (one fp16 PP-OCRv3 rec inference takes ~13 s emulated): the model runs few times, in one
warm worker per target. With CI=true a missing runtime fails these tests (never skips)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ncnnpass.ir import Graph, RuntimeBridgeError, runtime
from ncnnpass.passes.engine.testing import fill_weights, model

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def arm_ready() -> None:
    import fixtures

    from ncnnpass.ir.runtime.arm_env import arm_runtime_status

    reason = arm_runtime_status()
    fixtures.require(reason is None, f"the emulated ARM runtime: {reason} (run .ci/install)")


@pytest.fixture(scope="module")
def v3(arm_ready) -> Graph:
    import fixtures

    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    return Graph.load(param, bin)


@pytest.fixture(scope="module")
def x(v3) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (3, 48, 320)).astype(np.float32)


@pytest.fixture(scope="module")
def x86_fp32(v3, x) -> np.ndarray:
    return runtime.run(v3, x, options="fp32", num_threads=1)["out0"]


def test_phone_fp16_error_and_fp32_floor(v3, x, x86_fp32) -> None:
    """Measured (arm-precision.md): cortex-a76 default options 5.7e-2 off x86 fp32; fp32 options ~1e-5."""
    with runtime.open_target("arm", progress=None) as arm:
        fp16, fp32 = (arm.run(v3, x, options=o, num_threads=1)["out0"] for o in ("default", "fp32"))
    assert fp16.shape == fp32.shape == x86_fp32.shape == (40, 6625)
    phone = float(np.abs(fp16 - x86_fp32).max())
    floor = float(np.abs(fp32 - x86_fp32).max())
    assert 1e-2 < phone < 0.5, phone
    assert floor < 1e-4, floor
    # x86 under its own default options is far closer than the phone (fp16 only in InnerProduct weights)
    x86_default = runtime.run(v3, x, options="default", num_threads=1)["out0"]
    assert float(np.abs(x86_default - x86_fp32).max()) < phone / 10


def test_pre_fp16_phone_sits_between(v3, x, x86_fp32) -> None:
    """cortex-a57 has no asimdhp: measured 1.1e-3 under default options, far below the a76's 5.7e-2."""
    out = runtime.run(v3, x, options="default", num_threads=1, target="arm-a57")["out0"]
    err = float(np.abs(out - x86_fp32).max())
    assert 1e-4 < err < 1e-2, err


def test_featmask_crash_on_arm_is_an_error(v3, x) -> None:
    """31=3 on every layer but the (regenerated, unmasked) Splits makes ARM ncnn abort ("pool allocator get
    wild", double free); x86 runs the same file. The worker turns it into one line and comes back."""
    g = v3.copy()
    for ly in g.layers:
        if ly.type != "Input":
            ly.featmask |= 3
    x86 = runtime.run(g, x, num_threads=1)["out0"]
    assert np.isfinite(x86).all()
    with runtime.open_target("arm", progress=None) as arm:
        with pytest.raises(RuntimeBridgeError, match=r"ncnn worker \(arm cortex-a76 \(emulated\)\)") as err:
            arm.run(g, x, num_threads=1)
        msg = str(err.value)
        assert "\n" not in msg
        assert "SIGABRT" in msg or "SIGSEGV" in msg or "memory corruption" in msg, msg
        tiny = fill_weights(model("Input in0 0 1 x 0=4 1=4 2=4\nReLU r 1 1 x y\n"))
        ones = -np.ones((4, 4, 4), np.float32)
        assert np.array_equal(arm.run(tiny, ones)["y"], np.zeros((4, 4, 4), np.float32))  # restarted


def small() -> Graph:
    return fill_weights(model("""
Input in0 0 1 x 0=16 1=16 2=8
Convolution c1 1 1 x t 0=16 1=3 4=1 5=1 6=1152
ReLU r 1 1 t u
Pooling p 1 1 u v 0=1 1=2 2=2
Convolution c2 1 1 v y 0=8 1=1 5=1 6=128
"""), seed=2)


def test_shape_inference_on_arm(arm_ready) -> None:
    shapes = runtime.infer_shapes(small(), (8, 20, 12), target="arm")
    assert shapes == runtime.infer_shapes(small(), (8, 20, 12), target="x86")
    assert shapes["y"] == (8, 10, 6)


def test_cli_verify_on_arm_prints_the_phone_error(arm_ready, tmp_path) -> None:
    g = small()
    g.save(tmp_path / "m.param", tmp_path / "m.bin")
    out = subprocess.run([sys.executable, "-m", "ncnnpass.cli.main", "run", str(tmp_path / "m.param"),
                          str(tmp_path / "m.bin"), "-o", str(tmp_path / "o.param"), str(tmp_path / "o.bin"),
                          "--verify", "--target", "arm"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    assert "on arm cortex-a76 (emulated)" in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("phone error on arm cortex-a76"))
    before, after = (float(w.rstrip(",")) for w in line.split("before ")[1].replace("after ", "").split()[:2])
    assert before == after  # no passes: the same file
    scale = float(np.abs(runtime.run(g, np.random.default_rng(0).uniform(-1, 1, (8, 16, 16)), options="fp32")["y"]).max())
    assert 1e-5 < before / scale < 5e-2, (line, scale)  # fp16 storage and arithmetic of a 3x3 conv, relative
    assert (tmp_path / "o.param").exists()
