"""Bad pass input fails before any rewrite, with one line (issue 15): every spec of a list is parsed and
every pass's options validated before the first pass runs, so a bad option at the end of a pipeline leaves
the graph exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import fill_weights, model

# gap-fc-to-conv rewrites this SE block: a bad spec after it must stop it from running
SE = """
Input in0 0 1 in 0=16 1=8 2=3
Convolution conv 1 1 in x 0=16 1=3 4=1 5=1 6=432
Pooling gap 1 1 x g 0=1 4=1
InnerProduct fc1 1 1 g h 0=4 1=1 2=64 9=1
InnerProduct fc2 1 1 h s 0=16 1=1 2=64
Sigmoid sig 1 1 s a
BinaryOp mul 2 1 x a out 0=2
"""

BAD_SPECS = [
    ("keep-fp32[types=Innerproduct]", "keep-fp32: unknown layer type(s) Innerproduct"),
    ("keep-fp32[types=]", "keep-fp32: types must be non-empty"),
    ("keep-fp32[names=]", "keep-fp32: names must be non-empty"),
    ("keep-fp32[pattern=]", "keep-fp32: pattern must be a pattern"),
    ("keep-fp32[pattern=Foo f 1 1 a b]", "unknown layer type 'Foo'"),
    ("keep-fp32", "keep-fp32 needs types=, names= and/or pattern="),
    ("keep-fp32[types=InnerProduct,bits=0]", "keep-fp32: bits must set some of ncnn's featmask bits 1..255"),
    ("keep-fp32[types=InnerProduct,bits=-2]", "keep-fp32: bits must set some of ncnn's featmask bits 1..255"),
    ("keep-fp32[types=InnerProduct,bits=256]", "keep-fp32: bits must set some of ncnn's featmask bits 1..255"),
    ("keep-fp32[types=InnerProduct,bits=fast]", "keep-fp32: bad bits 'fast'"),
    ("keep-fp32[types=InnerProduct,safe=maybe]", "keep-fp32: safe must be 1/0"),
    ("keep-fp32[types=InnerProduct,types=Gemm]", "option 'types' is given twice"),
    ("keep-fp32[colour=red]", "pass keep-fp32 has no option colour"),
    ("adaptive-avgpool-lowering[direction=sideways]", "adaptive-avgpool-lowering: direction must be lower or raise"),
    ("adaptive-avgpool-lowering[static=often]", "adaptive-avgpool-lowering: static must be 1/0"),
    ("gap-fc-to-conv[fast=1]", "pass gap-fc-to-conv has no option fast (options: none)"),
    ("keep-fp32[types=InnerProduct", "bad pass spec"),
    ("no-such-pass", "unknown pass 'no-such-pass'"),
]


def se() -> Graph:
    return fill_weights(model(SE), seed=0)


def snapshot(g: Graph) -> tuple:
    return g.to_param_text(), g.to_bin_bytes(), g.declared_outputs, [ly.name for ly in g.layers]


@pytest.mark.parametrize("spec, words", BAD_SPECS)
def test_a_bad_spec_fails_before_any_pass_and_leaves_the_graph(spec: str, words: str) -> None:
    g = se()
    before = snapshot(g)
    with pytest.raises(NcnnpassError) as exc:
        apply_passes(g, ["gap-fc-to-conv", spec], input_shape=(3, 8, 16))
    assert words in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert snapshot(g) == before  # gap-fc-to-conv, first in the list, did not run


@pytest.mark.parametrize("kwargs, words", [
    ({"input_shape": (3, 0, 16)}, "dimensions must be positive integers"),
    ({"input_shape": (3, -8, 16)}, "dimensions must be positive integers"),
    ({"input_shape": (3, 8.5, 16)}, "dimensions must be positive integers"),
    ({"input_shape": {"nope": (3, 8, 16)}}, "a shape is given for nope, which the model has no blob of"),
    ({"max_iterations": 0}, "max_iterations must be a positive int"),
    ({"max_iterations": -1}, "max_iterations must be a positive int"),
    ({"fold_storage": "fp8"}, "fold_storage must be 'fp32' or 'keep'"),
])
def test_bad_call_options_fail_before_any_pass(kwargs: dict, words: str) -> None:
    g = se()
    before = snapshot(g)
    with pytest.raises(NcnnpassError, match=words):
        apply_passes(g, "repair", **kwargs)
    assert snapshot(g) == before


def _counting_pass():
    from ncnnpass.passes.engine import FunctionPass, Option
    from ncnnpass.passes.engine.options import in_range, positive

    return FunctionPass("test-counting", "declares checked numeric options", lambda graph, ctx, **kw: 0, options={
        "rounds": Option(2, "how many rounds", int, check=positive),
        "ratio": Option(0.5, "a share", float, check=in_range(0.0, 1.0))})


@pytest.mark.parametrize("options, words", [
    ({"rounds": "0"}, "test-counting: rounds must be positive, not '0'"),
    ({"rounds": -3}, "test-counting: rounds must be positive, not -3"),
    ({"ratio": "1.5"}, "test-counting: ratio must be between 0.0 and 1.0, not '1.5'"),
    ({"ratio": "much"}, "test-counting: ratio must be a float, not 'much'"),
])
def test_declared_checks_refuse_numbers_that_make_no_sense(options: dict, words: str) -> None:
    p = _counting_pass()
    with pytest.raises(NcnnpassError) as exc:
        p.configure(**options)
    assert str(exc.value) == words
    assert p.configure(rounds="0x3", ratio=1).options == {"rounds": 3, "ratio": 1.0}


@pytest.mark.parametrize("names", ["", " , ", []])
def test_no_passes_is_an_error(names) -> None:
    with pytest.raises(NcnnpassError, match="no passes given"):
        apply_passes(se(), names)


def test_keep_fp32_accepts_a_custom_type_the_graph_has() -> None:
    g = model("Input in 0 1 x\nMyOp op 1 1 x y\nReLU r 1 1 y out\n")
    assert apply_passes(g, "keep-fp32[types=MyOp,safe=0]")["keep-fp32"] == 1
    with pytest.raises(NcnnpassError, match="unknown layer type"):
        apply_passes(model("Input in 0 1 x\nReLU r 1 1 x out\n"), "keep-fp32[types=MyOp]")


def test_good_values_still_parse() -> None:
    g = se()
    apply_passes(g, ["keep-fp32[types=InnerProduct|Sigmoid,bits=no_fp16_storage|0x80,safe=0]"])
    assert {ly.name: ly.featmask for ly in g.layers if ly.featmask} == {"fc1": 130, "fc2": 130, "sig": 130}


# -- the command line: exit 1, one line, nothing written ---------------------------------------------------------
@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    param, bin_ = tmp_path / "m.param", tmp_path / "m.bin"
    se().save(str(param), str(bin_))
    return str(param), str(bin_)


@pytest.mark.parametrize("args, words", [
    (["--passes", "gap-fc-to-conv,keep-fp32[types=Innerproduct]"], "unknown layer type(s) Innerproduct"),
    (["--passes", "gap-fc-to-conv,keep-fp32[types=InnerProduct,bits=0]"], "bits must set some"),
    (["--passes", "gap-fc-to-conv,adaptive-avgpool-lowering[direction=sideways]"], "direction must be lower"),
    (["--passes", ""], "no passes given"),
    (["--passes", "gap-fc-to-conv", "--shape", "3,0,16"], "dimensions must be positive"),
])
def test_run_bad_pass_input_is_one_line_and_writes_nothing(files, tmp_path: Path, capsys, args, words) -> None:
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *files, "-o", *out, *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ncnnpass run: error: ") and words in err[0], err
    assert not Path(out[0]).exists() and not Path(out[1]).exists()


def test_convert_refuses_a_bad_pipeline_before_any_stage(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["convert", "ppocrv3-rec", "-o", str(out), "--pipeline", "repair,keep-fp32[bits=0]"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ncnnpass convert: error: keep-fp32: bits must set some of ncnn's featmask bits 1..255 "
                   "(no_fp16_arithmetic=1, no_fp16_storage=2, no_bf16_storage=4, no_int8=8, no_vulkan=16, "
                   "no_sgemm=32, no_winograd=64, single_thread=128), not '0'"]
    assert not out.exists()  # nothing fetched, converted or written


@pytest.mark.real
def test_a_real_model_is_untouched_by_a_bad_pipeline(ppocrv3_rec_ncnn) -> None:
    g = Graph.load(*map(str, ppocrv3_rec_ncnn))
    before = snapshot(g)
    with pytest.raises(NcnnpassError, match="bits must set some"):
        apply_passes(g, ["optimize", "keep-fp32[types=InnerProduct,bits=300]"], input_shape=(3, 48, 320))
    assert snapshot(g) == before
    assert apply_passes(g, "optimize", input_shape=(3, 48, 320)).changed  # the same graph, good specs
