"""Small float64 numpy references for ncnn layers, written from ncnn's generic ``src/layer/*.cpp``.

Shapes follow ncnn's Mat in numpy order: ``(w,)``, ``(h, w)``, ``(c, h, w)``, ``(c, d, h, w)``.
Weights are given flat, exactly as stored in the ``.bin``, and reshaped here the way ncnn reads them.
"""

from __future__ import annotations

import itertools

import numpy as np


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def conv_nd(x, weight, bias, kernel, stride=None, dilation=None, pads=None, groups=1, pad_value=0.0):
    """Grouped N-d convolution. ``x`` (C, *spatial); ``weight`` flat [out][in/g][*kernel]; ``pads`` per dim
    (before, after)."""
    x = _f64(x)
    nd = len(kernel)
    stride = stride or (1,) * nd
    dilation = dilation or (1,) * nd
    pads = pads or ((0, 0),) * nd
    cin = x.shape[0]
    w = _f64(weight)
    cout = w.size // (cin // groups) // int(np.prod(kernel))
    w = w.reshape(cout, cin // groups, *kernel)
    xp = np.pad(x, ((0, 0), *pads), constant_values=pad_value)
    out_sp = [(xp.shape[1 + i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(nd)]
    out = np.zeros((cout, *out_sp))
    cin_g, cout_g = cin // groups, cout // groups
    for g in range(groups):
        xs = xp[g * cin_g:(g + 1) * cin_g]
        for k in itertools.product(*(range(n) for n in kernel)):
            sl = tuple(slice(k[i] * dilation[i], k[i] * dilation[i] + stride[i] * (out_sp[i] - 1) + 1, stride[i])
                       for i in range(nd))
            patch = xs[(slice(None), *sl)]  # (cin_g, *out_sp)
            wk = w[(slice(g * cout_g, (g + 1) * cout_g), slice(None), *k)]  # (cout_g, cin_g)
            out[g * cout_g:(g + 1) * cout_g] += np.tensordot(wk, patch, axes=([1], [0]))
    if bias is not None:
        out += _f64(bias).reshape(-1, *([1] * nd))
    return out


def deconv_nd(x, weight, bias, kernel, stride=None, dilation=None, pads=None, groups=1, output_pad=None):
    """ncnn Deconvolution: scatter, weight flat [out][in/g][*kernel] (no flip), then crop ``pads``."""
    x = _f64(x)
    nd = len(kernel)
    stride = stride or (1,) * nd
    dilation = dilation or (1,) * nd
    pads = pads or ((0, 0),) * nd
    output_pad = output_pad or (0,) * nd
    cin = x.shape[0]
    w = _f64(weight)
    cout = w.size // (cin // groups) // int(np.prod(kernel))
    w = w.reshape(cout, cin // groups, *kernel)
    in_sp = x.shape[1:]
    full = [(in_sp[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1 + output_pad[i] for i in range(nd)]
    out = np.zeros((cout, *full))
    cin_g, cout_g = cin // groups, cout // groups
    for g in range(groups):
        xs = x[g * cin_g:(g + 1) * cin_g]
        for k in itertools.product(*(range(n) for n in kernel)):
            sl = tuple(slice(k[i] * dilation[i], k[i] * dilation[i] + stride[i] * (in_sp[i] - 1) + 1, stride[i])
                       for i in range(nd))
            wk = w[(slice(g * cout_g, (g + 1) * cout_g), slice(None), *k)]
            out[(slice(g * cout_g, (g + 1) * cout_g), *sl)] += np.tensordot(wk, xs, axes=([1], [0]))
    if bias is not None:
        out += _f64(bias).reshape(-1, *([1] * nd))
    crop = tuple(slice(pads[i][0], full[i] - pads[i][1]) for i in range(nd))
    return out[(slice(None), *crop)]


def innerproduct(x, weight, bias):
    x = _f64(x).reshape(-1)
    w = _f64(weight).reshape(-1, x.size)
    y = w @ x
    return y + _f64(bias) if bias is not None else y


def per_channel(v, ndim):
    return _f64(v).reshape(-1, *([1] * (ndim - 1)))


def batchnorm(x, slope, mean, var, bias, eps):
    x = _f64(x)
    pc = lambda v: per_channel(v, x.ndim)  # noqa: E731
    return (x - pc(mean)) / np.sqrt(pc(var) + eps) * pc(slope) + pc(bias)


def layernorm_rows(x, gamma, beta, eps):
    x = _f64(x)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * _f64(gamma) + _f64(beta)


def rmsnorm_rows(x, gamma, eps):
    x = _f64(x)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * _f64(gamma)


def groupnorm(x, groups, gamma, beta, eps):
    x = _f64(x)
    xg = x.reshape(groups, -1)
    mean = xg.mean(1, keepdims=True)
    var = ((xg - mean) ** 2).mean(1, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return y * per_channel(gamma, x.ndim) + per_channel(beta, x.ndim)


def instancenorm(x, gamma, beta, eps):
    return groupnorm(x, x.shape[0], gamma, beta, eps)


def normalize_all(x, scale, eps):
    """Normalize with across_spatial=1, across_channel=1, eps_mode=0, per-channel scale."""
    x = _f64(x)
    return x / np.sqrt((x * x).sum() + eps) * per_channel(scale, x.ndim)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _directions(step, x, direction):
    if direction == 2:
        return np.concatenate([step(x, 0, False), step(x, 1, True)], axis=1)
    return step(x, 0, direction == 1)


def rnn(x, weight_xc, bias_c, weight_hc, num_output, direction=0):
    x = _f64(x)
    T, size = x.shape
    d = 2 if direction == 2 else 1
    wxc = _f64(weight_xc).reshape(d, num_output, size)
    bc = _f64(bias_c).reshape(d, num_output)
    whc = _f64(weight_hc).reshape(d, num_output, num_output)

    def step(x, k, reverse):
        h = np.zeros(num_output)
        out = np.zeros((T, num_output))
        for t in reversed(range(T)) if reverse else range(T):
            h = np.tanh(wxc[k] @ x[t] + bc[k] + whc[k] @ h)
            out[t] = h
        return out

    return _directions(step, x, direction)


def gru(x, weight_xc, bias_c, weight_hc, num_output, direction=0):
    x = _f64(x)
    T, size = x.shape
    n = num_output
    d = 2 if direction == 2 else 1
    wxc = _f64(weight_xc).reshape(d, 3, n, size)
    bc = _f64(bias_c).reshape(d, 4, n)
    whc = _f64(weight_hc).reshape(d, 3, n, n)

    def step(x, k, reverse):
        h = np.zeros(n)
        out = np.zeros((T, n))
        for t in reversed(range(T)) if reverse else range(T):
            r = sigmoid(wxc[k, 0] @ x[t] + bc[k, 0] + whc[k, 0] @ h)
            u = sigmoid(wxc[k, 1] @ x[t] + bc[k, 1] + whc[k, 1] @ h)
            nn = np.tanh(wxc[k, 2] @ x[t] + bc[k, 2] + r * (whc[k, 2] @ h + bc[k, 3]))
            h = (1 - u) * nn + u * h
            out[t] = h
        return out

    return _directions(step, x, direction)


def lstm(x, weight_xc, bias_c, weight_hc, num_output, hidden_size=None, weight_hr=None, direction=0):
    x = _f64(x)
    T, size = x.shape
    hs = hidden_size or num_output
    d = 2 if direction == 2 else 1
    wxc = _f64(weight_xc).reshape(d, 4, hs, size)
    bc = _f64(bias_c).reshape(d, 4, hs)
    whc = _f64(weight_hc).reshape(d, 4, hs, num_output)
    whr = _f64(weight_hr).reshape(d, num_output, hs) if weight_hr is not None else None

    def step(x, k, reverse):
        h = np.zeros(num_output)
        c = np.zeros(hs)
        out = np.zeros((T, num_output))
        for t in reversed(range(T)) if reverse else range(T):
            g = [wxc[k, j] @ x[t] + bc[k, j] + whc[k, j] @ h for j in range(4)]  # I F O G
            c = sigmoid(g[1]) * c + sigmoid(g[0]) * np.tanh(g[3])
            hh = sigmoid(g[2]) * np.tanh(c)
            h = whr[k] @ hh if whr is not None else hh
            out[t] = h
        return out

    return _directions(step, x, direction)


def mha(q, k, v, embed_dim, num_heads, qw, qb, kw, kb, vw, vb, ow, ob):
    q, k, v = _f64(q), _f64(k), _f64(v)
    qdim, kdim, vdim = q.shape[1], k.shape[1], v.shape[1]
    Q = q @ _f64(qw).reshape(embed_dim, qdim).T + _f64(qb)
    K = k @ _f64(kw).reshape(embed_dim, kdim).T + _f64(kb)
    V = v @ _f64(vw).reshape(embed_dim, vdim).T + _f64(vb)
    hd = embed_dim // num_heads
    out = np.zeros((q.shape[0], embed_dim))
    for h in range(num_heads):
        sl = slice(h * hd, (h + 1) * hd)
        s = Q[:, sl] @ K[:, sl].T / np.sqrt(hd)
        s = np.exp(s - s.max(1, keepdims=True))
        s /= s.sum(1, keepdims=True)
        out[:, sl] = s @ V[:, sl]
    return out @ _f64(ow).reshape(qdim, embed_dim).T + _f64(ob)


def float2int8(v):
    """ncnn's float2int8: round half away from zero, clamp to [-127, 127]."""
    v = _f64(v)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r, -127, 127).astype(np.int8)
