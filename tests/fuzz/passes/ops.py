"""Layer emitters for the graph generator: each adds one ncnn layer with valid params, weights sized by
ncnn's read order, and the output shape ncnn computes (``src/layer/*.cpp``; tests/test_fuzz_passes.py
checks every generated blob's shape against ncnn's own shape inference)."""

from __future__ import annotations

import numpy as np

from .builder import Builder, T, W, f32

# activation_type codes accepted per producer type (ncnn fused_activation.h; see ir/layer_types.py)
ACTS_ALL = (1, 2, 3, 4)
ACTS_BY_TYPE = {"Convolution": (1, 2, 3, 4, 5, 6), "ConvolutionDepthWise": (1, 2, 3, 4, 5, 6),
                "InnerProduct": (1, 2, 3, 4, 5, 6), "Convolution1D": (1, 2, 3, 4, 5),
                "Deconvolution": ACTS_ALL, "DeconvolutionDepthWise": ACTS_ALL}


def act_params(b: Builder, code: int) -> list[float] | None:
    r = b.rng
    if code == 2:
        return [f32(r.choice((0.1, 0.2, -0.3, 1.5)))]
    if code == 3:
        lo = r.choice((0.0, -1.0, -0.5, 0.25))
        return [f32(lo), f32(lo + r.choice((0.5, 1.0, 6.0)))]
    if code == 6:
        return [f32(r.choice((1 / 6, 0.2))), 0.5]
    return None


def act_sign(code: int, params: list[float] | None) -> tuple[bool, bool]:
    """(pos, nonneg) of a fused activation's output."""
    if code == 1:
        return False, True
    if code == 4:
        return True, True
    if code == 3 and params and params[0] >= 0:
        return params[0] > 0, True
    return False, False


def set_act(b: Builder, p: dict[int, object], type_: str, code: int | None = None) -> tuple[bool, bool]:
    """Maybe give ``p`` a fused activation (9=/10=); returns the output sign."""
    if code is None:
        code = b.rng.choice((0, 0, 0, *ACTS_BY_TYPE[type_]))
    if not code:
        if b.rng.random() < 0.2:
            p[9] = 0  # explicit default
        return False, False
    params = act_params(b, code)
    p[9] = code
    if params is not None:
        p[10] = params
    return act_sign(code, params)


def conv_size(n: int, k: int, s: int, d: int, p0: int, p1: int) -> int:
    return (n + p0 + p1 - (d * (k - 1) + 1)) // s + 1


def same_size(n: int, k: int, s: int, d: int) -> int:
    extent = d * (k - 1) + 1
    pad = extent + (n - 1) // s * s - n
    return (n - 1) // s + 1 if pad > 0 else (n - extent) // s + 1


def convolution(b: Builder, x: T, n: int | None = None, k: int | None = None, stride: int | None = None,
                group: int = 1, type_: str = "Convolution", act: int | None = None, bias: bool | None = None,
                pad: int | str | None = None, pad_value: float | None = None) -> T:
    """Convolution / ConvolutionDepthWise on a 3-D blob."""
    r = b.rng
    c, h, w = x.shape
    n = n or r.choice((c, 2, 3, 4, 6, 8))
    if type_ == "ConvolutionDepthWise":
        if group <= 1:  # depthwise, or grouped (a divisor of the channels)
            group = c if r.random() < 0.7 else r.choice([g for g in range(1, c + 1) if c % g == 0])
        if n % group or c % group:
            n = c
    k = k or r.choice((1, 1, 3, 3, 2))
    stride = stride or r.choice((1, 1, 1, 2))
    dil = r.choice((1, 1, 1, 2)) if k > 1 else 1
    if pad is None:
        pad = r.choice((0, 0, 1, "same")) if k > 1 else r.choice((0, 0, 0, 1))
    p: dict[int, object] = {0: n, 1: k}
    if r.random() < 0.3:
        p[11] = k
    if dil > 1:
        p[2] = dil
    if stride > 1:
        p[3] = stride
    if pad == "same":
        p.update({4: -233, 15: -233, 14: -233, 16: -233})
        ho, wo = same_size(h, k, stride, dil), same_size(w, k, stride, dil)
    else:
        if pad:
            p[4] = pad
        ho, wo = conv_size(h, k, stride, dil, pad, pad), conv_size(w, k, stride, dil, pad, pad)
    if ho < 1 or wo < 1:  # too small for this kernel: a plain 1x1
        return convolution(b, x, n, 1, 1, group, type_, act, bias, 0, pad_value)
    if (pad == "same" or pad) and (pad_value is not None or r.random() < 0.25):
        p[18] = f32(pad_value if pad_value is not None else r.choice((0.5, -1.0, 2.0)))
    bias = r.random() < 0.7 if bias is None else bias
    if bias:
        p[5] = 1
    cin = c // group
    p[6] = n * cin * k * k
    if type_ == "ConvolutionDepthWise":
        p[7] = group
    pos, nonneg = set_act(b, p, type_, act)
    ws = [b.tagged(n * cin * k * k, cin * k * k)]
    if bias:
        ws.append(b.raw(b.uniform(-0.2, 0.2, n)))
    if type_ == "Convolution" and r.random() < 0.04:  # int8: ncnn quantizes the fp32 weights itself
        p[8] = 1
        ws[0] = W(ws[0].values, True, "fp32")
        amax = np.abs(ws[0].values.reshape(n, -1)).max(axis=1)
        ws += [b.raw(127.0 / np.maximum(amax, 1e-3)), b.raw([10.0])]
    return b.one(type_, x, (n, ho, wo), p, ws, pos, nonneg)


def deconvolution(b: Builder, x: T, n: int | None = None, depthwise: bool = False, act: int | None = None) -> T:
    r = b.rng
    c, h, w = x.shape
    n = n or r.choice((c, 2, 4))
    group = 1
    if depthwise:  # depthwise, or grouped (a divisor of the channels)
        group = c if r.random() < 0.7 else r.choice([g for g in range(1, c + 1) if c % g == 0])
        if n % group:
            n = c
    k = r.choice((1, 2, 3))
    stride = r.choice((1, 2))
    pad = r.choice((0, 1)) if k > 1 else 0
    outpad = r.choice((0, 1)) if stride > 1 else 0
    type_ = "DeconvolutionDepthWise" if depthwise else "Deconvolution"
    p: dict[int, object] = {0: n, 1: k}
    if stride > 1:
        p[3] = stride
    if pad:
        p[4] = pad
    if outpad:
        p[18] = outpad
    bias = r.random() < 0.7
    if bias:
        p[5] = 1
    cin = c // group
    p[6] = n * cin * k * k
    if depthwise:
        p[7] = group
    ho = (h - 1) * stride + k - 2 * pad + outpad
    wo = (w - 1) * stride + k - 2 * pad + outpad
    if ho < 1 or wo < 1:
        return deconvolution(b, x, n, depthwise, act)
    pos, nonneg = set_act(b, p, type_, act)
    ws = [b.tagged(n * cin * k * k, cin * k * k)]
    if bias:
        ws.append(b.raw(b.uniform(-0.2, 0.2, n)))
    return b.one(type_, x, (n, ho, wo), p, ws, pos, nonneg)


def convolution1d(b: Builder, x: T, n: int | None = None, act: int | None = None) -> T:
    """Convolution1D on a 2-D blob ``(channels, length)``."""
    r = b.rng
    c, length = x.shape
    n = n or r.choice((c, 2, 3, 5))
    k = r.choice((1, 3)) if length >= 3 else 1
    pad = r.choice((0, 1)) if k > 1 else 0
    p: dict[int, object] = {0: n, 1: k}
    if pad:
        p[4] = pad
        if r.random() < 0.3:
            p[18] = f32(r.choice((1.0, -0.5)))
    bias = r.random() < 0.7
    if bias:
        p[5] = 1
    p[6] = n * c * k
    pos, nonneg = set_act(b, p, "Convolution1D", act)
    ws = [b.tagged(n * c * k, c * k)]
    if bias:
        ws.append(b.raw(b.uniform(-0.2, 0.2, n)))
    return b.one("Convolution1D", x, (n, length + 2 * pad - k + 1), p, ws, pos, nonneg)


def innerproduct(b: Builder, x: T, n: int | None = None, act: int | None = None, bias: bool | None = None,
                 int8: bool = False) -> T:
    """InnerProduct: flattens its input, except a 2-D one which it treats as a batch of rows."""
    r = b.rng
    n = n or r.choice((2, 3, 4, 6, 8))
    fan_in = x.shape[-1] if x.rank == 2 else int(np.prod(x.shape))
    out = (x.shape[0], n) if x.rank == 2 else (n,)
    bias = r.random() < 0.7 if bias is None else bias
    p: dict[int, object] = {0: n, 1: int(bias), 2: n * fan_in}
    pos, nonneg = set_act(b, p, "InnerProduct", act)
    ws = [b.tagged(n * fan_in, fan_in)]
    if bias:
        ws.append(b.raw(b.uniform(-0.2, 0.2, n)))
    if int8:
        p[8] = 1
        ws[0] = W(ws[0].values, True, "fp32")  # ncnn quantizes fp32 weights itself (use_int8_inference)
        amax = np.abs(ws[0].values.reshape(n, -1)).max(axis=1)
        ws += [b.raw(127.0 / np.maximum(amax, 1e-3)), b.raw([10.0])]
    return b.one("InnerProduct", x, out, p, ws, pos, nonneg)


def pooling(b: Builder, x: T, kind: str = "plain", ptype: int | None = None, out_hw: tuple[int, int] | None = None,
            kernel: int | None = None, stride: int | None = None, pad: int | None = None) -> T:
    """Pooling: ``kind`` = plain (kernel/stride/pad/pad mode), global (1-D out) or adaptive."""
    r = b.rng
    c, h, w = x.shape
    ptype = r.choice((0, 1)) if ptype is None else ptype
    p: dict[int, object] = {0: ptype}
    if kind == "global":
        p[4] = 1
        return b.one("Pooling", x, (c,), p, pos=x.pos, nonneg=x.nonneg)
    if kind == "adaptive":
        oh, ow = out_hw or (1, 1)
        p[7] = 1
        p[8] = ow
        if oh != ow or r.random() < 0.5:
            p[18] = oh
        sh = (c, h if oh == -233 else oh, w if ow == -233 else ow)
        return b.one("Pooling", x, sh, p, pos=x.pos, nonneg=x.nonneg)
    k = kernel or r.choice((1, 2, 3))
    s = stride or r.choice((1, 2))
    if h < k or w < k:
        k = 1
    mode = r.choice((0, 1, 1, 2, 3))
    if mode == 0 and k < s:  # full padding's tail would hold whole windows
        mode = 1
    # explicit pads only in valid mode (5=1) and smaller than the kernel: no window lies in padding alone
    # (an average over nothing is NaN, a max over nothing -FLT_MAX)
    pd = (r.choice((0, 0, 1)) if k > 1 and mode == 1 else 0) if pad is None else pad
    p.update({1: k, 2: s})
    if pd:
        p[3] = pd
    p[5] = mode
    if ptype == 1 and r.random() < 0.3:
        p[6] = 1
    if mode in (2, 3):
        ho, wo = same_size(h, k, s, 1), same_size(w, k, s, 1)
    else:
        def size(n: int) -> int:
            span = n + 2 * pd - k
            return (span + (s - 1 if mode == 0 else 0)) // s + 1
        ho, wo = size(h), size(w)
    return b.one("Pooling", x, (c, ho, wo), p, pos=x.pos, nonneg=x.nonneg)


def reduction(b: Builder, x: T, op: int = 3, axes: tuple[int, ...] = (1, 2), keepdims: int = 0,
              coeff: float = 1.0) -> T:
    """Reduction with ``5=1`` (axes count from the channel axis) over ``axes`` of a 3-D blob."""
    p: dict[int, object] = {0: op, 1: 0, 3: list(axes), 4: keepdims, 5: 1}
    if coeff != 1.0:
        p[2] = f32(coeff)
    kept = {a % 3 for a in axes}
    if keepdims:
        shape = tuple(1 if i in kept else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in kept) or (1,)
    return b.one("Reduction", x, shape, p, pos=x.pos and op in (3, 4, 5), nonneg=x.nonneg or op in (1, 2, 7, 8))


def binary_scalar(b: Builder, x: T, op: int, k: float) -> T:
    p = {0: op, 1: 1, 2: f32(k)}
    pos = x.pos and ((op in (0, 2, 3) and k > 0) or op in (4,) and k > 0)
    return b.one("BinaryOp", x, x.shape, p, pos=pos, nonneg=pos)


def binary(b: Builder, a: T, c: T, op: int) -> T:
    shape = a.shape if len(a.shape) >= len(c.shape) else c.shape
    if len(a.shape) == len(c.shape):
        shape = tuple(max(u, v) for u, v in zip(a.shape, c.shape, strict=True))
    pos = a.pos and c.pos and op in (0, 2, 3, 4, 5)
    return b.one("BinaryOp", [a, c], shape, {0: op}, pos=pos, nonneg=pos or (a.nonneg and c.nonneg and op in (0, 2)))


def memorydata(b: Builder, shape_params: dict[int, int], values: np.ndarray) -> T:
    """MemoryData of ``values``; sometimes with ``21=0`` (a tagged array, so fp16/bf16 storage)."""
    w, h, c = shape_params.get(0, 0), shape_params.get(1, 0), shape_params.get(2, 0)
    shape = (c, h, w) if c else ((h, w) if h else (w,))
    params: dict[int, object] = dict(shape_params)
    data = b.raw(values)
    if b.rng.random() < 0.15:
        params[21] = 0
        data = W(np.asarray(values, np.float32).reshape(-1), True, b.pick_storage())
    return b.one("MemoryData", [], shape, params, [data],
                 pos=bool((values > 0).all()), nonneg=bool((values >= 0).all()))


def batchnorm(b: Builder, x: T, ch: int) -> T:
    ws = [b.raw(b.signed(0.5, 1.5, ch)), b.raw(b.uniform(-0.2, 0.2, ch)), b.raw(b.uniform(0.5, 1.5, ch)),
          b.raw(b.uniform(-0.2, 0.2, ch))]
    p: dict[int, object] = {0: ch}
    if b.rng.random() < 0.5:
        p[1] = f32(b.rng.choice((1e-5, 1e-3, 0.0)))
    return b.one("BatchNorm", x, x.shape, p, ws)


def scale(b: Builder, x: T, ch: int, bias: bool | None = None) -> T:
    bias = b.rng.random() < 0.6 if bias is None else bias
    ws = [b.raw(b.signed(0.5, 1.5, ch))] + ([b.raw(b.uniform(-0.2, 0.2, ch))] if bias else [])
    return b.one("Scale", x, x.shape, {0: ch, 1: int(bias)}, ws)


def prelu(b: Builder, x: T, slopes: int) -> T:
    return b.one("PReLU", x, x.shape, {0: slopes}, [b.raw(b.uniform(-0.5, 0.5, slopes))])


def flatten(b: Builder, x: T) -> T:
    return b.one("Flatten", x, (int(np.prod(x.shape)),), {}, pos=x.pos, nonneg=x.nonneg)


def reshape(b: Builder, x: T, shape: tuple[int, ...], params: dict[int, object] | None = None) -> T:
    """Reshape to ``shape`` (numpy order); ``params`` overrides the written params (e.g. ``0=-1``)."""
    if params is None:
        params = dict(zip((2, 1, 0)[3 - len(shape):], shape, strict=True)) if len(shape) <= 3 else {}
    return b.one("Reshape", x, shape, params, pos=x.pos, nonneg=x.nonneg)


# element-wise layers on any input: (type, params factory, output sign (pos, nonneg) given the input's)
def _ew(b: Builder) -> list[tuple[str, dict[int, object], bool, bool]]:
    r = b.rng
    hs = f32(r.choice((1 / 6, 0.2)))
    return [
        ("ReLU", {}, False, True), ("ReLU", {0: f32(r.choice((0.1, -0.2)))}, False, False),
        ("Sigmoid", {}, True, True), ("HardSigmoid", {0: hs, 1: 0.5}, False, True),
        ("HardSwish", {0: hs, 1: 0.5}, False, False), ("TanH", {}, False, False), ("Swish", {}, False, False),
        ("Mish", {}, False, False), ("AbsVal", {}, False, True), ("Clip", {0: -0.5, 1: 1.0}, False, False),
        ("Clip", {0: 0.0, 1: 6.0}, False, True), ("ELU", {0: 0.5}, False, False), ("GELU", {}, False, False),
        ("Softplus", {}, True, True), ("BNLL", {}, True, True), ("Erf", {}, False, False),
        ("SELU", {}, False, False), ("CELU", {0: 0.7}, False, False), ("Dropout", {}, False, False),
        ("Dropout", {0: 0.5}, False, False), ("Noop", {}, False, False), ("UnaryOp", {0: 1}, False, False),
        ("UnaryOp", {0: 9}, False, False), ("UnaryOp", {0: 4}, False, True),
        ("Exp", {1: 0.25}, True, True), ("Power", {0: 2.0, 1: 0.5, 2: 0.0}, False, True),
    ]  # continuous functions only: a discontinuous one (Threshold, floor) turns fp32 rounding into jumps


def elementwise(b: Builder, x: T, types: tuple[str, ...] | None = None) -> T:
    table = [e for e in _ew(b) if types is None or e[0] in types]
    type_, params, pos, nonneg = b.rng.choice(table)
    if type_ in ("Dropout", "Noop"):  # identities keep the sign
        pos, nonneg = x.pos, x.nonneg
    return b.one(type_, x, x.shape, params, pos=pos, nonneg=nonneg)


def head(b: Builder, x: T) -> T:
    """Something that needs its input's exact rank (the end of a chain a pass must not reshape)."""
    r = b.rng.random()
    if r < 0.4:
        return b.one("Softmax", x, x.shape, {0: 0, 1: 1} if x.rank > 1 else {0: 0}, pos=True)
    if r < 0.6 and x.rank == 1:
        return reshape(b, x, (1, x.shape[0]))
    return elementwise(b, x)


def wrap(values) -> W:
    return W(np.asarray(values, np.float32), False)
