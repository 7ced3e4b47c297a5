"""Motifs: small subgraphs shaped like what each rule of passes/ncnn/*.py matches, and near misses of it.

Each motif takes a 3-D blob ``x`` (c, h, w) and returns the 3-D blob the graph continues from (or
``None`` when it ended in a head of its own). Every motif draws its variant from the builder's rng:
the shape a rule fires on (SE blocks in their pnnx, onnx2ncnn and mean-Reduction forms, conv/InnerProduct
chains with BatchNorm, Scale, scalar and per-channel BinaryOps and activations, adaptive pooling, identity
layers, scaled adds) or a near miss the rule must leave alone (wrong params, a producer with a fused
activation already, an extra consumer of an internal blob, sizes that do not divide, non-affine ops,
a BatchNorm over the rows of a 2-D InnerProduct result, ...).
"""

from __future__ import annotations

import numpy as np

from . import ops
from .builder import Builder, T, f32

CONV_TYPES = ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise")
AFFINE_OPS = (0, 1, 2, 3, 7)


def tap(b: Builder, t: T, p: float = 0.12) -> None:
    """With probability ``p`` give ``t`` an extra reader whose result is a graph output (the near miss of
    every rule that needs an internal blob to have no other consumer)."""
    if b.rng.random() < p:
        ops.elementwise(b, t, ("AbsVal", "TanH", "Sigmoid", "ReLU"))


def scalar_k(b: Builder, op: int) -> float:
    r = b.rng
    if op in (2, 3, 8):
        return f32(r.choice((0.5, 2.0, -1.5, 0.25, 1.0)))
    return f32(r.choice((0.5, -1.0, 3.0, 0.125, 0.0)))


# -- SE blocks: gap-fc-to-conv, mean-reduction-to-pooling, eliminate-*-after-global-pooling ----------------
def _pool_se(b: Builder, x: T) -> T:
    r = b.rng
    c = x.shape[0]
    kind = r.choice(("global", "global", "adaptive", "mean", "mean-keep", "mean-neg", "reduce-miss"))
    if kind == "global":
        v = ops.pooling(b, x, "global", ptype=r.choice((1, 1, 0)))
    elif kind == "adaptive":
        v = ops.pooling(b, x, "adaptive", ptype=1, out_hw=(1, 1))
        if r.random() < 0.6:
            v = ops.flatten(b, v)
            if r.random() < 0.2:
                v = ops.flatten(b, v)  # Flatten of Flatten (gap-fc-to-conv merge)
    elif kind in ("mean", "mean-keep", "mean-neg"):
        axes = (-2, -1) if kind == "mean-neg" else r.choice(((1, 2), (2, 1)))
        v = ops.reduction(b, x, 3, axes, keepdims=int(kind == "mean-keep" or r.random() < 0.3))
    else:  # a Reduction mean-reduction-to-pooling must not take: sum, another coeff, other axes
        variant = r.choice(("sum", "coeff", "max", "axis-w", "all"))
        if variant == "all":  # 1=1: reduce everything
            keep = r.choice((0, 1))
            v = b.one("Reduction", x, (1, 1, 1) if keep else (1,), {0: 3, 1: 1, 4: keep, 5: 1})
            return ops.flatten(b, v) if keep else v
        if variant == "axis-w":
            v = ops.reduction(b, x, 3, (2,), keepdims=0)
            return ops.reshape(b, v, (c * x.shape[1],))
        op = {"sum": 0, "coeff": 3, "max": 4}[variant]
        v = ops.reduction(b, x, op, (1, 2), keepdims=r.choice((0, 1)), coeff=2.0 if variant == "coeff" else 1.0)
    tap(b, v)
    if v.rank == 1 and r.random() < 0.25:  # the 1-D result written again as 1-D
        if r.random() < 0.5:
            v = ops.flatten(b, v)
        else:
            v = ops.reshape(b, v, (c,), {0: r.choice((-1, c))})
    return v


def _vector_conv(b: Builder, v: T, n: int, act: int | None = None) -> T:
    """onnx2ncnn's 1x1 Convolution reading a 1-D blob (ncnn computes it as an InnerProduct)."""
    c = v.shape[0]
    p: dict[int, object] = {0: n, 1: 1, 5: 1, 6: n * c}
    pos, nonneg = ops.set_act(b, p, "Convolution", act)
    return b.one("Convolution", v, (n,), p, [b.tagged(n * c, c), b.raw(b.uniform(-0.2, 0.2, n))], pos, nonneg)


def _fc(b: Builder, v: T, n: int, last: bool) -> T:
    r = b.rng
    form = r.choice(("ip", "ip", "ip", "conv", "int8")) if v.rank == 1 else r.choice(("ip", "ip", "conv3"))
    act = None if not last else r.choice((0, 0, 4))
    if form == "conv" and v.rank == 1:
        return _vector_conv(b, v, n, act)
    if form == "conv3":  # c x 1 x 1: a 1x1 Convolution already (left alone)
        return ops.convolution(b, v, n, 1, 1, act=act, pad=0)
    return ops.innerproduct(b, v, n, act=act, int8=form == "int8")


def se_block(b: Builder, x: T) -> T:
    r = b.rng
    c = x.shape[0]
    v = _pool_se(b, x)
    if v.rank == 3 and v.shape[1:] != (1, 1):
        return ops.binary(b, x, v, 2)
    hidden = max(1, c // r.choice((1, 2, 4)))
    h = _fc(b, v, hidden, last=False)
    tap(b, h, 0.08)
    if r.random() < 0.6:
        h = ops.elementwise(b, h, ("ReLU", "HardSwish", "Sigmoid", "Clip", "Swish"))
    s = _fc(b, h, c, last=True)
    gate = r.random()
    if gate < 0.5:
        s = ops.elementwise(b, s, ("HardSigmoid", "Sigmoid"))
    elif gate < 0.7:  # PP-OCR's hard sigmoid written as ops: (x + 3) clipped to [0, 6], / 6
        s = ops.binary_scalar(b, s, 0, 3.0)
        s = b.one("Clip", s, s.shape, {0: 0.0, 1: 6.0}, nonneg=True)
        s = ops.binary_scalar(b, s, 3, 6.0)
    elif gate < 0.8:
        s = ops.binary_scalar(b, s, 2, 0.5)
    tap(b, s, 0.08)
    if s.rank == 1 and r.random() < 0.3:  # the Reshape to c x 1 x 1 converters write before the multiply
        s = ops.reshape(b, s, (c, 1, 1))
    if s.rank == 1 and s.shape[0] != c:
        return x
    return ops.binary(b, x, s, 2) if r.random() < 0.7 else ops.binary(b, s, x, 2)


# -- conv chains: fuse-activation, fold-scalar-binaryop, fuse-batchnorm(-scale), fuse-scale, fuse-channel-binaryop
def _post_ops(b: Builder, t: T, producer_type: str, n: int, act_fused: bool, per_row: bool = False) -> T:
    """1-3 layers after a conv-like producer with ``n`` outputs (per-channel constants sized ``n``)."""
    r = b.rng
    for _ in range(r.choice((1, 1, 2, 3))):
        choice = r.random()
        if choice < 0.18:
            t = ops.batchnorm(b, t, t.shape[0] if per_row else n)
            if r.random() < 0.3:
                t = ops.scale(b, t, t.shape[0] if per_row else n)
        elif choice < 0.3:
            t = ops.scale(b, t, t.shape[0] if per_row else n)
        elif choice < 0.5:
            op = r.choice((*AFFINE_OPS, *AFFINE_OPS, 4, 5))
            t = ops.binary_scalar(b, t, op, scalar_k(b, op) if op != 3 else r.choice((0.5, 2.0, -4.0)))
        elif choice < 0.64 and t.rank == 3:
            t = channel_constant(b, t, n)
        elif choice < 0.85:
            t = activation(b, t, producer_type, act_fused)
        elif choice < 0.92:
            t = b.one("Dropout", t, t.shape, r.choice(({}, {0: 0.5}, {0: 2.0}, {0: 1.0})))
        else:
            tap(b, t, 1.0)
        act_fused = True  # only the first post op follows the producer directly
    return t


def channel_constant(b: Builder, t: T, n: int) -> T:
    """BinaryOp mul/add with a MemoryData of ``n`` values, [n] or 1x1xn, either operand order."""
    r = b.rng
    op = r.choice((2, 0, 2, 0, 1))
    form = r.choice(("vec", "c11", "c11"))
    values = b.signed(0.5, 1.5, n) if op == 2 else b.uniform(-0.5, 0.5, n)
    md = ops.memorydata(b, {0: n} if form == "vec" else {0: 1, 1: 1, 2: n}, values)
    if r.random() < 0.1:
        tap(b, md, 1.0)  # the constant has another reader: it must stay
    return ops.binary(b, t, md, op) if r.random() < 0.6 else ops.binary(b, md, t, op)


def activation(b: Builder, t: T, producer_type: str, act_fused: bool) -> T:
    r = b.rng
    kind = r.choice(("ReLU", "ReLU", "leaky", "Clip", "Sigmoid", "Mish", "HardSwish"))
    if kind == "ReLU":
        return b.one("ReLU", t, t.shape, {}, nonneg=True)
    if kind == "leaky":
        return b.one("ReLU", t, t.shape, {0: f32(r.choice((0.1, 0.01)))})
    if kind == "Clip":
        lo = r.choice((0.0, -1.0))
        return b.one("Clip", t, t.shape, {0: f32(lo), 1: f32(r.choice((1.0, 6.0)))}, nonneg=lo >= 0)
    if kind == "HardSwish":
        return b.one("HardSwish", t, t.shape, {0: f32(r.choice((1 / 6, 0.2))), 1: 0.5})
    return b.one(kind, t, t.shape, {}, pos=kind == "Sigmoid", nonneg=kind == "Sigmoid")


def conv_chain(b: Builder, x: T) -> T:
    r = b.rng
    type_ = r.choice(("Convolution", "Convolution", "ConvolutionDepthWise", "Deconvolution",
                      "DeconvolutionDepthWise"))
    if r.random() < 0.3 and type_ in ("Convolution", "ConvolutionDepthWise"):  # forward fold in front
        op = r.choice(AFFINE_OPS)
        x = ops.binary_scalar(b, x, op, scalar_k(b, op) if op not in (3,) else 2.0)
        tap(b, x, 0.08)
    act = r.choice((0, 0, 0, 0, 1, 2, 4))
    if type_.startswith("Deconvolution"):
        t = ops.deconvolution(b, x, depthwise=type_.endswith("DepthWise"), act=act)
    else:
        t = ops.convolution(b, x, type_=type_, act=act)
    tap(b, t)
    return _post_ops(b, t, type_, t.shape[0], act_fused=bool(act))


def ip_chain(b: Builder, x: T) -> T | None:
    """InnerProduct after a 3-D, 1-D or 2-D blob, and what follows it."""
    r = b.rng
    c, h, w = x.shape
    form = r.choice(("3d", "flat", "2d", "2d"))
    if form == "flat":
        x = ops.flatten(b, x)
    elif form == "2d":
        x = ops.reshape(b, x, (c * h, w)) if r.random() < 0.5 else ops.reshape(b, x, (c, h * w))
    rows = x.shape[0] if x.rank == 2 else 0
    n = rows if rows and r.random() < 0.5 else r.choice((2, 3, 4, 6))  # rows == num_output: per-row or not?
    act = r.choice((0, 0, 0, 1, 5, 6))
    if r.random() < 0.3:
        op = r.choice(AFFINE_OPS)
        x = ops.binary_scalar(b, x, op, scalar_k(b, op) if op != 3 else 2.0)
    t = ops.innerproduct(b, x, n, act=act)
    tap(b, t)
    if r.random() < 0.25 and t.rank == 1:
        t = b.one("Dropout", t, t.shape, {0: f32(r.choice((0.5, 2.0, 1.0)))})
    if t.rank == 1 and r.random() < 0.2:
        md = ops.memorydata(b, {0: n}, b.signed(0.5, 1.5, n))
        t = ops.binary(b, t, md, r.choice((0, 2))) if r.random() < 0.5 else ops.binary(b, md, t, r.choice((0, 2)))
    else:
        t = _post_ops(b, t, "InnerProduct", n, act_fused=bool(act), per_row=t.rank == 2)
    if r.random() < 0.4:
        t = ops.flatten(b, t)
    ops.head(b, t)
    return None


def conv1d_chain(b: Builder, x: T) -> T | None:
    c, h, w = x.shape
    t = ops.reshape(b, x, (c, h * w))
    t = ops.convolution1d(b, t, act=b.rng.choice((0, 0, 0, 1)))
    t = _post_ops(b, t, "Convolution1D", t.shape[0], act_fused=False, per_row=True)
    ops.head(b, t)
    return None


# -- pooling: adaptive-avgpool-lowering, eliminate-pooling1x1 -------------------------------------------------
def pool_chain(b: Builder, x: T) -> T | None:
    r = b.rng
    c, h, w = x.shape
    kind = r.choice(("adaptive", "adaptive", "identity", "global-flat", "global", "plain"))
    if kind == "adaptive":
        def out(n: int) -> int:
            divs = [d for d in range(1, n + 1) if n % d == 0]
            return r.choice((r.choice(divs), r.choice(divs), max(1, n - 1), -233))
        return ops.pooling(b, x, "adaptive", out_hw=(out(h), out(w)))
    if kind == "identity":
        if r.random() < 0.7:
            return ops.pooling(b, x, "plain", kernel=1, stride=1, pad=0)
        return ops.pooling(b, x, "plain", kernel=1, stride=r.choice((1, 2)), pad=0)
    if kind == "global-flat":
        v = ops.pooling(b, x, "adaptive", out_hw=(1, 1))
        tap(b, v, 0.1)
        f = ops.flatten(b, v)
        if r.random() < 0.3:
            f = ops.innerproduct(b, f, r.choice((2, 4)))
        ops.head(b, f)
        return None
    if kind == "global":
        v = ops.pooling(b, x, "global")
        if r.random() < 0.5:
            v = ops.flatten(b, v)
        ops.head(b, v)
        return None
    return ops.pooling(b, x, "plain")


# -- identities and redundancies: eliminate-*, replace-prelu-with-leaky-relu ---------------------------------
def identity_chain(b: Builder, x: T) -> T:
    r = b.rng
    c = x.shape[0]
    for _ in range(r.choice((1, 2, 3))):
        kind = r.choice(("noop", "dropout", "boundary", "prelu", "relu-after", "relu-miss"))
        if kind == "noop":
            x = b.one("Noop", x, x.shape, {}, pos=x.pos, nonneg=x.nonneg)
        elif kind == "dropout":
            x = b.one("Dropout", x, x.shape, r.choice(({}, {0: 1.0})), pos=x.pos, nonneg=x.nonneg)
        elif kind == "boundary":  # keep-fp32's ARM cast boundary: an unmasked Dropout before a masked layer
            x = b.one("Dropout", x, x.shape, {}, pos=x.pos, nonneg=x.nonneg)
            y = ops.convolution(b, x, c, 1, 1, act=0, pad=0)
            b.layers[-1].params[31] = r.choice((2, 7))
            x = y
        elif kind == "prelu":
            x = ops.prelu(b, x, r.choice((1, 1, c)))
        elif kind == "relu-after":
            src = r.random()
            if src < 0.3:
                x = ops.convolution(b, x, act=r.choice((1, 4, 3)))
            else:
                x = ops.elementwise(b, x, ("Sigmoid", "HardSigmoid", "ReLU", "AbsVal", "Softplus", "Exp", "Clip"))
            tap(b, x, 0.1)
            x = b.one("ReLU", x, x.shape, {}, nonneg=True)
        else:  # ReLU after something that can be negative: must stay
            x = ops.elementwise(b, x, ("TanH", "Clip", "ELU", "HardSwish"))
            x = b.one("ReLU", x, x.shape, {} if r.random() < 0.7 else {0: 0.1}, nonneg=True)
    return x


def softmax_relu(b: Builder, x: T) -> T | None:
    """Softmax (non-negative) followed by a ReLU, on the channel axis."""
    s = b.one("Softmax", x, x.shape, {0: 0, 1: 1}, nonneg=True)
    ops.head(b, b.one("ReLU", s, s.shape, {}, nonneg=True))
    return None


# -- fuse-binaryop-eltwise ------------------------------------------------------------------------------------
def scaled_add(b: Builder, x: T) -> T:
    r = b.rng
    c, h, w = x.shape
    other = r.choice(("conv", "ew", "broadcast"))
    if other == "conv":
        y = ops.convolution(b, x, c, r.choice((1, 3)), 1, act=0, pad="same")
    elif other == "ew":
        y = ops.elementwise(b, x)
    else:  # c x 1 x 1: BinaryOp broadcasts, Eltwise cannot
        y = ops.pooling(b, x, "adaptive", out_hw=(1, 1))
    form = r.choice(("both", "first", "second", "none"))
    a2 = ops.binary_scalar(b, x, 2, scalar_k(b, 2)) if form in ("both", "first") else x
    b2 = ops.binary_scalar(b, y, 2, scalar_k(b, 2)) if form in ("both", "second") else y
    tap(b, a2, 0.08)
    op = 0 if r.random() < 0.85 else 1
    return ops.binary(b, a2, b2, op) if r.random() < 0.8 else ops.binary(b, b2, a2, op)


# -- fuse-memorydata-binaryop -----------------------------------------------------------------------------------
SMOOTH_OPS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14)
JUMPY_OPS = (12, 13, 15, 16, 17, 18)  # fmod, floor_divide, remainder: only on the net input (bit-exact)


def memorydata_binop(b: Builder, x: T, graph_input: T) -> T:
    r = b.rng
    op = r.choice((*SMOOTH_OPS, *SMOOTH_OPS, *JUMPY_OPS))
    src = x
    if op in JUMPY_OPS:
        src = graph_input
    elif op in (3, 6, 8, 9) or (op == 14):
        src = ops.elementwise(b, x, ("Sigmoid",))  # positive: pow bases and divisors stay in domain
    value = f32(r.choice((0.5, 1.5, 2.0, 0.75)))
    shape_params = {0: 1} if r.random() < 0.8 else {0: 1, 1: 1, 2: 1}
    md = ops.memorydata(b, shape_params, np.array([value], np.float32))
    first = r.random() < 0.5
    y = ops.binary(b, md, src, op) if first else ops.binary(b, src, md, op)
    if op in JUMPY_OPS or op in (6, 9, 8, 3, 16, 15):
        y = ops.elementwise(b, y, ("TanH",))  # keep magnitudes bounded downstream
    if src is graph_input and src.shape != x.shape:
        ops.head(b, y)
        return x
    return y


# -- eliminate-reshape-before-binaryop ----------------------------------------------------------------------------
def reshape_binop(b: Builder, x: T) -> T:
    r = b.rng
    c = x.shape[0]
    v = ops.pooling(b, x, "global")
    if r.random() < 0.4:
        v = ops.innerproduct(b, v, c, act=4)
    params = {0: 1, 1: 1, 2: c}
    if r.random() < 0.3:
        params[11] = -233
    t = ops.reshape(b, v, (c, 1, 1), params)
    tap(b, t, 0.1)
    op = r.choice((0, 1, 2, 2, 4))
    return ops.binary(b, x, t, op) if r.random() < 0.6 else ops.binary(b, t, x, op)


def concat_branch(b: Builder, x: T) -> T:
    """Two branches concatenated on channels (multi-input layers next to the rules)."""
    y = conv_chain(b, x)
    if y.shape[1:] != x.shape[1:]:
        return y
    return b.one("Concat", [x, y], (x.shape[0] + y.shape[0], *x.shape[1:]), {0: 0}, pos=x.pos and y.pos,
                 nonneg=x.nonneg and y.nonneg)


def twice_and_slice(b: Builder, x: T) -> T:
    """One blob read twice by one layer (BinaryOp(x, x), Concat(x, x), a scaled x added to itself), and a
    multi-output Slice whose parts go through their own chains (rewrites next to several-blob layers)."""
    r = b.rng
    c, h, w = x.shape
    kind = r.choice(("binary", "scaled-self", "concat", "slice", "slice"))
    if kind == "binary":
        return ops.binary(b, x, x, r.choice((0, 2, 4, 5)))
    if kind == "scaled-self":
        x2 = ops.binary_scalar(b, x, 2, scalar_k(b, 2))
        return ops.binary(b, x2, x2, 0)
    if kind == "concat" or c < 2:
        return b.one("Concat", [x, x], (2 * c, h, w), {0: 0}, pos=x.pos, nonneg=x.nonneg)
    first = r.randint(1, c - 1)
    parts = [b.blob((first, h, w), x.pos, x.nonneg), b.blob((c - first, h, w), x.pos, x.nonneg)]
    b.add("Slice", [x], parts, {0: [first, -233], 1: 0})
    left = conv_chain(b, parts[0]) if r.random() < 0.5 else identity_chain(b, parts[0])
    right = parts[1] if r.random() < 0.5 else identity_chain(b, parts[1])
    if left.shape[1:] != right.shape[1:]:
        ops.head(b, right)
        return left
    return b.one("Concat", [left, right], (left.shape[0] + right.shape[0], *left.shape[1:]), {0: 0},
                 pos=left.pos and right.pos, nonneg=left.nonneg and right.nonneg)
