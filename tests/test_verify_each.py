"""``verify_each`` (MLIR's ``-verify-each``): the IR verifier after every pass names the pass that broke the
graph; ``ncnnpass run/convert --verify-each``; the suite-wide default from ``NCNNPASS_VERIFY_EACH``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph, GraphError
from ncnnpass.ir.splits import SplitBook
from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine import FunctionPass
from ncnnpass.passes.engine.testing import fill_weights, model
from ncnnpass.passes.engine.verify_each import ENV, EachPassVerifier, verify_each_default
from ncnnpass.passes.registry import passes, register

SPLIT_CONV = """
Input in 0 1 x 0=8 1=8 2=4
Split sp 1 2 x x1 x2
Convolution conv1 1 1 x1 c 0=4 1=1 5=1 6=16
ReLU r 1 1 c y
Convolution conv2 1 1 x2 z 0=4 1=1 5=1 6=16
BinaryOp add 2 1 y z s
ReLU last 1 1 s out
"""


def net() -> Graph:
    return fill_weights(model(SPLIT_CONV), seed=0)


def _extra_consumer(graph, ctx) -> int:
    """Wrong on purpose: a consumer entry without an input slot, no event, no rewrite reported."""
    ly = graph.layer("last")
    graph.blobs["y"].consumers.append(ly)
    return 0


def _drop_from_list(graph, ctx) -> int:
    """Wrong on purpose: the layer leaves graph.layers but not the blob table."""
    graph.layers.remove(graph.layer("last"))
    return 1


def _resize_bias(graph, ctx) -> int:
    """Wrong on purpose: a param edit (no event, no rewrite reported) that the weights no longer fit."""
    graph.layer("conv2").set("num_output", 8)
    return 0


EXTRA = FunctionPass("test-extra-consumer", "corrupts the blob table", _extra_consumer)
DROP = FunctionPass("test-drop-from-list", "corrupts the layer list", _drop_from_list)
RESIZE = FunctionPass("test-resize-bias", "breaks a weight layout", _resize_bias)


@pytest.mark.parametrize("bad, words", [
    (EXTRA, "blobs: blob 'y' lists consumers [add, last]"),
    (DROP, "dead-layer: blob 's' refers to layer 'last', which is not in the graph"),
    (RESIZE, "weights: layer 'conv2' (Convolution): weight 'bias' has 4 values, params call for 8"),
])
def test_a_broken_pass_is_caught_and_named(bad: FunctionPass, words: str) -> None:
    g = net()
    with pytest.raises(GraphError) as exc:
        apply_passes(g, ["eliminate-noop", bad, "fuse-activation"], verify_each=True)
    msg = str(exc.value)
    assert msg.startswith(f"pass {bad.name} broke the graph (verify-each, round 1): "), msg
    assert words in msg and "\n" not in msg
    assert g.has_layer("r")  # fuse-activation, after it, did not run


def test_without_verify_each_the_same_pass_goes_unnoticed() -> None:
    g = net()
    report = apply_passes(g, ["eliminate-noop", EXTRA, "fuse-activation"], verify_each=False)
    assert report["fuse-activation"] == 1  # the pipeline ran on over the broken graph


def test_the_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    assert not verify_each_default()
    apply_passes(net(), [EXTRA])  # off: not caught
    monkeypatch.setenv(ENV, "1")
    assert verify_each_default()
    with pytest.raises(GraphError, match="pass test-extra-consumer broke the graph"):
        apply_passes(net(), [EXTRA])
    monkeypatch.delenv(ENV)
    assert not verify_each_default()  # the library default is off (cost)


def test_the_suite_runs_every_pass_verified() -> None:
    """tests/conftest.py turns verify-each on for the whole session."""
    assert verify_each_default()
    with pytest.raises(GraphError, match="pass test-extra-consumer broke the graph"):
        apply_passes(net(), [EXTRA])


def test_the_issue_15_crash_is_caught_at_the_pass_that_causes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the fix (the Split book stops listening): fuse-activation replaces conv1, whose Split slot then
    names a dead layer. Without the verifier this surfaced later as a KeyError in Graph.copy()."""
    monkeypatch.setattr(SplitBook, "layer_removed", lambda self, layer: None)
    monkeypatch.setattr(SplitBook, "layer_rewired", lambda self, layer, old_inputs, old_outputs: None)
    g = net()
    with pytest.raises(GraphError) as exc:
        apply_passes(g, ["eliminate-noop", "fuse-activation", "dead-code"], verify_each=True)
    msg = str(exc.value)
    assert msg.startswith("pass fuse-activation broke the graph (verify-each, round 1): splits: the Split book "
                          "refers to layer 'conv1', which is not in the graph"), msg


def test_problems_the_input_already_had_are_not_blamed_on_a_pass() -> None:
    g = model("Input in 0 1 x\nMyCustomOp op 1 1 x y\nNoop n 1 1 y z\nReLU r 1 1 z out\n")
    assert [p.kind for p in g.check()] == ["unknown-type"]
    assert apply_passes(g, ["eliminate-noop"], verify_each=True)["eliminate-noop"] == 1


def test_an_input_graph_with_broken_wiring_is_refused_before_any_pass() -> None:
    g = net()
    g.blobs["y"].consumers.append(g.layer("last"))
    before = g.to_param_text(), g.declared_outputs
    with pytest.raises(GraphError, match="^the input graph is broken before any pass ran: blobs: "):
        apply_passes(g, ["fuse-activation"], verify_each=True)
    assert (g.to_param_text(), g.declared_outputs) == before


def test_unchanged_passes_skip_the_round_trip_but_not_the_wiring_checks() -> None:
    g = net()
    with EachPassVerifier(g) as v:
        v.after("nothing", 0, 1)
        assert (v.runs, v.full_runs) == (1, 0)
        g.layer("last").params[0] = 0.0  # a param edit: no event, but the text changes
        v.after("param-edit", 0, 1)
        assert (v.runs, v.full_runs) == (2, 1)
        g.blobs["y"].consumers.append(g.layer("last"))  # nothing the text shows: the wiring checks see it
        with pytest.raises(GraphError, match="pass wiring broke the graph"):
            v.after("wiring", 0, 1)


# -- the command line ---------------------------------------------------------------------------------------
@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    param, bin_ = tmp_path / "m.param", tmp_path / "m.bin"
    net().save(str(param), str(bin_))
    return str(param), str(bin_)


@pytest.fixture
def broken_registered():
    p = register(EXTRA)
    yield p.name
    del passes()[p.name]


def test_run_verify_each_names_the_pass_in_one_line(files, tmp_path: Path, capsys, broken_registered,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")  # the flag, not the suite's default, turns it on here
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *files, "-o", *out, "--passes", f"fuse-activation,{broken_registered}"]) == 0
    capsys.readouterr()
    Path(out[0]).unlink()
    rc = main(["run", *files, "-o", *out, "--passes", f"fuse-activation,{broken_registered}", "--verify-each"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and not Path(out[0]).exists()
    assert err[0].startswith("ncnnpass run: error: pass test-extra-consumer broke the graph (verify-each, round 1)")


def test_verify_each_needs_passes(files, tmp_path: Path, capsys) -> None:
    assert main(["run", *files, "-o", str(tmp_path / "o.param"), str(tmp_path / "o.bin"), "--verify-each"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ncnnpass run: error: --verify-each only applies with --passes or --pipeline"]


@pytest.mark.real
@pytest.mark.slow
def test_run_verify_each_on_a_real_model(ppocrv3_rec_ncnn, tmp_path: Path, capsys,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    out = [str(tmp_path / "o.param"), str(tmp_path / "o.bin")]
    assert main(["run", *map(str, ppocrv3_rec_ncnn), "-o", *out, "--pipeline", "optimize", "--verify-each",
                 "--shape", "3,48,320"]) == 0
    g = Graph.load(*out)
    assert g.check() == [] and g.count_by_type("InnerProduct") == 0


def test_convert_passes_verify_each_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """cmd_convert hands --verify-each to convert(), which hands it to apply_passes (the conversion itself
    is covered by test_convert*.py; here only the option's path)."""
    import ncnnpass.passes.toolchain.convert as conv

    seen = {}

    def fake_convert(src, outdir, **kw):
        seen.update(kw)
        raise conv.NcnnpassError("stop here")

    monkeypatch.setattr(conv, "convert", fake_convert)
    assert main(["convert", "ppocrv3-rec", "-o", str(tmp_path / "out"), "--verify-each"]) == 1
    assert seen["verify_each"] is True
    assert main(["convert", "ppocrv3-rec", "-o", str(tmp_path / "out")]) == 1
    assert seen["verify_each"] is None  # the environment's default
