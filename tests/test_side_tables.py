"""Tables kept beside a graph across edits never hold a dead layer (issue 15 item 1, the audit): the
rewriter's positions listen to the graph; the tools that edit copies (phone search, compare probes and
fixes, sensitivity runs) key by layer name. Checked here on the rewriter, and on a real model through the
verifier after the phone search's copy step."""

from __future__ import annotations

import pytest

from ncnnpass.ir import Graph
from ncnnpass.ir.verifier import verify_graph
from ncnnpass.passes.engine import PassContext, compile_rules
from ncnnpass.passes.engine.rewriter import Rewriter
from ncnnpass.passes.engine.testing import model

CHAIN = "Input in 0 1 x\nReLU a 1 1 x y\nReLU b 1 1 y z\nReLU c 1 1 z w\nSigmoid d 1 1 w out\n"
MERGE = """
rule merge-relu
match:
  ReLU p 1 1 x t  0=0
  ReLU q 1 1 t y  0=0
replace:
  ReLU m 1 1 x y
"""


def test_the_rewriter_forgets_layers_that_leave_the_graph() -> None:
    g = model(CHAIN)
    ctx = PassContext(g)
    (rule,) = compile_rules(MERGE)
    with g.batch(), g.listening(Rewriter(ctx)) as rw:
        ctx.rewriter = rw
        a, b, c = g.layer("a"), g.layer("b"), g.layer("c")
        assert [rw.position(ly) for ly in (a, b, c)] == [1.0, 2.0, 3.0]
        m = rule.match(a, ctx) or rule.match(b, ctx)
        assert m is not None and set(m.layers.values()) == {a, b}
        (new,) = rw.apply(rule, m)
        assert rw.position(a) == rw.position(b) == -1.0  # gone with the layers (they held 1.0 and 2.0)
        assert 2.0 < rw.position(new) < 3.0  # placed right after the last matched layer
        g.remove(c)  # an edit outside the rewriter is heard as well
        assert rw.position(c) == -1.0
        ctx.rewriter = None
    assert [ly.name for ly in g.layers] == ["in", "b_m", "d"] and verify_graph(g) == []


@pytest.mark.real
def test_the_phone_search_copy_step_verifies_on_a_real_model(ppocrv3_rec_ncnn) -> None:
    """``with_fp32_layers`` (copy, mask by name, make ARM-safe) after ``repair``: the issue-15 route to the
    Split crash; every placement the search makes is a sound graph."""
    from ncnnpass.passes import apply_passes
    from ncnnpass.passes.precision.search import with_fp32_layers

    g = Graph.load(*map(str, ppocrv3_rec_ncnn))
    apply_passes(g, "repair", input_shape=(3, 48, 320))
    names = [ly.name for ly in g.layers if ly.type not in ("Input", "MemoryData") and ly.inputs]
    for k in (1, len(names) // 3, len(names)):
        placed = with_fp32_layers(g, names[-k:])
        assert verify_graph(placed) == [], k
    assert verify_graph(g) == []
