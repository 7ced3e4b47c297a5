"""Shapes are one lazily inferred analysis: a shape-dependent rule sees the same facts whatever ran before.

Before, shapes were refreshed only ahead of passes flagged ``needs_shapes``; a rule of an unflagged pass
that read the shape of a blob an earlier pass had created saw "unknown" and did not fire, depending on
whether a flagged pass happened to run in between. Here the rewriter invalidates the blobs it creates
and the next question about them infers shapes again.
"""

from __future__ import annotations

from ncnnpass.ir import Graph
from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine import RulePass
from ncnnpass.passes.engine.testing import assert_equivalent, fill_weights, model

# A: put a Noop between global pooling and its InnerProduct (a new blob ``t`` with no shape yet).
SPLIT = RulePass("test-split", "GAP -> IP  =>  GAP -> Noop -> IP", """
rule split
match:
  Pooling p 1 1 x y  0=%pt 4=1 ...
  InnerProduct fc 1 1 y z ...
replace:
  @p p 1 1 x t  @p
  Noop n 1 1 t y
  @fc fc 1 1 y z  @fc
""")
# B (not flagged needs_shapes): drop a Noop whose input has a known 1-D shape.
DROP = RulePass("test-drop", "Noop on a known 1-D blob", """
rule drop
match:
  Noop n 1 1 x y
where:
  len(shape(x)) == 1
replace:
  y := x
""")
# C: any pass flagged needs_shapes (it never fires): in the old manager the only shape refresh point.
FLAGGED = RulePass("test-flagged", "refreshes shapes, never fires", """
rule never
match:
  Noop n 1 1 x y
where:
  false
replace:
  y := x
""", needs_shapes=True)

SE = """
Input in0 0 1 in 0=8 1=4 2=3
Convolution conv 1 1 in x 0=6 1=1 5=1 6=18
Pooling gap 1 1 x g 0=1 4=1
InnerProduct fc 1 1 g y 0=5 1=1 2=30
"""


def _run(g: Graph, order: list[RulePass], shape=None) -> tuple[Graph, int]:
    after = g.copy()
    report = apply_passes(after, order, input_shape=shape, max_iterations=1)
    return after, report["test-drop"]


def test_shape_rule_fires_whatever_ran_before() -> None:
    g = fill_weights(model(SE), seed=3)
    a, fired_a = _run(g, [FLAGGED, SPLIT, DROP])   # old manager: 0 (t created after the refresh)
    b, fired_b = _run(g, [SPLIT, FLAGGED, DROP])   # old manager: 1
    assert fired_a == fired_b == 1
    assert a.to_param_text() == b.to_param_text()
    assert a.types() == g.types()
    assert_equivalent(g, a, atol=1e-6)
    report = apply_passes(g.copy(), [FLAGGED, SPLIT, DROP], max_iterations=1)
    assert not report.stats["test-drop"].skipped  # the sweep that waited for shapes leaves no skip reason


def test_no_shapes_no_firing_and_no_inference_loop() -> None:
    g = fill_weights(model(SE.replace(" 0=8 1=4 2=3", "")), seed=3)  # no declared input shape
    after, fired = _run(g, [SPLIT, DROP])
    assert fired == 0 and after.count_by_type("Noop") == 1
    after, fired = _run(g, [SPLIT, DROP], shape=(3, 4, 8))
    assert fired == 1 and after.count_by_type("Noop") == 0


def test_shape_rule_order_independent_on_ppocrv4() -> None:
    import fixtures  # tests/fixtures.py (on sys.path through conftest); fp32 only: shapes do not depend on it

    paths = fixtures.require(lambda: fixtures.ppocrv4_rec_ncnn(False), "pnnx conversion of PP-OCRv4 rec (fp16=False)")
    g = Graph.load(*map(str, paths))
    se_blocks = sum(1 for p in g.find("Pooling") if p.get("global_pooling")
                    and any(c.type == "InnerProduct" for c in g.blobs[p.outputs[0]].consumers))
    assert se_blocks > 0
    a, fired_a = _run(g, [FLAGGED, SPLIT, DROP], shape=(3, 48, 320))
    b, fired_b = _run(g, [SPLIT, FLAGGED, DROP], shape=(3, 48, 320))
    assert fired_a == fired_b == se_blocks
    assert a.to_param_text() == b.to_param_text()
    assert_equivalent(g, a, (3, 48, 320), atol=1e-5)


def test_user_shapes_are_normalised_in_one_function() -> None:
    import pytest

    from ncnnpass.ir.errors import NcnnpassError
    from ncnnpass.ir.runtime.shapes import normalize_input_shapes, shapes_from_cli

    g = model(SE)
    assert normalize_input_shapes(g, None) is None
    assert normalize_input_shapes(g, None, required=True) == {"in": (3, 4, 8)}  # declared by the Input layer
    assert normalize_input_shapes(g, [3, 5, 9]) == {"in": (3, 5, 9)}
    assert normalize_input_shapes(g, {"in": (3, 5, 9)}, required=True) == {"in": (3, 5, 9)}
    with pytest.raises(NcnnpassError, match="no shape given for input"):
        normalize_input_shapes(g, {"other": (1,)}, required=True)
    two = model("Input a 0 1 a\nInput b 0 1 b\nBinaryOp s 2 1 a b y 0=0")
    with pytest.raises(NcnnpassError, match="give one shape per input"):
        normalize_input_shapes(two, (3, 4, 8))
    with pytest.raises(NcnnpassError, match="declare no size"):
        normalize_input_shapes(two, None, required=True)
    assert shapes_from_cli(["3x48x320"]) == (3, 48, 320)
    assert shapes_from_cli(["a:1,2", "b:3"]) == {"a": (1, 2), "b": (3,)}
    with pytest.raises(NcnnpassError, match="name each input"):
        shapes_from_cli(["a:1,2", "3"])
    with pytest.raises(NcnnpassError, match="bad shape"):
        shapes_from_cli(["3,-1"])
