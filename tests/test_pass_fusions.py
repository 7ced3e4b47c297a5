"""Fusion passes on small models built through the IR, compared in real ncnn (fp32 options).

Tolerances: pure rewiring or param moves (activation fusion, PReLU->ReLU, Eltwise) agree to 1e-6;
weight folding (BatchNorm, Scale, per-channel mul/add, Dropout) reassociates float math:
atol 1e-5 + 1e-5·max|output|.
"""

from __future__ import annotations

import numpy as np
import pytest

from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import assert_equivalent, fill_weights, model

IN = "Input in0 0 1 in 0=9 1=7 2=8"
FOLD = {"atol": 1e-5, "rtol": 1e-5}
EXACT = {"atol": 1e-6, "rtol": 1e-6}


def check(body: str, passes: list[str], expect: int, storage: str = "fp32", tol=None, seed: int = 0, **kw):
    g = fill_weights(model(body), seed=seed, storage=storage)
    after = g.copy()
    report = apply_passes(after, passes, **kw)
    assert sum(report.counts.values()) == expect, str(report)
    assert not after.check(), after.check()
    assert_equivalent(g, after, **(tol or FOLD), seeds=(0, 1))
    return g, after, report


# -- fuse-activation -------------------------------------------------------------------------------
PRODUCERS = {
    "conv": "Convolution c 1 1 in t 0=6 1=3 4=1 5=1 6=432",
    "dw": "ConvolutionDepthWise c 1 1 in t 0=8 1=3 4=1 5=1 6=72 7=8",
    "deconv": "Deconvolution c 1 1 in t 0=4 1=3 3=2 5=1 6=288",
    "deconvdw": "DeconvolutionDepthWise c 1 1 in t 0=8 1=3 3=2 5=1 6=72 7=8",
    "ip": "InnerProduct c 1 1 in t 0=10 1=1 2=5040",
}
ACTS = {
    "relu": ("ReLU a 1 1 t out", 1),
    "leaky": ("ReLU a 1 1 t out 0=0.1", 2),
    "clip": ("Clip a 1 1 t out 0=-0.2 1=0.3", 3),
    "sigmoid": ("Sigmoid a 1 1 t out", 4),
    "mish": ("Mish a 1 1 t out", 5),
    "hardswish": ("HardSwish a 1 1 t out 0=0.166666672 1=0.5", 6),
}
NOT_FUSED = {("deconv", "mish"), ("deconvdw", "mish"), ("deconv", "hardswish"), ("deconvdw", "hardswish")}


@pytest.mark.parametrize("producer", list(PRODUCERS))
@pytest.mark.parametrize("act", list(ACTS))
def test_fuse_activation(producer: str, act: str) -> None:
    line, code = ACTS[act]
    fused = (producer, act) not in NOT_FUSED
    _, after, _ = check(f"{IN}\n{PRODUCERS[producer]}\n{line}", ["fuse-activation"], int(fused),
                        tol={"atol": 1e-5, "rtol": 1e-6})
    if fused:
        assert after.layer("c").get(9) == code and after.count_by_type(line.split()[0]) == 0


@pytest.mark.parametrize("producer", ["conv", "ip"])
def test_fuse_activation_keeps_fp16_weights_byte_for_byte(producer: str) -> None:
    g, after, _ = check(f"{IN}\n{PRODUCERS[producer]}\nHardSwish a 1 1 t out 0=0.2 1=0.5", ["fuse-activation"], 1,
                        storage="fp16", tol={"atol": 1e-5, "rtol": 1e-6})
    assert after.layer("c").weights["weight"].storage == "fp16"
    assert after.to_bin_bytes() == g.to_bin_bytes()


def test_fuse_activation_unsafe_cases() -> None:
    # already has an activation; its output feeds two layers
    g = model(f"{IN}\nConvolution c 1 1 in t 0=6 1=3 4=1 5=1 6=432 9=1\nSigmoid a 1 1 t out")
    assert apply_passes(g, ["fuse-activation"])["fuse-activation"] == 0
    g = model(f"{IN}\nConvolution c 1 1 in t 0=6 1=3 4=1 5=1 6=432\nReLU a 1 1 t u\nSigmoid s 1 1 t v\n"
              "BinaryOp m 2 1 u v out 0=2")
    assert apply_passes(g, ["fuse-activation"])["fuse-activation"] == 0


def test_eliminate_redundant_relu() -> None:
    body = (f"{IN}\nInnerProduct fc 1 1 in t 0=10 1=1 2=5040 9=1\nReLU r 1 1 t u\n"
            "Clip c 1 1 u v 0=0.0 1=1.0\nReLU r2 1 1 v w\nHardSwish hs 1 1 w x\nReLU r3 1 1 x out")
    _, after, _ = check(body, ["eliminate-redundant-relu"], 2, tol=EXACT)
    assert [ly.name for ly in after.find("ReLU")] == ["r3"]  # hard-swish can be negative


# -- BatchNorm / Scale / per-channel / dropout -----------------------------------------------------------
@pytest.mark.parametrize("producer", [p for p in PRODUCERS])
@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_fuse_batchnorm(producer: str, storage: str) -> None:
    n = int(PRODUCERS[producer].split(" 0=")[1].split()[0])
    body = f"{IN}\n{PRODUCERS[producer].replace(' 5=1', '').replace(' 1=1 2=', ' 2=')}\nBatchNorm bn 1 1 t out 0={n} 1=1e-5"
    _, after, _ = check(body, ["fuse-batchnorm"], 1, storage=storage)
    c = after.layer("c")
    assert c.get("bias_term") == 1 and c.weights["weight"].storage == "fp32"
    assert after.count_by_type("BatchNorm") == 0


def test_fuse_batchnorm_needs_matching_channels_and_no_activation() -> None:
    g = fill_weights(model(f"{IN}\nConvolution c 1 1 in t 0=6 1=3 4=1 5=1 6=432 9=1\nBatchNorm bn 1 1 t out 0=6"))
    assert apply_passes(g, ["fuse-batchnorm"])["fuse-batchnorm"] == 0


def test_fuse_batchnorm_scale_and_scale() -> None:
    body = f"{IN}\nBatchNorm bn 1 1 in t 0=8 1=1e-3\nScale sc 1 1 t out 0=8 1=1"
    check(body, ["fuse-batchnorm-scale"], 1)
    for bias in ("1=0", "1=1"):
        body = f"{IN}\nConvolution c 1 1 in t 0=6 1=3 4=1 6=432\nScale sc 1 1 t out 0=6 {bias}"
        check(body, ["fuse-scale"], 1, storage="fp16")


@pytest.mark.parametrize("op", ["0=2", "0=0"])
@pytest.mark.parametrize("md", ["0=6", "0=1 1=1 2=6"])
@pytest.mark.parametrize("first", [False, True])
def test_fuse_channel_binaryop(op: str, md: str, first: bool) -> None:
    ins = "k t" if first else "t k"
    body = (f"{IN}\nConvolution c 1 1 in t 0=6 1=3 4=1 5=1 6=432\nMemoryData md 0 1 k {md}\n"
            f"BinaryOp op 2 1 {ins} out {op}")
    _, after, _ = check(body, ["fuse-channel-binaryop"], 1)
    assert after.types() == {"Input": 1, "Convolution": 1}


def test_fuse_channel_binaryop_keeps_shared_memorydata_and_skips_wrong_shapes() -> None:
    body = (f"{IN}\nConvolution c 1 1 in t 0=6 1=3 4=1 5=1 6=432\nMemoryData md 0 1 k 0=6\n"
            "BinaryOp op 2 1 t k u 0=2\nConvolution c2 1 1 in t2 0=6 1=3 4=1 5=1 6=432\nBinaryOp op2 2 1 t2 k v 0=0\n"
            "BinaryOp sum 2 1 u v out 0=0")
    _, after, _ = check(body, ["fuse-channel-binaryop"], 2)
    assert after.count_by_type("MemoryData") == 0
    body = (f"{IN}\nConvolution c 1 1 in t 0=6 1=3 4=1 5=1 6=432\nMemoryData md 0 1 k 0=9\n"
            "BinaryOp op 2 1 t k out 0=2")  # 9 values: broadcast along W, not per channel
    check(body, ["fuse-channel-binaryop"], 0)
    body = f"{IN}\nInnerProduct c 1 1 in t 0=10 1=1 2=5040\nMemoryData md 0 1 k 0=10\nBinaryOp op 2 1 k t out 0=0"
    check(body, ["fuse-channel-binaryop"], 1)


def test_fuse_memorydata_binaryop() -> None:
    for first, op in ((False, "0=1"), (True, "0=1"), (True, "0=3"), (False, "0=6")):
        ins = "k in" if first else "in k"
        body = f"{IN}\nMemoryData md 0 1 k 0=1\nBinaryOp op 2 1 {ins} out {op}"
        g = fill_weights(model(body), seed=1)
        g.layer("md").set_weight("data", np.array([1.75], np.float32))
        after = g.copy()
        assert apply_passes(after, ["fuse-memorydata-binaryop"])["fuse-memorydata-binaryop"] == 1
        assert after.types() == {"Input": 1, "BinaryOp": 1}
        assert_equivalent(g, after, atol=1e-5, rtol=1e-6)


def test_fuse_innerproduct_dropout() -> None:
    body = f"{IN}\nInnerProduct c 1 1 in t 0=10 1=1 2=5040\nDropout d 1 1 t out 0=0.8"
    check(body, ["fuse-innerproduct-dropout"], 1, storage="fp16")
    body = f"{IN}\nInnerProduct c 1 1 in t 0=10 2=5040\nDropout d 1 1 t out 0=0.8"
    _, after, _ = check(body, ["fuse-innerproduct-dropout"], 1)
    assert "bias" not in after.layer("c").weights


def test_fuse_binaryop_eltwise_needs_equal_shapes() -> None:
    body = (f"{IN}\nBinaryOp m0 1 1 in a 0=2 1=1 2=0.5\nSigmoid s 1 1 in b\nBinaryOp m1 1 1 b c 0=2 1=1 2=-2.0\n"
            "BinaryOp add 2 1 a c out 0=0")
    _, after, _ = check(body, ["fuse-binaryop-eltwise"], 1, tol=EXACT)
    assert after.find("Eltwise")[0].get(1) == [0.5, -2.0]
    # without shapes (no Input size, none given) the rule cannot tell and does nothing
    g = model(body.replace(IN, "Input in0 0 1 in"))
    assert apply_passes(g, ["fuse-binaryop-eltwise"])["fuse-binaryop-eltwise"] == 0
    assert apply_passes(g, ["fuse-binaryop-eltwise"], input_shape=(8, 7, 9))["fuse-binaryop-eltwise"] == 1


def test_replace_prelu_with_leaky_relu() -> None:
    body = f"{IN}\nPReLU p 1 1 in out 0=1"
    g = fill_weights(model(body))
    g.layer("p").set_weight("slope", np.array([0.2], np.float32))
    after = g.copy()
    assert apply_passes(after, ["replace-prelu-with-leaky-relu"])["replace-prelu-with-leaky-relu"] == 1
    assert after.layer("p").type == "ReLU" and after.layer("p").get(0) == pytest.approx(0.2)
    assert_equivalent(g, after, **EXACT)
    check(f"{IN}\nPReLU p 1 1 in out 0=8", ["replace-prelu-with-leaky-relu"], 0)
