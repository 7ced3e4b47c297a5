"""The IR verifier (``ncnnpass.ir.verifier``): a sound graph gives ``[]``; each way an edit can corrupt a
graph gives its own problem, named by kind and layer. Corruptions are made the way a buggy pass would
make them: through public attributes the graph cannot watch (``graph.layers``, ``graph.blobs``,
``layer.type``, Split records mutated in place) or through API paths meant for the loader."""

from __future__ import annotations

import numpy as np
import pytest

from ncnnpass.ir import Blob, Graph, GraphError, Layer
from ncnnpass.ir.splits import SplitRecord
from ncnnpass.ir.verifier import require_valid, verify_graph
from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import fill_weights, model

SPLIT_NET = ("7767517\n6 7\nInput in 0 1 x\nSplit sp 1 2 x x1 x2\nReLU a 1 1 x1 y\nReLU b 1 1 x2 z\n"
             "BinaryOp add 2 1 y z s\nReLU c 1 1 s out\n")
CONV_NET = """
Input in0 0 1 x 0=8 1=8 2=4
Convolution conv 1 1 x c 0=4 1=1 5=1 6=16
ReLU relu 1 1 c out
"""


def kinds(g: Graph, **kw) -> set[str]:
    return {p.kind for p in verify_graph(g, **kw)}


def test_sound_graphs_verify_clean() -> None:
    assert verify_graph(Graph.from_text(SPLIT_NET)) == []
    g = fill_weights(model(CONV_NET), seed=0)
    assert verify_graph(g) == []
    require_valid(g)  # does not raise
    apply_passes(g, "fuse-activation", verify_each=False)
    assert verify_graph(g) == [] and "9=1" in g.to_param_text()


def test_a_dead_layer_in_the_layer_list() -> None:
    g = Graph.from_text(SPLIT_NET)
    g.layer("b").graph = None  # what a removal that forgot the list leaves
    problems = verify_graph(g)
    assert any(p.kind == "dead-layer" and p.layer == "b" for p in problems), problems


def test_blob_table_against_the_wiring() -> None:
    g = Graph.from_text(SPLIT_NET)
    g.blobs["y"].consumers.append(g.layer("c"))  # a consumer entry without an input slot
    (p,) = verify_graph(g)
    assert p.kind == "blobs" and "'y' lists consumers [add, c]" in p.message and "(one entry per input slot)" in p.message

    g = Graph.from_text(SPLIT_NET)
    g.blobs["z"].producer = g.layer("a")
    assert "producer 'a' in the blob table but 'b'" in str(verify_graph(g))

    g = Graph.from_text(SPLIT_NET)
    g.blobs["stray"] = Blob("stray")
    assert "'stray' has neither producer nor consumers" in str(verify_graph(g))

    g = Graph.from_text(SPLIT_NET)
    del g.blobs["s"]
    assert "uses blob 's', which the blob table lacks" in str(verify_graph(g))


def test_a_blob_that_names_a_removed_layer() -> None:
    g = Graph.from_text(SPLIT_NET)
    ghost = Layer("ReLU", "ghost", ("s",), ("g",))
    g.blobs["s"].consumers.append(ghost)
    problems = verify_graph(g)
    assert any(p.kind == "dead-layer" and p.layer == "ghost" for p in problems), problems


def test_the_layer_index() -> None:
    g = Graph.from_text(SPLIT_NET)
    g.layer("c").type = "Sigmoid"  # the type index still files it under ReLU
    msgs = [p.message for p in verify_graph(g) if p.kind == "index"]
    assert any("counts 3 ReLU layers, the graph has 2" in m for m in msgs), msgs

    g = Graph.from_text(SPLIT_NET)
    g.position(g.layers[0])  # fill the position cache, then reorder the list behind the graph's back
    g.layers[1], g.layers[2] = g.layers[2], g.layers[1]
    assert "index" in kinds(g)


def test_split_records_must_name_live_slots_that_read_the_blob() -> None:
    g = Graph.from_text(SPLIT_NET)
    rec = g.splits["x"]
    ghost = Layer("ReLU", "ghost", ("x",), ("g",))
    rec.slots[0] = (ghost, 0)  # the issue-15 state: a record holding a layer the graph no longer has
    msgs = [p.message for p in verify_graph(g) if p.kind == "splits"]
    assert any("holds layer 'ghost', which is not in the graph" in m for m in msgs), msgs
    assert any("without listening" in m for m in msgs), msgs

    g = Graph.from_text(SPLIT_NET)
    g.splits["x"] = SplitRecord("sp", ["x1", "x2"], [(g.layer("add"), 0), (g.layer("b"), 0)], [])
    msgs = [p.message for p in verify_graph(g) if p.kind == "splits"]
    assert msgs == ["the Split record of 'x' says input 0 of 'add' reads it; that input is 'y'"]


def test_names_an_edit_created() -> None:
    g = Graph.from_text(SPLIT_NET)
    g.extend_loaded([Layer("ReLU", "c", ("out",), ("out2",))])  # the loader's path allows a shared name ...
    assert any(p.kind == "names" and "2 layers are named 'c'" in p.message for p in verify_graph(g))
    shared = Graph.from_text("7767517\n3 3\nInput in 0 1 x\nReLU r 1 1 x y\nReLU r 1 1 y z\n")
    assert verify_graph(shared) == []  # ... which is fine when the loaded file shared it

    g = Graph.from_text(SPLIT_NET)
    g.add_layer("ReLU", "sp", ("out",), ("o2",))  # the name of the loaded Split, which is written again
    assert "layer 'sp' took the name of the Split of 'x'" in str(verify_graph(g))
    g = Graph.from_text(SPLIT_NET)
    g.add_layer("ReLU", "r2", ("out",), ("x1",))  # a blob named like one of its tops
    assert "blob 'x1' took the name of a top of the Split of 'x'" in str(verify_graph(g))


def test_weights_sized_to_their_layouts() -> None:
    g = fill_weights(model(CONV_NET), seed=0)
    g.layer("conv").set("num_output", 8)  # params now call for 8 biases; the layer holds 4
    problems = verify_graph(g)
    assert [p.kind for p in problems] == ["weights", "round-trip"]  # (and the .bin cannot be written)
    assert "weight 'bias' has 4 values, params call for 8" in problems[0].message

    g = fill_weights(model(CONV_NET), seed=0)
    w = g.layer("conv").weights["weight"]
    w.set(np.zeros(16, np.float32))
    w.count = 12  # the array holds 16 values
    assert any(p.kind == "weights" and "holds 16 values, its count is 12" in p.message for p in verify_graph(g))


def test_order() -> None:
    g = Graph.from_text(SPLIT_NET)
    g.add_layer("ReLU", "early", ("s",), ("e",), index=1)  # reads 's' before 'add' makes it
    assert [p.kind for p in verify_graph(g)] == ["order"]


def test_round_trip_problems() -> None:
    g = Graph.from_text(SPLIT_NET)
    g.layer("c").params[5] = 'a "b'  # a string param no .param file can spell
    (p,) = verify_graph(g)
    assert p.kind == "round-trip" and "cannot be written" in p.message
    assert verify_graph(g, round_trip=False) == []


def test_copy_that_differs_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy check compares what the copy writes (here a copy that loses a layer)."""
    g = Graph.from_text(SPLIT_NET)
    real_copy = Graph.copy

    def lossy(self: Graph) -> Graph:
        c = real_copy(self)
        c.remove(c.layer("c"))
        return c

    monkeypatch.setattr(Graph, "copy", lossy)
    (p,) = verify_graph(g)
    assert p.kind == "round-trip" and p.message.startswith("copy() writes other .param text: line 2")


def test_require_valid_raises_one_line() -> None:
    g = Graph.from_text(SPLIT_NET)
    g.layer("c").type = "Sigmoid"
    with pytest.raises(GraphError, match=r"^the graph is broken: index: the type index counts 3 ReLU") as exc:
        require_valid(g)
    assert "\n" not in str(exc.value)
