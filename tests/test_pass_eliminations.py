"""Elimination passes (pure rewiring): outputs must agree exactly in ncnn (atol 1e-6)."""

from __future__ import annotations

import pytest

from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import assert_equivalent, fill_weights, model

IN = "Input in0 0 1 in 0=9 1=7 2=8"
TAIL = "\nSigmoid s 1 1 y out"  # keeps y internal (not a protected output)


def check(body: str, name: str, expect: int, **kw):
    g = fill_weights(model(body), seed=1)
    after = g.copy()
    report = apply_passes(after, [name], **kw)
    assert report[name] == expect, str(report)
    assert not after.check(), after.check()
    assert_equivalent(g, after, atol=1e-6, rtol=1e-6)
    return after


@pytest.mark.parametrize("name, body, expect", [
    ("eliminate-noop", f"{IN}\nNoop n 1 1 in y{TAIL}", 1),
    ("eliminate-noop", f"{IN}\nNoop n 1 1 in out", 0),                               # protected output
    ("eliminate-dropout", f"{IN}\nDropout d 1 1 in y{TAIL}", 1),
    ("eliminate-dropout", f"{IN}\nDropout d 1 1 in y 0=0.5{TAIL}", 0),                # scales: not a no-op
    ("eliminate-pooling1x1", f"{IN}\nPooling p 1 1 in y 0=0 1=1 2=1{TAIL}", 1),
    ("eliminate-pooling1x1", f"{IN}\nPooling p 1 1 in y 0=1 1=1 2=1 5=2{TAIL}", 1),
    ("eliminate-pooling1x1", f"{IN}\nPooling p 1 1 in y 0=0 1=1 2=2{TAIL}", 0),       # stride 2
    ("eliminate-pooling1x1", f"{IN}\nPooling p 1 1 in y 0=0 1=1 2=1 3=1{TAIL}", 0),   # padded
    ("eliminate-flatten-after-global-pooling", f"{IN}\nPooling p 1 1 in t 0=1 4=1\nFlatten f 1 1 t y{TAIL}", 1),
    ("eliminate-flatten-after-global-pooling",
     f"{IN}\nPooling p 1 1 in t 0=1 4=1\nFlatten f 1 1 t y\nSoftmax sm 1 1 t z{TAIL}\nConcat c 2 1 out z o2", 1),
    ("eliminate-flatten-after-global-pooling", f"{IN}\nPooling p 1 1 in t 0=1 7=1 8=1\nFlatten f 1 1 t y{TAIL}", 0),
    ("eliminate-reshape-after-global-pooling", f"{IN}\nPooling p 1 1 in t 0=1 4=1\nReshape r 1 1 t y 0=-1{TAIL}", 1),
    ("eliminate-reshape-after-global-pooling", f"{IN}\nPooling p 1 1 in t 0=1 4=1\nReshape r 1 1 t y 0=8{TAIL}", 1),
    ("eliminate-reshape-after-global-pooling",
     f"{IN}\nPooling p 1 1 in t 0=1 4=1\nReshape r 1 1 t y 0=4 1=2{TAIL}", 0),      # 2-D target
    ("eliminate-flatten-after-innerproduct",
     f"{IN}\nInnerProduct fc 1 1 in t 0=5 1=1 2=2520\nFlatten f 1 1 t y{TAIL}", 1),
    ("eliminate-flatten-after-innerproduct",                                        # 2-D input: 2-D output
     f"{IN}\nReshape r 1 1 in q 0=63 1=8\nInnerProduct fc 1 1 q t 0=5 1=1 2=315\nFlatten f 1 1 t y{TAIL}", 0),
])
def test_elimination(name: str, body: str, expect: int) -> None:
    check(body, name, expect)


def test_reshape_before_binaryop_needs_shapes() -> None:
    body = (f"{IN}\nPooling p 1 1 in v 0=1 4=1\nReshape r 1 1 v t 0=1 1=1 2=8\n"
            "BinaryOp m 2 1 in t y 0=2" + TAIL)
    after = check(body, "eliminate-reshape-before-binaryop", 1)
    assert after.count_by_type("Reshape") == 0
    # the other operand has 9 channels: ncnn would broadcast the 8-vector differently, keep the Reshape
    body = (f"{IN}\nConvolution c 1 1 in x 0=9 1=1 6=72\nPooling p 1 1 in v 0=1 4=1\nReshape r 1 1 v t 0=1 1=1 2=8\n"
            "Convolution c2 1 1 x x2 0=8 1=1 6=72\nBinaryOp m 2 1 x2 t y 0=2\nBinaryOp n 2 1 x t z 0=0" + TAIL +
            "\nSigmoid s2 1 1 z o2")
    check(body, "eliminate-reshape-before-binaryop", 1)


def test_dead_code() -> None:
    body = f"{IN}\nMemoryData md 0 1 k 0=8\nSigmoid s 1 1 in y\nTanH t 1 1 in z\nAbsVal a 1 1 z out2"
    g = fill_weights(model(body))
    g.outputs = ["y"]  # out2 and the orphaned MemoryData are not needed
    report = apply_passes(g, ["dead-code"])
    assert report["dead-code"] == 3 and g.types() == {"Input": 1, "Sigmoid": 1}
