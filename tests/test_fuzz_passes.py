"""The differential pass fuzzer (tests/fuzz/passes, issue 15): a short fixed-seed run, its parts, and the
replay of every regression it found.

The long campaigns are ``python -m tests.fuzz.passes --iterations N --jobs 2``; here the same machinery
runs a fixed slice of generated cases (and a few on real models) in a crash-tolerant worker, and every
file in tests/fuzz/passes/regressions/ (a reduced failing case) must now pass the oracle.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import fixtures
import numpy as np
import pytest
from fuzz.passes import real
from fuzz.passes.coverage import all_rules, summary
from fuzz.passes.generate import generate
from fuzz.passes.oracle import Case, check_case, compare, load
from fuzz.passes.reduce import Reducer, signature
from fuzz.passes.run import campaign
from fuzz.passes.runner import Pool

from ncnnpass.ir import Graph, runtime
from ncnnpass.passes import resolve_passes
from ncnnpass.passes.registry import passes

REGRESSIONS = sorted((Path(__file__).parent / "fuzz" / "passes" / "regressions").glob("*.json"))


# -- the generator ----------------------------------------------------------------------------------------
def test_generated_graphs_are_valid_for_ncnn_and_ncnnpass() -> None:
    """ncnn infers the shape the generator computed for every blob; ncnnpass loads the generator's own
    .bin encoding and writes it back byte for byte; ncnn runs every graph to finite outputs."""
    for i in range(60):
        m = generate(random.Random(f"shape-check:{i}"))
        g = Graph.from_text(m.param, m.bin)
        assert g.check() == [], i
        assert g.to_bin_bytes() == m.bin, f"graph {i}: the .bin ncnnpass writes differs from the generator's"
        feeds = {k: np.random.default_rng(i).uniform(-1, 1, v).astype(np.float32) for k, v in m.run_shapes.items()}
        out = runtime.run(g, feeds, "all", options="fp32", num_threads=1)  # every blob, as ncnn computes it
        wrong = {k: (s, out[k].shape) for k, s in m.shapes.items() if k in out and out[k].shape != s}
        assert not wrong, f"graph {i} ({m.motifs}): generator vs ncnn shapes {wrong}"
        assert all(np.isfinite(out[k]).all() for k in g.outputs), i


def test_generated_graphs_cover_the_rule_vocabulary() -> None:
    """Across graphs, the generator writes every layer type a rule names, weights in fp16 and bf16 as well
    as fp32, featmasks, shared layer names, odd Splits and undeclared input sizes."""
    types: Counter = Counter()
    traits: Counter = Counter()
    for i in range(300):
        m = generate(random.Random(f"vocab:{i}"))
        g = Graph.from_text(m.param, m.bin)
        types.update(ly.type for ly in g.layers)
        traits["fp16"] += any(w.storage == "fp16" for ly in g.layers for w in ly.weights.values())
        traits["bf16"] += any(w.storage == "bf16" for ly in g.layers for w in ly.weights.values())
        traits["featmask"] += any(ly.featmask for ly in g.layers)
        traits["shared names"] += bool(g.duplicate_layer_names())
        traits["undeclared input"] += not m.declared
        traits["masked or open Split"] += any(r.params or None in r.slots for r in g.splits.values())
        traits["protected subset"] += m.outputs is not None
    needed = {"Pooling", "InnerProduct", "Flatten", "Convolution", "ConvolutionDepthWise", "Deconvolution",
              "DeconvolutionDepthWise", "Convolution1D", "Reduction", "ReLU", "Clip", "Sigmoid", "Mish", "HardSwish",
              "HardSigmoid", "BinaryOp", "BatchNorm", "Scale", "MemoryData", "Dropout", "PReLU", "Noop", "Reshape",
              "Softmax", "Exp", "AbsVal", "Softplus", "Concat"}
    assert needed <= set(types), needed - set(types)
    assert len(traits) == 7 and all(n >= 5 for n in traits.values()), traits


# -- the oracle and the runner ------------------------------------------------------------------------------
PARAM = """7767517
3 3
Input            in0   0 1 x 0=4 1=4 2=2
Convolution      conv  1 1 x y 0=2 1=1 5=1 6=4
ReLU             relu  1 1 y z
"""


def _tiny_case(passes_: list[str]) -> Case:
    data = b"\0\0\0\0" + np.arange(4, dtype=np.float32).tobytes() + np.ones(2, np.float32).tobytes()
    return Case("tiny", "generated", PARAM, data, passes_, run_shapes={"x": [2, 4, 4]})


def test_oracle_passes_an_exact_rewrite_and_catches_a_wrong_one() -> None:
    assert check_case(_tiny_case(["fuse-activation"])).status == "ok"
    from ncnnpass.passes.engine import RulePass

    wrong = RulePass("test-relu-to-sigmoid", "ReLU -> Sigmoid (wrong)", "rule r\nmatch:\n  ReLU r 1 1 x y\n"
                     "replace:\n  Sigmoid r 1 1 x y\n")
    from ncnnpass.passes.registry import register

    register(wrong)
    try:
        o = check_case(_tiny_case(["test-relu-to-sigmoid"]))
    finally:
        passes().pop("test-relu-to-sigmoid")
    assert (o.status, o.stage, o.kind) == ("fail", "compare", "numeric"), o


def test_compare_allows_the_measured_fp32_noise_only() -> None:
    ref = {"o": np.array([1e-3, -2e-3], np.float32)}
    near = {"o": ref["o"] + np.float32(5e-7)}
    assert compare(ref, near, {"o": 0.0}, 1e-4)[1]  # 5e-7 > 1e-4 x 2e-3: a difference
    assert compare(ref, near, {"o": 1e-6}, 1e-4)[1] == ""  # within the model's own noise


def test_runner_survives_a_crashing_model_and_carries_on() -> None:
    """int8 weights on an InnerProduct without 8=1 crash the ncnn wheel: the case is reported (at the
    reference stage: the input is what is broken) and the next case runs in a fresh worker."""
    text = "7767517\n2 2\nInput in0 0 1 x 0=4\nInnerProduct fc 1 1 x y 0=4 1=0 2=16\n"
    crashing = Case("crash", "generated", text, (0x000D4B38).to_bytes(4, "little") + bytes(range(16)), [],
                    run_shapes={"x": [4]})
    with Pool({"seed": "t", "mode": "generated", "real": []}, 1, timeout=120) as pool:
        first, _ = pool.one({"case": crashing.to_json()})
        second, _ = pool.one({"case": _tiny_case(["fuse-activation"]).to_json()})
    assert (first.status, first.stage, first.kind) == ("invalid", "reference", "crash"), first
    assert second.status == "ok", second


def test_reducer_finds_the_shortest_sequence_and_a_small_graph() -> None:
    """Delta debugging against a predicate (no ncnn): 'fails' while fuse-batchnorm is in the sequence and
    the graph still holds a BatchNorm."""
    m = next(m for i in range(200) if "BatchNorm" in (m := generate(random.Random(f"reduce:{i}"))).param)
    case = Case("r", "generated", m.param, m.bin, ["optimize", "eliminate-noop", "fuse-batchnorm", "dead-code"],
                run_shapes={k: list(v) for k, v in m.run_shapes.items()})

    def fails(c: Case) -> bool:
        return "fuse-batchnorm" in c.passes and any(ly.type == "BatchNorm" for ly in load(c).layers)

    small = Reducer(fails, max_trials=300).reduce(case)
    assert small.passes == ["fuse-batchnorm"]
    assert len(load(small).layers) <= 3 < len(load(case).layers)
    assert fails(small)


def test_declared_numeric_bounds() -> None:
    exact = resolve_passes(["gap-fc-to-conv", "fuse-activation", "keep-fp32[types=InnerProduct]"])
    assert {p.numeric_bound(s) for p in exact for s in ("fp32", "keep")} == {1e-4}
    fold = resolve_passes(["fuse-batchnorm"])[0]
    assert fold.numeric_bound("fp32") == 1e-4 < fold.numeric_bound("keep")
    assert resolve_passes(["keep-fp32[types=InnerProduct,bits=no_int8]"])[0].numeric_bound() == float("inf")


def test_coverage_lists_every_rule() -> None:
    rules = all_rules()
    assert len(rules) == len(set(rules)) >= 50
    assert "gap-fc-to-conv/convert-vector-conv" in rules and "dead-code/dead-code" in rules
    share, never, _ = summary(Counter({rules[0]: 3}), "x")
    assert share == 1 / len(rules) and len(never) == len(rules) - 1


# -- the fixed-seed short run ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_short_campaign_on_generated_graphs() -> None:
    """600 generated cases of seed ``suite`` (about 15 s): no failure, no invalid input, and the generated
    graphs alone fire at least 85% of all (pass, rule) pairs."""
    t = campaign("suite", range(600), "generated", [], jobs=1, timeout=120)
    assert not t.failures, "\n".join(f"case {i}: {o.status} {o.stage} [{o.kind}] {o.message}"
                                     for i, o, _ in t.failures[:5])
    share, never, _ = summary(t.fired["generated"], "generated")
    assert share >= 0.85, never


@pytest.mark.slow
@pytest.mark.real
def test_short_campaign_on_real_models() -> None:
    """8 real cases of seed ``suite`` on PP-OCRv3 rec (fp32 and fp16 weights), every form."""
    for fp16 in (False, True):
        fixtures.require(lambda f=fp16: fixtures.ppocrv3_rec_ncnn(f), f"pnnx conversion of PP-OCRv3 rec (fp16={fp16})")
    t = campaign("suite", range(8), "real", ["ppocrv3-rec", "ppocrv3-rec-fp16"], jobs=1, timeout=300)
    assert t.cases == 8 and not t.failures, [(i, o.message) for i, o, _ in t.failures]
    assert sum(t.fired["real"].values()) > 0


@pytest.mark.slow
@pytest.mark.real
def test_real_forms_compute_the_pnnx_model() -> None:
    """Each hand-shaped form of PP-OCRv3 rec (onnx2ncnn, ncnnoptimize, mean, mean-keepdims) computes what
    pnnx's file computes (ncnn fp32 options, |diff| <= 1e-5)."""
    param, bin_ = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    text, data = Path(param).read_text(), Path(bin_).read_bytes()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 320)).astype(np.float32)
    ref = list(runtime.run(Graph.from_text(text, data), x, options="fp32").values())[0]
    changed = set()
    for form in real.FORMS[1:]:
        t2, d2 = real.shaped(text, data, form)
        g = Graph.from_text(t2, d2)
        out = list(runtime.run(g, x, options="fp32").values())[0]
        assert float(np.abs(out - ref).max()) <= 1e-5, form
        if t2 != text:
            changed.add(form)
        if form == "onnx2ncnn":
            assert g.count_by_type("InnerProduct") < Graph.from_text(text, data).count_by_type("InnerProduct")
        if form.startswith("mean"):
            assert g.count_by_type("Reduction") == 2
    assert changed == set(real.FORMS[1:])


# -- regressions -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool():
    with Pool({"seed": "regressions", "mode": "generated", "real": []}, 1, timeout=300) as p:
        yield p


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_regression_replays_clean(path: Path, pool: Pool) -> None:
    """A reduced case the fuzzer once failed on (its cause in the file) passes the oracle, in a worker."""
    rec = json.loads(path.read_text())
    assert rec["cause"], f"{path.name}: say what was wrong"
    outcome, _ = pool.one({"case": rec["case"]})
    assert outcome.status == "ok", f"{rec['cause']}: {outcome.stage} [{outcome.kind}] {outcome.message}"
    assert signature(outcome) != tuple(rec["signature"])


def test_regression_files_are_small() -> None:
    for path in REGRESSIONS:
        rec = json.loads(path.read_text())
        case = Case.from_json(rec["case"])
        assert len(load(case).layers) <= 40 and len(case.passes) <= 4, path.name


def test_an_uncounted_edit_is_no_fixpoint() -> None:
    """Found by the fuzzer: run_passes trusted the counts a pass returns, so a pass that edits the graph
    without counting it (keep-fp32's ARM cast boundaries did) ended the run at a 'fixpoint' that the
    passes before it had not seen. Here the uncounted edit is a Dropout that eliminate-dropout removes."""
    from ncnnpass.passes import apply_passes
    from ncnnpass.passes.engine import FunctionPass

    def sneaky(graph, ctx) -> int:
        if not graph.find("Dropout") and not getattr(graph, "_sneaked", False):
            conv = graph.layer("conv")
            graph.add_layer("Dropout", "drop", inputs=[conv.outputs[0]], outputs=["d"], after=conv)
            graph.layer("relu").inputs = ["d"]
            graph._sneaked = True
        return 0  # edited, but says nothing

    g = load(_tiny_case([]))
    report = apply_passes(g, ["eliminate-dropout", FunctionPass("sneaky", "adds an uncounted Dropout", sneaky)])
    assert report.converged and not g.find("Dropout") and report["eliminate-dropout"] == 1
