"""``ncnnpass run --target arm``: option rules and the write gate on the emulated phone (small synthetic nets). The
phone repair search through the CLI on a real model is in tests/test_target_repair.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import require

from ncnnpass.cli.main import main
from ncnnpass.ir.runtime.arm_env import arm_runtime_status
from ncnnpass.passes.engine.testing import fill_weights, model

BODY = """
Input in0 0 1 in 0=32 1=16 2=3
Convolution c1 1 1 in a 0=16 1=3 4=1 5=1 6=432 9=1
Convolution c2 1 1 a b 0=16 1=3 4=1 5=1 6=2304 9=1
Convolution c3 1 1 b c 0=16 1=3 4=1 5=1 6=2304 9=1
Convolution c4 1 1 c d 0=16 1=3 4=1 5=1 6=2304
Pooling gap 1 1 d g 0=1 4=1
InnerProduct fc 1 1 g out 0=8 1=1 2=128
"""
OVERFLOW = """
Input in0 0 1 in 0=16 1=8 2=4
Convolution c1 1 1 in a 0=8 1=3 4=1 5=1 6=288
Convolution big 1 1 a b 0=8 1=1 5=1 6=64
BinaryOp down 1 1 b c 0=2 1=1 2=0.0001
Convolution c3 1 1 c out 0=8 1=1 5=1 6=64
"""


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
    there (|x| > 65504, Inf on the phone, fine on x86) is refused (the repair of such a model, on a real one:
    tests/test_target_repair.py)."""
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


def test_the_shape_comes_from_repair_for_targets_reference(tmp_path: Path) -> None:
    """``run --passes ...,repair-for-target[reference=M.onnx]`` on a pnnx file (its Input layer declares no
    size) takes the input shape from that ONNX, as ``--pipeline repair --onnx`` does; ``--shape`` still wins."""
    import argparse

    import fixtures

    from ncnnpass.cli.common import run_input_shape
    from ncnnpass.ir import Graph
    from ncnnpass.passes import resolve_passes

    onnx = str(require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX"))
    g = Graph.load(*map(str, require(lambda: fixtures.ppocrv3_rec_ncnn_any_width(False), "PP-OCRv3 rec, pnnx")))
    passes = resolve_passes(f"gap-fc-to-conv,repair-for-target[target=arm,reference={onnx}]")
    args = argparse.Namespace(shape=None, onnx=None)
    assert run_input_shape(args, g, []) is None  # nothing to read it from
    assert tuple(run_input_shape(args, g, passes)) == (3, 48, 320)
    from ncnnpass.ir.runtime.shapes import shapes_from_cli

    given = run_input_shape(argparse.Namespace(shape=["3,48,160"], onnx=None), g, passes)
    assert given == shapes_from_cli(["3,48,160"]) and given != run_input_shape(args, g, passes)
