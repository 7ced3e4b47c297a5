"""The layer specs of ``ncnnpass.ir.layer_types``: one place for params, weights, traits and ranks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ncnnpass.ir import Graph, layer_types, schema, weight_slots
from ncnnpass.ir.errors import PatternSyntaxError, WeightError
from ncnnpass.ir.runtime import infer_shapes
from ncnnpass.ir.weights import WEIGHT_TABLE
from ncnnpass.passes.engine import PassContext, compile_rules
from ncnnpass.passes.engine.builtins import struct_channels, struct_rank
from ncnnpass.passes.engine.testing import model


def test_every_builtin_type_has_one_spec_in_enum_order() -> None:
    assert len(layer_types.SPECS) == len(set(layer_types.LAYER_TYPES)) == len(layer_types.SPECS)
    assert layer_types.LAYER_TYPES[:3] == ("AbsVal", "ArgMax", "BatchNorm")
    assert schema.KNOWN_TYPES == frozenset(s.type for s in layer_types.SPECS)
    # the weight table, the param schema and the traits all read the same spec objects
    conv = layer_types.spec("Convolution")
    assert schema.schema("Convolution") is conv and WEIGHT_TABLE["Convolution"] is conv.weights
    assert set(WEIGHT_TABLE) == {s.type for s in layer_types.SPECS if s.weights is not None}


def test_trait_groups() -> None:
    assert layer_types.types_with("conv") == {"Convolution", "ConvolutionDepthWise", "Deconvolution",
                                              "DeconvolutionDepthWise"}
    assert layer_types.types_with("conv_like") == layer_types.types_with("conv") | {"InnerProduct", "Convolution1D"}
    assert layer_types.types_with("fuses_mish") == {"Convolution", "ConvolutionDepthWise", "InnerProduct",
                                                    "Convolution1D"}
    assert layer_types.types_with("fuses_hardswish") == {"Convolution", "ConvolutionDepthWise", "InnerProduct"}
    assert layer_types.types_with("fuses_relu") == layer_types.types_with("conv_like")
    assert "Noop" in layer_types.types_with("elementwise") and "Pooling" not in layer_types.types_with("elementwise")
    assert layer_types.types_with("no_such_trait") == frozenset()


def test_pattern_group_expands_to_its_types_and_unknown_names_still_fail() -> None:
    [grouped] = compile_rules("rule r\nmatch:\n  conv_like c 1 1 x t 9=0 ...\n  ReLU a 1 1 t y\n"
                              "replace:\n  @c c 1 1 x y @c 9=1\n")
    assert grouped.root_types == {"ReLU"}
    assert grouped.players[0].types == layer_types.types_with("conv_like")
    [mixed] = compile_rules("rule r\nmatch:\n  conv|InnerProduct c 1 1 x y ...\nreplace:\n  @c c 1 1 x y @c\n")
    assert mixed.root_types == layer_types.types_with("conv") | {"InnerProduct"}
    with pytest.raises(PatternSyntaxError, match=r"unknown layer type 'conv_lik'") as e:
        compile_rules("rule r\nmatch:\n  conv_lik c 1 1 x y ...\nreplace:\n  @c c 1 1 x y @c\n", file="p.rw")
    assert "p.rw:3:" in str(e.value)


def test_custom_type_weights_are_one_registration(monkeypatch) -> None:
    from ncnnpass.ir import register_weight_layout
    from ncnnpass.ir.weight_layouts import Slot

    monkeypatch.setattr(layer_types, "_CUSTOM", {})  # the registration ends with this test

    with pytest.raises(WeightError, match="not an ncnn built-in type"):
        weight_slots("MyLayerForSpecTest", {0: 3})
    register_weight_layout("MyLayerForSpecTest", lambda g: [Slot("weight", g(0, 0), True)])
    assert weight_slots("MyLayerForSpecTest", {0: 3}) == [Slot("weight", 3, True)]
    assert "MyLayerForSpecTest" in WEIGHT_TABLE
    assert "MyLayerForSpecTest" not in schema.KNOWN_TYPES  # patterns still only accept ncnn's types


def _structural_ranks(g: Graph) -> dict[str, int]:
    m = SimpleNamespace(ctx=PassContext(g, None))
    out = {}
    for name in g.blobs:
        r = struct_rank(m, name)
        if r is not None:
            out[name] = r
    return out


def _structural_channels(g: Graph) -> dict[str, int]:
    m = SimpleNamespace(ctx=PassContext(g, None))
    return {n: c for n in g.blobs if (c := struct_channels(m, n)) is not None}


def _channel_mismatches(known: dict[str, int], shapes: dict) -> dict:
    return {k: (c, shapes[k]) for k, c in known.items() if k in shapes and len(shapes[k]) != 2 and shapes[k][0] != c}


def test_structural_ranks_agree_with_ncnn_on_a_small_graph() -> None:
    g = model("""
Input in0 0 1 in 0=8 1=4 2=3
Convolution conv 1 1 in x 0=6 1=1 5=1 6=18
Sigmoid sig 1 1 x s
Pooling gap 1 1 s p 0=1 4=1
InnerProduct fc 1 1 p f 0=5 1=1 2=30
BinaryOp add 1 1 f y 0=0 1=1 2=1.0
""")
    from ncnnpass.passes.engine.testing import fill_weights

    fill_weights(g, seed=0)
    ranks = _structural_ranks(g)
    assert ranks == {"in": 3, "x": 3, "s": 3, "p": 1, "f": 1, "y": 1}
    shapes = infer_shapes(g, {"in": (3, 4, 8)})
    assert {k: len(shapes[k]) for k in ranks} == ranks
    chans = _structural_channels(g)
    assert chans == {"in": 3, "x": 6, "s": 6, "p": 6, "f": 5, "y": 5}
    assert not _channel_mismatches(chans, shapes)


def test_structural_ranks_agree_with_ncnn_on_ppocrv4(ppocrv4_rec_ncnn) -> None:
    g = Graph.load(*map(str, ppocrv4_rec_ncnn))
    ranks = _structural_ranks(g)
    shapes = infer_shapes(g, (3, 48, 320))
    assert len(ranks) > 0.5 * len(g.blobs)  # the specs decide most ranks of a real model
    wrong = {k: (r, shapes[k]) for k, r in ranks.items() if k in shapes and len(shapes[k]) != r}
    assert not wrong
    chans = _structural_channels(g)
    assert len(chans) > 0.5 * len(g.blobs)
    assert not _channel_mismatches(chans, shapes)
