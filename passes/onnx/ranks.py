"""Tensor ranks of an ONNX model, from its annotations, shape inference, initializers and Constants."""

from __future__ import annotations

import onnx


def tensor_ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every tensor whose rank is known (best effort: inference failures are not errors)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # shape inference is only a hint here
        inferred = model
    g = inferred.graph
    ranks: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            ranks[vi.name] = len(tt.shape.dim)
    for init in g.initializer:
        ranks[init.name] = len(init.dims)
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    ranks[node.output[0]] = len(attr.t.dims)
    return ranks
