"""How many arrays each weighted ncnn layer type reads from the ``.bin``, and their sizes, as functions
of its params (read from each layer's ``load_model`` in ncnn's ``src/layer/*.cpp``).

A layout is ``fn(get) -> [Slot, ...]`` where ``get(param_id, default)`` reads an int param. Which type
uses which layout is declared once, in :mod:`ncnnpass.ir.layer_types`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import WeightError


@dataclass(frozen=True)
class Slot:
    """One array a layer reads: its name, element count and whether it is tagged."""

    name: str
    count: int
    tagged: bool


Getter = Callable[[int, int], int]
SlotFn = Callable[[Getter], list[Slot]]


def conv(dynamic_id: int | None, int8: str | None, group: bool = False) -> SlotFn:
    def slots(g: Getter) -> list[Slot]:
        if dynamic_id is not None and g(dynamic_id, 0):
            return []
        n = g(0, 0)
        out = [Slot("weight", g(6, 0), True)]
        if g(5, 0):
            out.append(Slot("bias", n, False))
        q = g(8, 0) if int8 else 0
        if int8 == "conv" and q:
            out += [Slot("weight_int8_scales", n, False), Slot("bottom_int8_scales", 1, False)]
            if q > 100:
                out.append(Slot("top_int8_scales", 1, False))
        elif int8 == "dw" and q:
            if q in (1, 101):
                out += [Slot("weight_int8_scales", g(7, 1), False), Slot("bottom_int8_scales", 1, False)]
            elif q in (2, 102):
                out += [Slot("weight_int8_scales", 1, False), Slot("bottom_int8_scales", 1, False)]
            if q > 100:
                out.append(Slot("top_int8_scales", 1, False))
        return out

    return slots


def innerproduct(g: Getter) -> list[Slot]:
    n = g(0, 0)
    out = [Slot("weight", g(2, 0), True)]
    if g(1, 0):
        out.append(Slot("bias", n, False))
    if g(8, 0):
        out += [Slot("weight_int8_scales", n, False), Slot("bottom_int8_scales", 1, False)]
    return out


def embed(g: Getter) -> list[Slot]:
    out = [Slot("weight", g(3, 0), True)]
    if g(2, 0):
        out.append(Slot("bias", g(0, 0), False))
    if g(18, 0):
        out.append(Slot("weight_int8_scale", 1, False))
    return out


def memorydata(g: Getter) -> list[Slot]:
    w, h, d, c = g(0, 0), g(1, 0), g(11, 0), g(2, 0)
    if d:
        n = w * h * d * c
    elif c:
        n = w * h * c
    elif h:
        n = w * h
    else:
        n = w
    return [Slot("data", n, g(21, 1) == 0)] if n else []


def affine(size_id: int, affine_id: int, beta: bool = True) -> SlotFn:
    def slots(g: Getter) -> list[Slot]:
        if not g(affine_id, 1):
            return []
        n = g(size_id, 0)
        return [Slot("gamma", n, False)] + ([Slot("beta", n, False)] if beta else [])

    return slots


def raw(*items: tuple[str, int, int, int]) -> SlotFn:
    """Raw arrays sized by a param: (name, param id, default, present-if id or -1)."""

    def slots(g: Getter) -> list[Slot]:
        out = []
        for name, pid, default, cond in items:
            if cond >= 0 and not g(cond, 0):
                continue
            out.append(Slot(name, g(pid, default), False))
        return out

    return slots


def scale(g: Getter) -> list[Slot]:
    n = g(0, 0)
    if n == -233:
        return []
    out = [Slot("scale", n, False)]
    if g(1, 0):
        out.append(Slot("bias", n, False))
    return out


def padding(g: Getter) -> list[Slot]:
    n = g(6, 0)
    return [Slot("per_channel_pad", n, False)] if n else []


def _directions(g: Getter) -> int:
    return 2 if g(2, 0) == 2 else 1


def rnn(g: Getter) -> list[Slot]:
    n, d = g(0, 0), _directions(g)
    size = g(1, 0) // d // max(n, 1)
    out = [Slot("weight_xc", size * n * d, True), Slot("bias_c", n * d, True), Slot("weight_hc", n * n * d, True)]
    if g(8, 0):
        out += [Slot("weight_xc_int8_scales", n * d, False), Slot("weight_hc_int8_scales", n * d, False)]
    return out


def lstm(g: Getter) -> list[Slot]:
    n, d = g(0, 0), _directions(g)
    hidden = g(3, n)
    size = g(1, 0) // d // max(hidden, 1) // 4
    out = [Slot("weight_xc", size * 4 * hidden * d, True), Slot("bias_c", hidden * 4 * d, True),
           Slot("weight_hc", n * 4 * hidden * d, True)]
    if n != hidden:
        out.append(Slot("weight_hr", hidden * n * d, True))
    if g(8, 0):
        out += [Slot("weight_xc_int8_scales", 4 * hidden * d, False),
                Slot("weight_hc_int8_scales", 4 * hidden * d, False)]
    return out


def gru(g: Getter) -> list[Slot]:
    n, d = g(0, 0), _directions(g)
    size = g(1, 0) // d // max(n, 1) // 3
    out = [Slot("weight_xc", size * 3 * n * d, True), Slot("bias_c", n * 4 * d, True),
           Slot("weight_hc", n * 3 * n * d, True)]
    if g(8, 0):
        out += [Slot("weight_xc_int8_scales", 3 * n * d, False), Slot("weight_hc_int8_scales", 3 * n * d, False)]
    return out


def mha(g: Getter) -> list[Slot]:
    e = g(0, 0)
    q = g(18, 0)
    if q >= 100:
        raise WeightError(f"block-quantized MultiHeadAttention weights (18={q}) are not supported")
    qdim = g(2, 0) // max(e, 1)
    kdim, vdim = g(3, e), g(4, e)
    out = [Slot("q_weight", e * qdim, True), Slot("q_bias", e, False), Slot("k_weight", e * kdim, True),
           Slot("k_bias", e, False), Slot("v_weight", e * vdim, True), Slot("v_bias", e, False),
           Slot("out_weight", qdim * e, True), Slot("out_bias", qdim, False)]
    if q:
        out += [Slot("q_int8_scales", e, False), Slot("k_int8_scales", e, False),
                Slot("v_int8_scales", e, False), Slot("out_int8_scale", 1, False)]
    return out


def gemm(g: Getter) -> list[Slot]:
    m, n, k = g(7, 0), g(8, 0), g(9, 0)
    q = g(18, 0)
    if q >= 100:
        raise WeightError(f"block-quantized Gemm weights (18={q}) are not supported")
    out = []
    if g(4, 0):
        out.append(Slot("A", m * k, True))
    if g(5, 0):
        out.append(Slot("B", n * k, True))
    bcast = g(10, 0)
    if g(6, 0) and bcast != -1:
        size = {0: 1, 1: m, 2: m, 3: m * n, 4: n}.get(bcast)
        if size is None:
            raise WeightError(f"Gemm constant_broadcast_type_C={bcast} is not a known broadcast type")
        out.append(Slot("C", size, True))
    if q:
        if g(4, 0):
            out.append(Slot("A_int8_scales", m, False))
        if g(5, 0):
            out.append(Slot("B_int8_scale", 1, False))
    return out



def batchnorm(g: Getter) -> list[Slot]:
    return [Slot(s, g(0, 0), False) for s in ("slope", "mean", "var", "bias")]
