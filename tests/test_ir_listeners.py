"""Graph mutation notifications: side tables (the Split book first) never hold a layer that left the graph."""

from __future__ import annotations

from ncnnpass.ir import Graph
from ncnnpass.ir.listeners import GraphListener
from ncnnpass.passes import apply_passes

SPLIT_NET = ("7767517\n6 7\nInput in 0 1 x\nSplit sp 1 2 x x1 x2\nReLU a 1 1 x1 y\nReLU b 1 1 x2 z\n"
             "BinaryOp add 2 1 y z s\nReLU c 1 1 s out\n")


class Recorder(GraphListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def layer_added(self, layer):
        self.events.append(("added", layer.name))

    def layer_removed(self, layer):
        self.events.append(("removed", layer.name))

    def layer_rewired(self, layer, old_inputs, old_outputs):
        self.events.append(("rewired", layer.name, ",".join(old_inputs), ",".join(layer.inputs)))

    def layer_renamed(self, layer, old_name):
        self.events.append(("renamed", old_name, layer.name))

    def blob_renamed(self, old, new):
        self.events.append(("blob", old, new))


def test_every_edit_is_announced_in_order():
    g = Graph.from_text(SPLIT_NET)
    with g.listening(Recorder()) as rec:
        g.layer("a").name = "a2"
        g.rename_blob("out", "probs")
        relu = g.add_layer("ReLU", "extra", ("probs",), ("more",))
        g.layer("b").inputs = ("y",)
        g.remove(relu)
    assert rec.events[0] == ("renamed", "a", "a2")
    assert ("blob", "out", "probs") in rec.events
    assert ("added", "extra") in rec.events and rec.events[-1] == ("removed", "extra")
    assert ("rewired", "b", "x", "y") in rec.events
    g.layer("c").name = "c2"  # the listener is gone after the block
    assert rec.events[-1] == ("removed", "extra")


def test_a_removed_consumer_leaves_the_split_book():
    g = Graph.from_text(SPLIT_NET)
    a = g.layer("a")
    assert a in g.splits.readers()
    g.replace(a, [g.layers[0].__class__("ReLU", "a_new", ("x",), ("y",))])
    assert a not in g.splits.readers() and all(ly.graph is g for ly in g.splits.readers())
    assert g.splits["x"].slots[0] is None  # the Split is written with fresh names
    c = g.copy()  # used to raise KeyError on the dead layer
    assert c.to_param_text() == g.to_param_text()
    assert "sp " not in g.to_param_text()


def test_a_rewired_consumer_leaves_its_slot():
    g = Graph.from_text(SPLIT_NET)
    g.layer("b").inputs = ("y",)
    assert g.splits["x"].slots[1] is None and g.layer("b") not in g.splits.readers()


def test_copy_after_a_pass_replaced_a_split_reader():
    """The issue-15 crash: a pass replaces a layer that a Split slot held (here fuse-activation merges
    conv1 + ReLU into a new Convolution), then ``copy()`` raised KeyError on the dead layer."""
    text = ("7767517\n6 7\nInput in 0 1 x 0=8 1=8 2=4\nSplit sp 1 2 x x1 x2\n"
            "Convolution conv1 1 1 x1 c 0=4 1=1 6=16\nReLU r 1 1 c y\nConvolution conv2 1 1 x2 z 0=4 1=1 6=16\n"
            "BinaryOp add 2 1 y z out\n")
    g = Graph.from_text(text)
    conv1 = g.layer("conv1")
    report = apply_passes(g, "fuse-activation")
    assert "fuse-activation" in str(report) and conv1.graph is None
    assert all(ly.graph is g for ly in g.splits.readers())
    c = g.copy()
    assert c.to_param_text() == g.to_param_text() and "9=1" in c.to_param_text()
