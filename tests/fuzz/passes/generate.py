"""Random valid ncnn graphs made of motifs (:mod:`.motifs`), the Csmith/YARPGen idea for ncnn passes.

``generate(rng)`` draws an input size, a weight storage (fp32, fp16, bf16 or a mix), how often layers
carry a featmask (``31=``) or share a name, and a chain of motifs; the builder then writes the ``.param``
with converter-style Splits (sometimes with an unused top or a mask) and the ``.bin``. Some graphs do not
declare their input size (then passes get the shape, or shape-dependent rules must stay quiet), and some
protect an internal blob as an output as well. The reference semantics are ncnn fp32 on this graph.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import motifs, ops
from .builder import Builder, T

MOTIFS = (  # (weight, motif)
    (4, motifs.se_block),
    (5, motifs.conv_chain),
    (3, motifs.ip_chain),
    (1, motifs.conv1d_chain),
    (3, motifs.pool_chain),
    (3, motifs.identity_chain),
    (2, motifs.scaled_add),
    (2, "memorydata"),
    (2, motifs.reshape_binop),
    (1, motifs.concat_branch),
    (1, motifs.softmax_relu),
    (2, motifs.twice_and_slice),
)


@dataclass
class GenModel:
    param: str
    bin: bytes
    run_shapes: dict[str, tuple[int, ...]]   # input blob -> shape the reference runs at
    declared: bool                           # the Input layers declare that size
    outputs: list[str] | None                # protected outputs to set (None: what the file implies)
    motifs: list[str]
    shapes: dict[str, tuple[int, ...]]       # every blob's shape as the generator computed it


def _size(rng: random.Random) -> tuple[int, int, int]:
    c = rng.choice((1, 2, 3, 4, 4, 6, 8))
    h = rng.choice((1, 2, 3, 4, 4, 6, 8, 12))
    w = rng.choice((1, 2, 3, 4, 6, 8, 8, 10, 16))
    return c, h, w


def generate(rng: random.Random, max_motifs: int = 7) -> GenModel:
    storage = rng.choices(("fp32", "fp16", "bf16", "mixed"), (6, 2, 1, 1))[0]
    b = Builder(rng, storage)
    b.featmask_rate = rng.choice((0.0, 0.0, 0.0, 0.05, 0.2))
    b.shared_name_rate = rng.choice((0.0, 0.0, 0.0, 0.0, 0.1))
    b.odd_name_rate = rng.choice((0.0, 0.0, 0.0, 0.1))
    b.explicit_default_rate = rng.choice((0.0, 0.0, 0.5, 1.0))
    b.hint_rate = rng.choice((0.0, 0.0, 0.0, 0.0, 0.5))
    c, h, w = _size(rng)
    declared = rng.random() < 0.8
    x = b.blob((c, h, w))
    b.add("Input", [], [x], {0: w, 1: h, 2: c} if declared else {})
    graph_input = x
    names = []
    run_shapes = {x.name: (c, h, w)}
    if rng.random() < 0.1:  # a second input, combined with the first
        x2 = b.blob((c, h, w))
        b.add("Input", [], [x2], {0: w, 1: h, 2: c} if declared else {})
        run_shapes[x2.name] = (c, h, w)
        x = ops.binary(b, x, x2, rng.choice((0, 1, 2)))
        names.append("two-inputs")
    live: list[T] = [x]  # 3-D blobs a motif may start from: mostly the latest, sometimes an earlier one
    weights, table = zip(*MOTIFS, strict=True)
    for _ in range(rng.randint(1, max_motifs)):
        cur = live[-1] if rng.random() < 0.75 else rng.choice(live)
        motif = rng.choices(table, weights)[0]
        if motif == "memorydata":
            out = motifs.memorydata_binop(b, cur, graph_input)
            names.append("memorydata_binop")
        else:
            out = motif(b, cur)
            names.append(motif.__name__)
        if out is not None:
            live.append(out)
        elif rng.random() < 0.5:
            break
    outputs = None
    dangling = _dangling(b)
    r = rng.random()
    if r < 0.1:  # also protect an internal blob (one with readers), as a library user may
        internal = [t.name for t in b.consumers() if t is not graph_input]
        if internal:
            outputs = sorted({*dangling, rng.choice(internal)})
    elif r < 0.2 and len(dangling) > 1:  # protect only some results: the rest is dead code
        outputs = sorted(rng.sample(dangling, rng.randint(1, len(dangling) - 1)))
    shapes = {t.name: t.shape for ly in b.layers for t in ly.outputs}
    text, data = b.finish(split_style=rng.choice((0.0, 0.0, 0.2)))
    return GenModel(text, data, run_shapes, declared, outputs, names, shapes)


def _dangling(b: Builder) -> list[str]:
    read = {t.name for ly in b.layers for t in ly.inputs}
    return [t.name for ly in b.layers for t in ly.outputs if t.name not in read]
