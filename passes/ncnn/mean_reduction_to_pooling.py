"""``mean-reduction-to-pooling``: SE blocks that start with a mean ``Reduction`` get the adaptive-pooling form.

Why: PP-OCRv6's PPLCNetV4 SE block is ``x.mean(axis=[2,3], keepdim=True)`` → 1×1 conv → ReLU → 1×1
conv → HardSigmoid → multiply. pnnx writes the mean as ``Reduction 0=3 1=0 3=1,2 4=1 5=1``; without
keepdims (or after hand edits) the pooled blob is 1-D and the convolutions become ``InnerProduct`` or
1×1 ``Convolution`` layers reading a 1-D blob. On x86 with F16C, InnerProduct runs with fp16 weights
under ncnn's default options, losing ~1e-4 like ``Pooling 4=1`` + InnerProduct does.

How: a mean Reduction over exactly h and w of a 3-D blob (ncnn's axes count from the channel axis when
``5=1``; negative axes count from the end) computes what adaptive average Pooling to 1×1 computes
(per-channel sum times 1/(h·w), fp32). When its result reaches an InnerProduct or a 1-D 1×1 Convolution
through element-wise layers, it becomes ``Pooling 0=1 7=1 8=1`` (+ ``Flatten`` when keepdims is off,
which is exactly the old 1-D blob); ``gap-fc-to-conv`` then turns the chain into 1×1 Convolutions.

Left alone: keepdims followed by a 1×1 Convolution (already fp32 on x86 under default options: measured
max |default − fp32| = 0 on the ncnn wheel), ``coeff != 1``, ``5=0`` files with axes (ncnn refuses them),
``1=1`` (reduce all), other axes, and inputs whose rank is not known to be 3.
"""

from __future__ import annotations

from ncnnpass.ir import Layer

from ..engine import RulePass, is_elementwise
from .gap_fc_to_conv import convertible, reaches, reaches_innerproduct

TEXT = """
rule mean-to-pooling-flat
doc "mean Reduction over h,w (keepdims 0) feeding an InnerProduct chain -> adaptive 1x1 Pooling + Flatten"
match:
  Reduction r 1 1 x v  ...
where:
  hw_mean(r) == 0 and rank(x) == 3 and reaches_innerproduct(v)
replace:
  Pooling r 1 1 x v3  0=1 7=1 8=1 31={r.featmask if r.featmask else none}
  Flatten flatten 1 1 v3 v

rule mean-to-pooling-keepdims
doc "mean Reduction over h,w (keepdims 1) feeding an InnerProduct -> adaptive 1x1 Pooling"
match:
  Reduction r 1 1 x v  ...
where:
  hw_mean(r) == 1 and rank(x) == 3 and reaches_innerproduct_only(v)
replace:
  Pooling r 1 1 x v  0=1 7=1 8=1 31={r.featmask if r.featmask else none}
"""

# Reduction params (src/layer/reduction.cpp): 0 operation (3 = mean), 1 reduce_all (default 1),
# 2 coeff (default 1), 3 axes (array), 4 keepdims (default 0), 5 fixbug0 (1 = axes exclude the batch).
_MEAN = 3


def hw_mean(m, layer: Layer) -> int | None:
    """keepdims (0/1) if ``layer`` is a plain mean over axes {h, w} of a 3-D blob, else ``None``."""
    p = layer.params
    try:
        op, reduce_all, keepdims, fixbug = (int(p.get(k, d)) for k, d in ((0, 0), (1, 1), (4, 0), (5, 0)))
        coeff = float(p.get(2, 1.0))
        axes = p.get(3, [])
        axes = [int(a) for a in (axes if isinstance(axes, (list, tuple)) else [axes])]
    except (TypeError, ValueError):
        return None
    if op != _MEAN or reduce_all or coeff != 1.0 or fixbug != 1 or keepdims not in (0, 1):
        return None
    if {a + 3 if a < 0 else a for a in axes} != {1, 2}:
        return None
    return keepdims


def reaches_innerproduct_only(m, blob, depth: int = 8) -> bool:
    """Does the c×1×1 ``blob`` reach an InnerProduct through element-wise layers only? (A 1×1 Convolution
    reading c×1×1 already runs in fp32, so it does not count.)"""
    def hit(c) -> bool:
        if c.type == "InnerProduct":
            return convertible(c)
        return c.type == "Flatten" and reaches_innerproduct(m, c.outputs[0])

    return reaches(m, blob, hit, is_elementwise, depth)


PASS = RulePass(
    "mean-reduction-to-pooling",
    "mean Reduction over h,w feeding an InnerProduct / 1-D Convolution chain -> adaptive 1x1 Pooling",
    TEXT, {"hw_mean": hw_mean, "reaches_innerproduct": reaches_innerproduct,
           "reaches_innerproduct_only": reaches_innerproduct_only}, file=__file__)
