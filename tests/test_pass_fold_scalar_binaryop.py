"""``fold-scalar-binaryop`` on small models, compared in real ncnn (fp32 options).

Tolerance: folding reassociates float math (s·(W∗x) vs (s·W)∗x, b + h·ΣW, Winograd transforms of
different weights): atol 1e-5 + 1e-5·max|output| (outputs reach ~30 here; measured up to 8.6e-5 abs,
i.e. ~3e-6 of the output range).
"""

from __future__ import annotations

import pytest

from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import assert_equivalent, fill_weights, model

ATOL, RTOL = 1e-5, 1e-5
OPS = {"add": "0=0 1=1 2=0.75", "sub": "0=1 1=1 2=0.5", "mul": "0=2 1=1 2=1.5", "div": "0=3 1=1 2=4.0",
       "rsub": "0=7 1=1 2=0.25"}
IN = "Input in0 0 1 in 0=13 1=11 2=12"

CONVS = {
    "conv3x3-pad1-winograd": "Convolution c 1 1 {i} {o} 0=16 1=3 4=1 5=1 6=1728",
    "conv3x3-stride2": "Convolution c 1 1 {i} {o} 0=16 1=3 3=2 4=1 5=1 6=1728",
    "conv1x1": "Convolution c 1 1 {i} {o} 0=16 1=1 5=1 6=192",
    "conv1x1-pad": "Convolution c 1 1 {i} {o} 0=8 1=1 4=1 5=1 6=96",
    "conv3x3-dilated-asym": "Convolution c 1 1 {i} {o} 0=8 1=3 2=2 4=2 15=1 14=0 16=2 6=864",
    "conv-same-upper": "Convolution c 1 1 {i} {o} 0=8 1=3 3=2 4=-233 5=1 6=864",
    "dw3x3-pad1": "ConvolutionDepthWise c 1 1 {i} {o} 0=12 1=3 4=1 5=1 6=108 7=12",
    "dw5x5-pad2-stride2": "ConvolutionDepthWise c 1 1 {i} {o} 0=12 1=5 3=2 4=2 5=1 6=300 7=12",
    "group-conv": "ConvolutionDepthWise c 1 1 {i} {o} 0=12 1=3 4=1 5=1 6=324 7=4",
    "conv-pad-value": "Convolution c 1 1 {i} {o} 0=8 1=3 4=1 18=0.5 5=1 6=864",
    "conv-hardswish": "Convolution c 1 1 {i} {o} 0=8 1=3 4=1 5=1 6=864 9=6 -23310=2,0.2,0.5",
}


@pytest.mark.parametrize("conv", list(CONVS))
@pytest.mark.parametrize("op", list(OPS))
def test_forward_fold(conv: str, op: str) -> None:
    body = f"{IN}\nBinaryOp op 1 1 in t {OPS[op]}\n" + CONVS[conv].format(i="t", o="out")
    g = fill_weights(model(body), seed=2)
    after = g.copy()
    report = apply_passes(after, ["fold-scalar-binaryop"])
    assert report["fold-scalar-binaryop"] == 1 and after.count_by_type("BinaryOp") == 0
    assert_equivalent(g, after, atol=ATOL, rtol=RTOL, seeds=(0, 1))


@pytest.mark.parametrize("layer", [
    "Convolution c 1 1 in t 0=8 1=3 4=1 6=864",                         # no bias: one is created
    "ConvolutionDepthWise c 1 1 in t 0=12 1=3 4=1 5=1 6=108 7=12",
    "Deconvolution c 1 1 in t 0=6 1=3 3=2 5=1 6=648",
    "DeconvolutionDepthWise c 1 1 in t 0=12 1=2 3=2 5=1 6=48 7=12",
    "InnerProduct c 1 1 in t 0=10 1=1 2=17160",
])
@pytest.mark.parametrize("op", list(OPS))
def test_backward_fold(layer: str, op: str) -> None:
    g = fill_weights(model(f"{IN}\n{layer}\nBinaryOp op 1 1 t out {OPS[op]}"), seed=3)
    after = g.copy()
    assert apply_passes(after, ["fold-scalar-binaryop"])["fold-scalar-binaryop"] == 1
    assert after.count_by_type("BinaryOp") == 0
    assert after.layer("c").get("bias_term") == 1
    assert_equivalent(g, after, atol=ATOL, rtol=RTOL)


def test_innerproduct_forward_and_chains() -> None:
    body = f"""{IN}
Convolution c0 1 1 in a 0=8 1=1 5=1 6=96
BinaryOp m0 1 1 a b 0=2 1=1 2=1.25
BinaryOp a0 1 1 b d 0=0 1=1 2=-0.5
HardSwish hs 1 1 d e 0=0.166666672 1=0.5
BinaryOp m1 1 1 e f 0=2 1=1 2=0.75
BinaryOp a1 1 1 f h 0=0 1=1 2=0.25
ConvolutionDepthWise dw 1 1 h k 0=8 1=3 4=1 5=1 6=72 7=8
InnerProduct fc 1 1 k out 0=5 1=1 2=5720
"""
    g = fill_weights(model(body), seed=4)
    after = g.copy()
    apply_passes(after, ["fold-scalar-binaryop"])
    assert after.count_by_type("BinaryOp") == 0
    assert_equivalent(g, after, atol=ATOL, rtol=RTOL, seeds=(0, 1))


@pytest.mark.parametrize("body, reason", [
    # the BinaryOp result is read twice: folding would change the other reader
    (f"{IN}\nConvolution c 1 1 in t 0=8 1=1 5=1 6=96\nBinaryOp op 1 1 t u 0=2 1=1 2=2.0\n"
     "Sigmoid s 1 1 t v\nBinaryOp add 2 1 u v out 0=0", "outside the match"),
    # a fused activation sits between the linear part and the scalar op
    (f"{IN}\nConvolution c 1 1 in t 0=8 1=1 5=1 6=96 9=1\nBinaryOp op 1 1 t out 0=2 1=1 2=2.0", None),
    # pow is not affine
    (f"{IN}\nConvolution c 1 1 in t 0=8 1=1 5=1 6=96\nBinaryOp op 1 1 t out 0=6 1=1 2=2.0", "where"),
    # multiplying the input by 0 cannot be undone by a pad value
    (f"{IN}\nBinaryOp op 1 1 in t 0=2 1=1 2=0.0\nConvolution c 1 1 t out 0=8 1=3 4=1 5=1 6=864", "where"),
])
def test_unsafe_cases_are_left_alone(body: str, reason: str | None) -> None:
    g = fill_weights(model(body), seed=5)
    report = apply_passes(g, ["fold-scalar-binaryop"])
    assert report["fold-scalar-binaryop"] == 0
    if reason:
        assert any(reason in r for r in report.stats["fold-scalar-binaryop"].skipped), report


def test_fp16_weights_promoted_to_fp32_or_kept() -> None:
    body = f"{IN}\nConvolution c 1 1 in t 0=8 1=3 4=1 5=1 6=864\nBinaryOp op 1 1 t out 0=2 1=1 2=1.7"
    g = fill_weights(model(body), seed=6, storage="fp16")
    exact = g.copy()
    apply_passes(exact, ["fold-scalar-binaryop"])
    assert exact.layer("c").weights["weight"].storage == "fp32"
    assert_equivalent(g, exact, atol=ATOL, rtol=RTOL)
    small = g.copy()
    apply_passes(small, ["fold-scalar-binaryop"], fold_storage="keep")
    assert small.layer("c").weights["weight"].storage == "fp16"
    # re-rounding the folded weights to fp16 costs about fp16 precision (2^-11 relative)
    assert_equivalent(g, small, atol=2e-2, rtol=2e-3)


def test_protected_output_kept() -> None:
    body = f"{IN}\nConvolution c 1 1 in t 0=8 1=1 5=1 6=96\nBinaryOp op 1 1 t out 0=2 1=1 2=2.0\nSigmoid s 1 1 t v"
    g = fill_weights(model(body), seed=7)
    assert apply_passes(g, ["fold-scalar-binaryop"])["fold-scalar-binaryop"] == 0  # t is an output too
