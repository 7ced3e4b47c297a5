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
