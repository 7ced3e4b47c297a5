"""``adaptive-avgpool-lowering`` both directions, compared in real ncnn (exact rewrites: atol 1e-6)."""

from __future__ import annotations

import pytest

from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import assert_equivalent, fill_weights, model

NAME = "adaptive-avgpool-lowering"
TOL = {"atol": 1e-6, "rtol": 1e-6}


def lower(body: str, **kw):
    g = fill_weights(model(body))
    after = g.copy()
    report = apply_passes(after, [kw.pop("spec", NAME)], **kw)
    assert not after.check()
    return g, after, report


@pytest.mark.parametrize("size, out, kernel", [
    ((12, 8), (3, 2), (4, 4)),        # (w, h) -> out_w x out_h
    ((12, 8), (1, 1), (12, 8)),
    ((12, 8), (-233, 4), (1, 2)),     # -233 keeps the width
])
@pytest.mark.parametrize("ptype", [0, 1])
def test_lower_to_fixed_kernel_when_the_model_declares_its_size(size, out, kernel, ptype) -> None:
    (w, h), (ow, oh), (kw, kh) = size, out, kernel
    body = f"Input in0 0 1 in 0={w} 1={h} 2=5\nPooling p 1 1 in y 0={ptype} 7=1 8={ow} 18={oh}\nSigmoid s 1 1 y out"
    g, after, report = lower(body)
    assert report[NAME] == 1
    p = after.layer("p")
    assert (p.get("adaptive_pooling"), p.get("kernel_w"), p.get("kernel_h"), p.get("stride_w"), p.get("stride_h"),
            p.get("pad_mode")) == (0, kw, kh, kw, kh, 1)
    assert_equivalent(g, after, **TOL)


def test_not_divisible_or_dynamic_size_is_left_alone() -> None:
    _, _, report = lower("Input in0 0 1 in 0=10 1=8 2=5\nPooling p 1 1 in y 0=1 7=1 8=3 18=2\nSigmoid s 1 1 y out")
    assert report[NAME] == 0
    # no declared size: a shape given for the run is not a promise that the model only sees that size
    body = "Input in0 0 1 in\nPooling p 1 1 in y 0=1 7=1 8=3 18=2\nSigmoid s 1 1 y out"
    _, _, report = lower(body, input_shape=(5, 8, 12))
    assert report[NAME] == 0
    g, after, report = lower(body, input_shape=(5, 8, 12), spec=f"{NAME}[static=1]")
    assert report[NAME] == 1
    assert_equivalent(g, after, (5, 8, 12), **TOL)


def test_adaptive_1x1_then_flatten_becomes_global_unless_an_innerproduct_converts() -> None:
    body = "Input in0 0 1 in 0=6 1=4 2=5\nPooling p 1 1 in t 0=1 7=1 8=1\nFlatten f 1 1 t y\nSoftmax sm 1 1 y out 0=0"
    g, after, report = lower(body)
    assert report[NAME] == 1 and after.types() == {"Input": 1, "Pooling": 1, "Softmax": 1}
    assert after.layer("p").get("global_pooling") == 1
    assert_equivalent(g, after, **TOL)
    body = "Input in0 0 1 in 0=6 1=4 2=5\nPooling p 1 1 in t 0=1 7=1 8=1\nFlatten f 1 1 t y\nInnerProduct fc 1 1 y out 0=3 2=15"
    _, _, report = lower(body)
    assert report[NAME] == 0  # gap-fc-to-conv would turn it back: no ping-pong


def test_raise_direction() -> None:
    body = "Input in0 0 1 in 0=6 1=4 2=5\nPooling p 1 1 in y 0=0 4=1\nSoftmax sm 1 1 y out 0=0"
    g, after, report = lower(body, spec=f"{NAME}[direction=raise]")
    assert report[NAME] == 1
    assert dict(after.layer("p").params) == {0: 0, 7: 1, 8: 1} and after.count_by_type("Flatten") == 1
    assert_equivalent(g, after, **TOL)
    with pytest.raises(Exception, match="direction must be"):
        lower(body, spec=f"{NAME}[direction=sideways]")
