"""Seed inputs for the fuzzers: the real PP-OCRv3 pnnx models, windows of them, synthetic models that
cover the other weighted layer types and storage flags, and the pattern texts of every built-in pass."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ncnnpass.ir.loader import graph_from_text
from ncnnpass.ir.parser import parse_param
from ncnnpass.ir.weights import TAG_BF16, TAG_FP16, TAG_FP32_SCALED, TAG_INT8, read_weight, weight_slots


@dataclass
class Model:
    """A ``.param`` (bytes) with its ``.bin`` and the offsets of its tagged arrays' storage flags."""

    name: str
    param: bytes
    bin: bytes
    array_starts: list[int] = field(default_factory=list)


def tagged_offsets(param: bytes, bin: bytes) -> list[int]:
    """Offsets of every tagged array's 4-byte storage flag (walks the weights like the loader)."""
    g = graph_from_text(param.decode("utf-8"))
    buf, offset, out = memoryview(bin), 0, []
    for ly in g.layers:
        for s in weight_slots(ly.type, ly.params, ly.name):
            if s.tagged:
                out.append(offset)
            _, offset = read_weight(buf, offset, s, ly.name, "<seed>")
    return out


def real_model(param: Path, bin: Path, name: str) -> Model:
    p, b = Path(param).read_bytes(), Path(bin).read_bytes()
    return Model(name, p, b, tagged_offsets(p, b))


def windows(model: Model, rng: random.Random, count: int, max_layers: int = 12) -> list[Model]:
    """Sub-models of consecutive layer lines of ``model`` (exact text), each made loadable by adding
    ``Input`` layers for the blobs it reads from outside, with the matching slice of weights."""
    text = model.param.decode("utf-8")
    pf = parse_param(text)
    lines = text.split("\n")
    g = graph_from_text(text, model.bin)
    out = []
    for _ in range(count):
        n = rng.randint(1, max_layers)
        i = rng.randrange(max(1, len(pf.layers) - n + 1))
        sel = pf.layers[i:i + n]
        produced: set[str] = set()
        external: list[str] = []
        blobs: set[str] = set()
        for ly in sel:
            for b in ly.inputs:
                if b not in produced and b not in external:
                    external.append(b)
            produced.update(ly.outputs)
            blobs.update(ly.inputs)
            blobs.update(ly.outputs)
        body = [f"Input                    win_in{k}                  0 1 {b}" for k, b in enumerate(external)]
        body += [lines[ly.line - 1] for ly in sel]
        param = f"7767517\n{len(body)} {len(blobs)}\n" + "\n".join(body) + "\n"
        weights = b"".join(w.encode() for ly in sel if ly.type != "Split"
                           for w in g.layer(ly.name).weights.values())
        p = param.encode("utf-8")
        out.append(Model(f"{model.name}[{i}:{i + n}]", p, weights, tagged_offsets(p, weights)))
    return out


# Layers whose weights the real models do not exercise, and params in every spelling ncnn accepts.
SYNTHETIC_PARAM = """7767517
22 25
Input            in0     0 1 x 0=8 1=4 2=3
MemoryData       md0     0 1 m0 0=4 1=2 2=3
MemoryData       md1     0 1 m1 0=5 21=1
Split            sp0     1 3 x x0 x1 x2
Convolution      conv0   1 1 x0 c0 0=4 1=3 4=1 5=1 6=108 8=101 -23330=4,3,8,4,4
ConvolutionDepthWise dw0 1 1 c0 d0 0=4 1=3 4=1 5=1 6=36 7=4 8=1
InnerProduct     fc0     1 1 x1 f0 0=6 1=1 2=576 8=1
BatchNorm        bn0     1 1 f0 b0 0=6
Scale            sc0     1 1 b0 s0 0=6 1=1
PReLU            pr0     1 1 s0 p0 0=6
Reshape          rs0     1 1 p0 r0 0=3 1=2
LSTM             lstm0   1 1 r0 l0 0=4 1=48 2=0 3=4
GRU              gru0    1 1 l0 g0 0=3 1=36 2=2
RNN              rnn0    1 1 g0 n0 0=2 1=24 2=1
Gemm             gemm0   1 1 n0 ge0 4=0 5=1 6=1 7=2 8=5 9=2 10=4
LayerNorm        ln0     1 1 ge0 la0 0=5 1=1.000000e-05 2=1
MultiHeadAttention mha0  1 1 la0 mh0 0=4 1=2 2=16
Embed            emb0    1 1 x2 e0 0=3 1=10 2=1 3=30
Padding          pad0    1 1 e0 pd0 0=1 1=1 2=1 3=1 6=3 7="a quoted string"
Interp           it0     1 1 pd0 i0 0=2 1=2.0 2=2.0 -23303=2,1.5e0,2.
Slice            sl0     1 2 mh0 q0 q1 -23300=2,-233,-233 1=0
Concat           cat0    4 1 q0 q1 m0 m1 out 0=-1
"""


def _array(rng: random.Random, count: int, tagged: bool) -> bytes:
    if not tagged:
        return bytes(rng.randrange(256) for _ in range(4 * count))
    kind = rng.choice(("fp32", "fp16", "bf16", "int8", "fp32s", "table"))
    if kind == "fp32":
        return bytes(4) + bytes(rng.randrange(256) for _ in range(4 * count))
    if kind == "fp32s":
        return TAG_FP32_SCALED.to_bytes(4, "little") + bytes(4 * count)
    if kind in ("fp16", "bf16"):
        tag = TAG_FP16 if kind == "fp16" else TAG_BF16
        payload = bytes(rng.randrange(256) for _ in range(2 * count))
    elif kind == "int8":
        tag, payload = TAG_INT8, bytes(rng.randrange(256) for _ in range(count))
    else:  # a 256-entry quantization table, then one byte per value
        tag, payload = 0x7AB1E000, bytes(1024) + bytes(rng.randrange(256) for _ in range(count))
    payload += bytes(-len(payload) % 4)
    return tag.to_bytes(4, "little") + payload


def synthetic_model(seed: int = 0) -> Model:
    """:data:`SYNTHETIC_PARAM` with weights in a seed-chosen mix of storage types."""
    rng = random.Random(seed)
    g = graph_from_text(SYNTHETIC_PARAM)
    chunks = []
    for ly in g.layers:
        for s in weight_slots(ly.type, ly.params, ly.name):
            chunks.append(_array(rng, s.count, s.tagged))
    p = SYNTHETIC_PARAM.encode()
    b = b"".join(chunks)
    return Model(f"synthetic-{seed}", p, b, tagged_offsets(p, b))


def pattern_texts() -> list[tuple[str, str]]:
    """(name, text) of every built-in rule pass, plus keep-fp32 style match-only patterns."""
    from ncnnpass.passes.engine import RulePass
    from ncnnpass.passes.registry import passes

    out = [(p.name, p.text) for p in passes().values() if isinstance(p, RulePass)]
    out.append(("keep-fp32-pattern", "rule keep-fp32-pattern\nmatch:\n  Pooling p 1 1 x t 4=1 ...\n"
                                     "  InnerProduct fc 1 1 t y ...\nwhere:\n  fc.num_output > 2 ** 3\n"))
    return out


def shard_bytes(num_classes: int = 5, feat_dim: int = 3, index: int = 0, count: int = 2) -> bytes:
    """A valid ``export-center --shard`` file (what :func:`ncnnpass.passes.paddle.centers.write_shard` writes)."""
    import tempfile

    import numpy as np

    from ncnnpass.passes.paddle.centers import CenterRun, CenterSums, write_shard

    sums = CenterSums.zeros(num_classes, feat_dim)
    sums.add(np.ones((4, feat_dim)), np.array([0, 1, 1, 3]))
    info = {"feat_dim": feat_dim, "num_classes": num_classes, "dictionary_sha256": "d", "use_space_char": False,
            "model_sha256": "m", "image_shape": [3, 48, 320], "eval_mode": False, "max_text_length": None,
            "allow_outside_data_dir": False, "label_sha256": "l", "shard": [index, count],
            "dictionary_size": num_classes - 1, "dictionary_source": "dict.txt"}
    run = CenterRun(sums=sums, info=info, samples_total=4, samples=2, used=2, frames=4)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.npz"
        write_shard(out, run, ["blank", *"abcdefghijklmnopqrstuvwxyz"[:num_classes - 1]])
        return out.read_bytes()
