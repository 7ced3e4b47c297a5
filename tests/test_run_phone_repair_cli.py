"""``ncnnpass run --pipeline repair --target arm``: the phone repair search through the CLI, on the emulated
phone (a small synthetic net, so the test costs a few emulated runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures import require

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph, runtime
from ncnnpass.ir.runtime.arm_env import arm_runtime_status
from ncnnpass.passes.engine.testing import fill_weights, model
from ncnnpass.passes.precision import unsafe_edges

BODY = """
Input in0 0 1 in 0=32 1=16 2=3
Convolution c1 1 1 in a 0=16 1=3 4=1 5=1 6=432 9=1
Convolution c2 1 1 a b 0=16 1=3 4=1 5=1 6=2304 9=1
Convolution c3 1 1 b c 0=16 1=3 4=1 5=1 6=2304 9=1
Convolution c4 1 1 c d 0=16 1=3 4=1 5=1 6=2304
Pooling gap 1 1 d g 0=1 4=1
InnerProduct fc 1 1 g out 0=8 1=1 2=128
"""
SHAPE = (3, 16, 32)


def _arm_error(g: Graph, x: np.ndarray) -> float:
    ref = runtime.run(g, x, options="fp32", target="x86")["out"]
    got = runtime.run(g, x, options="default", target="arm")["out"]
    assert np.all(np.isfinite(got))
    return float(np.abs(got - ref).max())


@pytest.mark.real
@pytest.mark.slow
def test_run_repair_target_arm_meets_the_tolerance(tmp_path: Path, capsys) -> None:
    require(arm_runtime_status() is None, f"the emulated ARM runtime: {arm_runtime_status()}")
    g = fill_weights(model(BODY), seed=3)
    g.save(tmp_path / "m.param", tmp_path / "m.bin")
    x = np.random.default_rng(7).uniform(-1, 1, SHAPE).astype(np.float32)
    before = _arm_error(g, x)
    assert before > 1e-4  # fp16 storage and arithmetic on the emulated A76 cost something here
    tol = before / 4
    out = [str(tmp_path / "r.param"), str(tmp_path / "r.bin")]
    code = main(["run", str(tmp_path / "m.param"), str(tmp_path / "m.bin"), "-o", *out, "--pipeline", "repair",
                 "--target", "arm", "--tolerance", f"{tol:.6g}", "--shape", "3,16,32"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "phone repair: arm" in text and "kept out of fp16:" in text
    fixed = Graph.load(*out)
    marked = [ly.name for ly in fixed.layers if ly.featmask & 2 and ly.type not in ("Split", "Dropout")]
    assert marked and unsafe_edges(fixed) == []
    # measured independently on an input the search never saw
    assert _arm_error(fixed, x) <= tol


def test_tolerance_alone_still_needs_verify_or_the_phone_repair(tmp_path: Path, capsys) -> None:
    g = fill_weights(model(BODY), seed=3)
    g.save(tmp_path / "m.param", tmp_path / "m.bin")
    code = main(["run", str(tmp_path / "m.param"), str(tmp_path / "m.bin"), "-o", str(tmp_path / "r.param"),
                 str(tmp_path / "r.bin"), "--pipeline", "repair", "--tolerance", "1e-3", "--target", "x86"])
    assert code == 1
    assert "--tolerance only applies" in capsys.readouterr().err


@pytest.mark.real
def test_arm_writes_only_models_that_ran_cleanly_there(tmp_path: Path, capsys) -> None:
    """`run --target arm` runs the written model on the emulated phone first: a model that overflows fp16
    there (|x| > 65504, Inf on the phone, fine on x86) is refused; the phone repair writes a clean one."""
    from test_phone_repair import OVERFLOW

    require(arm_runtime_status() is None, f"the emulated ARM runtime: {arm_runtime_status()}")
    g = fill_weights(model(OVERFLOW), seed=0, scale=0.5)
    big = g.layer("big")
    big.set_weight("weight", big.weight("weight") * 3e4)
    g.save(tmp_path / "m.param", tmp_path / "m.bin")
    args = ["run", str(tmp_path / "m.param"), str(tmp_path / "m.bin"), "-o", str(tmp_path / "r.param"),
            str(tmp_path / "r.bin"), "--shape", "4,8,16", "--target", "arm"]
    assert main([*args, "--passes", "eliminate-noop"]) == 1
    assert "NaN/Inf on arm" in capsys.readouterr().err
    assert not (tmp_path / "r.param").exists()
    assert main([*args, "--pipeline", "repair", "--tolerance", "1e-2"]) == 0
    fixed = Graph.load(tmp_path / "r.param", tmp_path / "r.bin")
    x = np.random.default_rng(5).uniform(-1, 1, (4, 8, 16)).astype(np.float32)
    assert np.all(np.isfinite(runtime.run(fixed, x, options="default", target="arm")[fixed.outputs[0]]))
