"""``ncnnpass run --passes/--pipeline/--verify`` and ``ncnnpass passes``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.passes.engine.testing import fill_weights, model

SE = """
Input in0 0 1 in
Convolution conv 1 1 in x0 0=16 1=3 4=1 5=1 6=432
BinaryOp scale 1 1 x0 x 0=2 1=1 2=0.5
Pooling gap 1 1 x g 0=1 4=1
InnerProduct fc1 1 1 g h 0=4 1=1 2=64 9=1
InnerProduct fc2 1 1 h s 0=16 1=1 2=64
Sigmoid sig 1 1 s a
BinaryOp mul 2 1 x a out 0=2
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    g = fill_weights(model(SE), seed=0)
    param, bin_ = tmp_path / "m.param", tmp_path / "m.bin"
    g.save(str(param), str(bin_))
    return str(param), str(bin_)


def test_run_without_passes_still_copies(files, tmp_path: Path, capsys) -> None:
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *files, "-o", *out]) == 0
    assert Path(out[0]).read_text() == Path(files[0]).read_text()
    assert Path(out[1]).read_bytes() == Path(files[1]).read_bytes()
    assert "wrote" in capsys.readouterr().out


def test_run_pipeline_with_verify(files, tmp_path: Path, capsys) -> None:
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *files, "-o", *out, "--pipeline", "optimize", "--verify", "--shape", "3,8,16"]) == 0
    text = capsys.readouterr().out
    assert "gap-fc-to-conv" in text and "fold-scalar-binaryop" in text
    assert "out [16x8x16]: max abs" in text and "verified" in text
    g = Graph.load(out[0], out[1])
    assert g.count_by_type("InnerProduct") == 0 and g.count_by_type("BinaryOp") == 1


@pytest.fixture
def wrong_pass():
    """A deliberately wrong rewrite (Sigmoid -> TanH), registered for one test."""
    from ncnnpass.passes.engine import RulePass
    from ncnnpass.passes.registry import passes, register

    p = register(RulePass("test-wrong", "wrong on purpose", "rule r\nmatch:\n  Sigmoid s 1 1 x y\nreplace:\n"
                          "  TanH s 1 1 x y\n"))
    yield p.name
    del passes()[p.name]


def test_run_refuses_to_write_beyond_tolerance(files, tmp_path: Path, capsys, wrong_pass) -> None:
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    rc = main(["run", *files, "-o", *out, "--passes", f"gap-fc-to-conv,{wrong_pass}", "--verify",
               "--shape", "in:3,8,16", "--tolerance", "1e-3"])
    captured = capsys.readouterr()
    assert rc == 1 and not Path(out[0]).exists() and not Path(out[1]).exists()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "refusing to write" in err[0] and "tolerance 0.001" in err[0]
    assert "out [16x8x16]: max abs" in captured.out


@pytest.mark.parametrize("args, words", [
    (["--passes", "no-such-pass"], "unknown pass 'no-such-pass'"),
    (["--passes", "keep-fp32[colour=red]"], "has no option colour"),
    (["--pipeline", "repair", "--verify"], "declare no size"),
    (["--tolerance", "1e-3"], "--tolerance only applies with --verify"),
])
def test_run_errors_are_one_line(files, tmp_path: Path, capsys, args, words) -> None:
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *files, "-o", *out, *args]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err


def test_passes_command_lists_passes_and_pipelines(capsys) -> None:
    assert main(["passes"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == "passes:" and "pipelines:" in lines
    for name in ("gap-fc-to-conv", "adaptive-avgpool-lowering", "keep-fp32", "fuse-activation", "repair", "optimize"):
        assert any(line.split()[0] == name for line in lines if line.startswith("  ")), name
    assert main(["passes", "--options"]) == 0
    assert "[types=...]" in capsys.readouterr().out
