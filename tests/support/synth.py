"""Synthetic converter-style ``.param`` text of any size (for benchmarks and scale tests)."""

from __future__ import annotations

_BLOCK = [  # (type, n_in, params); blocks chain through blob names, with one Split + SE branch each
    ("Convolution", 1, "0=64 1=1 11=1 12=1 13=1 14=0 2=1 3=1 4=0 5=1 6=4096"),
    ("HardSwish", 1, "0=1.666667e-01 1=5.000000e-01"),
    ("ConvolutionDepthWise", 1, "0=64 1=3 11=3 12=1 13=1 14=1 2=1 3=1 4=1 5=1 6=576 7=64"),
    ("HardSwish", 1, "0=1.666667e-01 1=5.000000e-01"),
    ("Split", 1, ""),
    ("Pooling", 1, "0=1 4=1"),
    ("InnerProduct", 1, "0=16 1=1 2=1024 9=1"),
    ("InnerProduct", 1, "0=64 1=1 2=1024"),
    ("HardSigmoid", 1, "0=1.666667e-01 1=5.000000e-01"),
    ("BinaryOp", 2, "0=2"),
]


def synthetic_param(n_layers: int) -> str:
    """A valid ``.param`` with ``n_layers`` layers (pnnx layout: padded columns, numbered blobs)."""
    lines = [f"{'Input':<24} {'in0':<24} 0 1 in0 0=320 1=48 2=64"]
    blob = 0
    cur = "in0"
    counts: dict[str, int] = {}
    split_other = None
    while len(lines) < n_layers:
        for type_, n_in, params in _BLOCK:
            if len(lines) >= n_layers:
                break
            k = counts.get(type_, 0)
            counts[type_] = k + 1
            name = f"{type_.lower()}_{k}"
            if type_ == "Split":
                a, b = str(blob + 1), str(blob + 2)
                blob += 2
                lines.append(f"{type_:<24} {name:<24} 1 2 {cur} {a} {b}")
                cur, split_other = a, b
                continue
            ins = [cur] if n_in == 1 else [split_other or cur, cur]
            blob += 1
            out = str(blob)
            lines.append(f"{type_:<24} {name:<24} {len(ins)} 1 {' '.join(ins)} {out}" + (f" {params}" if params else ""))
            cur = out
            if type_ == "BinaryOp":
                split_other = None
    return f"7767517\n{len(lines)} {blob + 1}\n" + "\n".join(lines) + "\n"
