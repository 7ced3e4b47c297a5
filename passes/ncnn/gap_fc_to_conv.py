"""``gap-fc-to-conv``: global pooling + InnerProduct chains become adaptive 1×1 pooling + 1×1 Convolutions.

Why: ncnn's global pooling (``Pooling 4=1``) outputs a 1-D blob and converters then write the SE
block's 1×1 convolutions as ``InnerProduct``. On x86 with default options InnerProduct stores its
weights as fp16 (truncated), which is where PP-OCR models lose ~1e-4 against onnxruntime. Adaptive
pooling to 1×1 (``Pooling 7=1 8=1``) keeps a c×1×1 blob and a 1×1 ``Convolution`` computes the same
``W·x + b`` in fp32 from byte-identical weights (fp32 or fp16 storage, ``9=``/``10=`` activation kept).

How (each rule is exact on its own; the engine runs them to a fixpoint, so chains convert link by link):

1. ``raise``: global Pooling whose output reaches a convertible InnerProduct becomes adaptive 1×1
   Pooling followed by a ``Flatten`` (Flatten of c×1×1 is exactly the old 1-D blob).
2. ``convert``: ``Flatten(a) -> InnerProduct`` with ``a`` c×1×1 becomes ``Convolution 1×1 -> Flatten``.
3. ``sink``: a Flatten of a c×1×1 blob moves below an element-wise layer (ReLU, HardSigmoid, ...), but not
   below keep-fp32's ARM cast boundary (an unmasked Dropout in front of a masked layer): the Flatten would
   come between it and the layer it protects, keep-fp32 would add another, and so on forever.
4. ``broadcast``: a Flatten feeding a BinaryOp whose other operand is c×H×W with the same c is dropped:
   ncnn broadcasts a 1-D [c] operand per channel when its length equals the other's channels (checked
   in the ncnn wheel, including W == c), exactly as it broadcasts c×1×1.
5. ``merge``/``direct``: Flatten of Flatten, and an InnerProduct that cannot be converted (int8) reads the
   c×1×1 blob directly (InnerProduct flattens its input anyway).
6. ``convert-vector-conv`` (onnx2ncnn's form): a 1×1 ``Convolution`` reading the 1-D blob, which ncnn runs
   through its deprecated "1d input compatibility path" (it reshapes to c×1×1, convolves, flattens back;
   the generic and Vulkan builds call InnerProduct instead), reads the c×1×1 blob itself; a Flatten follows.
7. ``convert-direct``: an InnerProduct reading a c×1×1 blob itself (e.g. after a mean ``Reduction`` with
   keepdims) becomes ``Convolution 1×1 -> Flatten`` like ``convert``.

Any consumer whose result depends on the blob being 1-D (Softmax, Reshape, Concat, Permute axes, a graph
output, ...) keeps reading the Flatten, so results never change: the chain stops there, shape restored.
"""

from __future__ import annotations

from ncnnpass.ir import Layer

from ..engine import RulePass, is_elementwise
from ..engine.builtins import ELEMENTWISE_TYPES

_ELEMENTWISE = "|".join(sorted(ELEMENTWISE_TYPES - {"Noop"}))

TEXT = f"""
rule raise
doc "global Pooling that feeds an InnerProduct -> adaptive 1x1 Pooling + Flatten"
match:
  Pooling p 1 1 x v  4=1 ...
where:
  rank(x) == 3 and reaches_innerproduct(v)
replace:
  Pooling p 1 1 x v3  @p ~4 ~18 7=1 8=1
  Flatten flatten 1 1 v3 v

rule convert
doc "Flatten(c x 1 x 1) -> InnerProduct  =>  Convolution 1x1 -> Flatten (same weight bytes)"
match:
  Flatten f 1 1 a b!
  InnerProduct fc 1 1 b y  0=%n 1=%bias 2=%wsize 8=0 9=%act 10=%actp
where:
  %n > 0 and %wsize % %n == 0 and c11(a)
replace:
  Flatten f 1 1 a b
  Convolution fc 1 1 a y3  0=%n 1=1 5=%bias 6=%wsize 9={{%act if %act else none}} 10={{%actp if len(%actp) else none}} 31={{fc.featmask if fc.featmask else none}}
  Flatten flatten 1 1 y3 y

rule convert-vector-conv
doc "Flatten(c x 1 x 1) -> 1x1 Convolution on the 1-D blob  =>  Convolution on c x 1 x 1 -> Flatten"
match:
  Flatten f 1 1 a b!
  Convolution fc 1 1 b y ...
where:
  c11(a) and vector_conv(fc)
replace:
  Flatten f 1 1 a b
  @fc fc 1 1 a y3 @fc
  Flatten flatten 1 1 y3 y

rule convert-direct
doc "InnerProduct reading c x 1 x 1  =>  Convolution 1x1 -> Flatten (same weight bytes)"
match:
  InnerProduct fc 1 1 a y  0=%n 1=%bias 2=%wsize 8=0 9=%act 10=%actp
where:
  %n > 0 and %wsize % %n == 0 and c11(a)
replace:
  Convolution fc 1 1 a y3  0=%n 1=1 5=%bias 6=%wsize 9={{%act if %act else none}} 10={{%actp if len(%actp) else none}} 31={{fc.featmask if fc.featmask else none}}
  Flatten flatten 1 1 y3 y

rule sink
doc "Flatten(c x 1 x 1) -> element-wise layer  =>  element-wise layer -> Flatten"
match:
  Flatten f 1 1 a b
  {_ELEMENTWISE} u 1 1 b y ...
where:
  c11(a) and not (u.type == "Dropout" and not fp32_storage(u) and feeds_fp32_storage(y))
replace:
  @u u 1 1 a y3 @u
  Flatten f 1 1 y3 y

rule sink-scalar-binaryop
doc "Flatten(c x 1 x 1) -> BinaryOp with a scalar  =>  BinaryOp -> Flatten"
match:
  Flatten f 1 1 a b
  BinaryOp u 1 1 b y  1=1 ...
where:
  c11(a)
replace:
  @u u 1 1 a y3 @u
  Flatten f 1 1 y3 y

rule broadcast
doc "BinaryOp(Flatten(c x 1 x 1), c x H x W) => BinaryOp(c x 1 x 1, c x H x W)"
match:
  Flatten f 1 1 a b
  BinaryOp op 2 1 b o y  1=0 ...
where:
  c11(a) and rank(o) == 3 and channels(o) == channels(a)
replace:
  @op op 2 1 a o y @op

rule broadcast-second
doc "BinaryOp(c x H x W, Flatten(c x 1 x 1)) => BinaryOp(c x H x W, c x 1 x 1)"
match:
  Flatten f 1 1 a b
  BinaryOp op 2 1 o b y  1=0 ...
where:
  c11(a) and rank(o) == 3 and channels(o) == channels(a)
replace:
  @op op 2 1 o a y @op

rule merge
doc "Flatten(Flatten(c x 1 x 1)) => Flatten"
match:
  Flatten f 1 1 a b
  Flatten g 1 1 b y
where:
  c11(a)
replace:
  Flatten g 1 1 a y

rule direct
doc "an InnerProduct that stays (e.g. int8) reads the c x 1 x 1 blob itself"
match:
  Flatten f 1 1 a b
  InnerProduct fc 1 1 b y ...
where:
  c11(a)
replace:
  @fc fc 1 1 a y @fc
"""


def vector_conv(m, layer: Layer) -> bool:
    """A Convolution that, reading a 1-D blob, computes ``W·x + b`` (ncnn's 1-D compatibility path), and
    reading the same values as c×1×1 computes them again as c×1×1: 1×1 kernel, no padding, fp32 weights
    (not int8), static weights. Stride and dilation do not matter on a 1×1 input."""
    if layer.type != "Convolution" or len(layer.inputs) != 1:
        return False
    keys = ("kernel_w", "kernel_h", "pad_left", "pad_right", "pad_top", "pad_bottom", "int8_scale_term",
            "dynamic_weight", "num_output")
    try:
        kw, kh, pl, pr, pt, pb, int8, dyn, n = (int(layer.get(k)) for k in keys)
    except (TypeError, ValueError):  # a malformed value: not ours to convert
        return False
    return (kw, kh) == (1, 1) and (pl, pr, pt, pb) == (0, 0, 0, 0) and not int8 and not dyn and n > 0


def convertible(layer: Layer) -> bool:
    """An InnerProduct this pass can turn into a 1×1 Convolution, or a Convolution reading a 1-D blob."""
    if layer.type == "Convolution":
        return vector_conv(None, layer)
    if layer.type != "InnerProduct" or len(layer.inputs) != 1:
        return False
    n = int(layer.get("num_output"))
    return not int(layer.get("int8_scale_term")) and n > 0 and int(layer.get("weight_data_size")) % n == 0


def reaches(m, blob, hit, through, depth: int = 8) -> bool:
    """Does ``blob`` reach a consumer ``hit(c)`` accepts, passing only layers ``through(c)`` accepts?"""
    g = m.ctx.graph
    stack = [(blob.name if hasattr(blob, "name") else blob, 0)]
    seen = set()
    while stack:
        name, d = stack.pop()
        b = g.blobs.get(name)
        if b is None or name in seen or d > depth:
            continue
        seen.add(name)
        for c in b.consumers:
            if hit(c):
                return True
            if through(c):
                stack.extend((o, d + 1) for o in c.outputs)
    return False


def reaches_innerproduct(m, blob, depth: int = 8) -> bool:
    """Does ``blob`` reach a convertible InnerProduct (or a 1×1 Convolution reading 1-D) through
    Flatten/element-wise layers only?"""
    return reaches(m, blob, convertible, lambda c: c.type == "Flatten" or is_elementwise(c), depth)


PASS = RulePass(
    "gap-fc-to-conv",
    "global Pooling + InnerProduct chain -> adaptive 1x1 Pooling + 1x1 Convolutions (fp32 math, same weights)",
    TEXT, {"reaches_innerproduct": reaches_innerproduct, "vector_conv": vector_conv}, file=__file__)
