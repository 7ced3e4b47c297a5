"""ONNX pass ``ctc-feats``: expose a PaddleOCR CTC head's features and logits as graph outputs.

A PaddleOCR recognition model exported for inference ends in its CTC head's projection followed by a
softmax::

    feats [N, T, C] --MatMul(W[C, K])--> [+ Add(b[K])] --> logits [N, T, K] --Softmax(last axis)--> probs

(``probs`` is the graph output, e.g. ``softmax_5.tmp_0``). PaddleOCR's ``CTCHead(return_feats=True)``
returns ``(feats, logits)`` in training mode, where ``feats`` is the input of the *last* fully connected
layer: the neck output when the head has one FC, or the first FC's output when it was built with
``mid_channels`` (two FCs, no activation between them). In the ONNX graph both cases are the A input of
the MatMul feeding the softmax, so that tensor is what this pass exposes as ``feats``; the tensor
entering the softmax is exposed as ``logits``.

Exports of Distillation / MultiHead models contain only the CTC branch (MultiHead returns only the CTC
output in eval mode), so they have the same tail and need no special handling.

The original outputs stay first and untouched; the new outputs are appended (through ``Identity``
nodes so that they get stable names, ``feats`` and ``logits`` unless those names are taken).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ncnnpass.ir.errors import GraphError

from .ranks import tensor_ranks

__all__ = ["CtcFeatsResult", "CtcHead", "add_ctc_feats", "find_ctc_heads", "load_onnx"]


@dataclass(frozen=True)
class CtcHead:
    """Where the CTC head sits in a graph (tensor and node names of the original model)."""

    probs: str  #: the graph output produced by the softmax
    logits: str  #: the softmax input (MatMul output, or the bias Add output)
    feats: str  #: the A input of the last MatMul (what CTCHead returns as features)
    matmul: str  #: name of the last MatMul node
    feat_dim: int  #: C, rows of the last FC weight
    num_classes: int  #: K, columns of the last FC weight (blank + characters [+ space])
    has_bias: bool
    #: rows of the first FC when ``feats`` is itself produced by a constant-weight MatMul [+ Add]
    #: (CTCHead built with ``mid_channels``; an ``fc`` neck followed by a one-FC head looks the same).
    mid_channels: int | None


@dataclass
class CtcFeatsResult:
    """The rewritten model and the names of the probs / feats / logits graph outputs."""

    model: onnx.ModelProto
    probs: str
    feats: str
    logits: str
    head: CtcHead

    @property
    def feat_dim(self) -> int:
        return self.head.feat_dim

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def mid_channels(self) -> int | None:
        return self.head.mid_channels


def _producer(tensor: gs.Tensor) -> gs.Node | None:
    return tensor.inputs[0] if len(tensor.inputs) == 1 else None


def _constant_value(tensor: gs.Tensor) -> np.ndarray | None:
    """The value of a tensor that is an initializer, a Constant node, or a Transpose of one."""
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    node = _producer(tensor)
    if node is None:
        return None
    if node.op == "Constant":
        value = node.attrs.get("value")
        if isinstance(value, gs.Constant):
            return np.asarray(value.values)
        return None
    if node.op == "Transpose" and len(node.inputs) == 1:
        inner = _constant_value(node.inputs[0])
        if inner is None:
            return None
        perm = node.attrs.get("perm")
        return np.transpose(inner, perm) if perm is not None else np.transpose(inner)
    return None


def _fc_of(tensor: gs.Tensor) -> tuple[gs.Node, gs.Tensor, np.ndarray, bool] | None:
    """If ``tensor`` = MatMul(x, W const 2-D) [+ const bias], return (matmul, x, W, has_bias)."""
    node = _producer(tensor)
    if node is None:
        return None
    has_bias = False
    if node.op == "Add" and len(node.inputs) == 2:
        a, b = node.inputs
        for mm_side, bias_side in ((a, b), (b, a)):
            bias = _constant_value(bias_side)
            inner = _producer(mm_side)
            if bias is not None and inner is not None and inner.op == "MatMul":
                node, has_bias = inner, True
                bias_shape = bias.shape
                break
        else:
            return None
    if node.op != "MatMul" or len(node.inputs) != 2:
        return None
    weight = _constant_value(node.inputs[1])
    if weight is None or weight.ndim != 2 or _constant_value(node.inputs[0]) is not None:
        return None
    if has_bias and int(np.prod(bias_shape)) != weight.shape[1]:
        return None
    return node, node.inputs[0], weight, has_bias


def _softmax_is_last_axis(node: gs.Node, rank: int | None, opset: int) -> bool:
    axis = node.attrs.get("axis", -1 if opset >= 13 else 1)
    if axis == -1:
        return True
    return rank is not None and axis == rank - 1


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _find_heads(graph: gs.Graph, ranks: dict[str, int], opset: int) -> tuple[list[CtcHead], list[str]]:
    heads: list[CtcHead] = []
    why: list[str] = []
    for out in graph.outputs:
        node = _producer(out)
        if node is None or node.op != "Softmax":
            why.append(f"{out.name}: produced by {node.op if node else 'nothing'}, not Softmax")
            continue
        logits = node.inputs[0]
        rank = ranks.get(logits.name) or ranks.get(out.name)
        if not _softmax_is_last_axis(node, rank, opset):
            why.append(f"{out.name}: Softmax is not over the last axis")
            continue
        if rank is not None and rank != 3:
            why.append(f"{out.name}: rank {rank}, a CTC head gives N x T x classes")
            continue
        fc = _fc_of(logits)
        if fc is None:
            why.append(f"{out.name}: the Softmax input is not MatMul(x, constant W) [+ constant bias]")
            continue
        matmul, feats, weight, has_bias = fc
        first = _fc_of(feats)
        mid = int(first[2].shape[1]) if first is not None and first[2].shape[1] == weight.shape[0] else None
        heads.append(CtcHead(probs=out.name, logits=logits.name, feats=feats.name, matmul=matmul.name,
                             feat_dim=int(weight.shape[0]), num_classes=int(weight.shape[1]),
                             has_bias=has_bias, mid_channels=mid))
    return heads, why


def find_ctc_heads(model: onnx.ModelProto) -> list[CtcHead]:
    """All graph outputs that are the softmax of a CTC projection, in graph-output order."""
    graph = gs.import_onnx(model)
    heads, _ = _find_heads(graph, tensor_ranks(model), _opset(model))
    return heads


def _free_name(wanted: str, taken: set[str]) -> str:
    name, i = wanted, 1
    while name in taken:
        name = f"{wanted}_{i}"
        i += 1
    taken.add(name)
    return name


def _exposed_as(graph: gs.Graph, tensor_name: str) -> str | None:
    """Name of an existing graph output that is ``tensor_name`` or an Identity of it."""
    for out in graph.outputs:
        if out.name == tensor_name:
            return out.name
        node = _producer(out)
        if node is not None and node.op == "Identity" and node.inputs[0].name == tensor_name:
            return out.name
    return None


def _seq_dims(graph: gs.Graph, probs: str) -> list[int | str]:
    """Batch and time dims for the new outputs, copied from the probs output when meaningful."""
    out = next(o for o in graph.outputs if o.name == probs)
    dims: list[int | str] = ["N", "T"]
    shape = out.shape or []
    for i in range(min(2, len(shape))):
        d = shape[i]
        if isinstance(d, int) and d > 0 or isinstance(d, str) and d and d != "?":
            dims[i] = d
    return dims


def add_ctc_feats(model: onnx.ModelProto, output: str | None = None, feats_name: str = "feats",
                  logits_name: str = "logits") -> CtcFeatsResult:
    """Return a copy of ``model`` with the CTC head's features and logits added as graph outputs.

    ``output`` picks the CTC output when the graph has several; by default the model must have exactly
    one. Raises :class:`~ncnnpass.ir.errors.GraphError` when no CTC head is found. The input model is not
    modified. Running the pass twice adds nothing the second time.
    """
    ranks = tensor_ranks(model)
    opset = _opset(model)
    graph = gs.import_onnx(model)
    heads, why = _find_heads(graph, ranks, opset)
    if output is not None:
        chosen = [h for h in heads if h.probs == output]
        if not chosen:
            names = [o.name for o in graph.outputs]
            if output not in names:
                raise GraphError(f"no graph output named {output!r} (outputs: {', '.join(names)})")
            reason = next((w for w in why if w.startswith(f"{output}:")), output)
            raise GraphError(f"output {output!r} is not a CTC head: {reason}")
        heads = chosen
    if not heads:
        detail = "; ".join(why) if why else "the graph has no outputs"
        raise GraphError(
            "no CTC head found: expected a graph output made by Softmax(last axis) over "
            f"MatMul(features, constant W) [+ constant bias] ({detail})")
    if len(heads) > 1:
        raise GraphError("several CTC heads found (outputs "
                         f"{', '.join(h.probs for h in heads)}); choose one with output=/--output")
    head = heads[0]

    taken = {t for t in graph.tensors()} | {n.name for n in graph.nodes if n.name}
    dims = _seq_dims(graph, head.probs)
    tensors = graph.tensors()
    names: dict[str, str] = {}
    for role, source, wanted, width in (("feats", head.feats, feats_name, head.feat_dim),
                                        ("logits", head.logits, logits_name, head.num_classes)):
        existing = _exposed_as(graph, source)
        if existing is not None:
            names[role] = existing
            continue
        out_name = _free_name(wanted, taken)
        var = gs.Variable(out_name, dtype=np.float32, shape=[*dims, width])
        graph.nodes.append(gs.Node(op="Identity", name=_free_name(f"ncnnpass_{out_name}", taken),
                                   inputs=[tensors[source]], outputs=[var]))
        graph.outputs.append(var)
        names[role] = out_name

    new = gs.export_onnx(graph, do_type_check=True)
    # onnx-graphsurgeon does not carry model-level fields; keep them (the dictionary lives in metadata).
    new.ir_version = model.ir_version
    new.producer_name = model.producer_name
    new.producer_version = model.producer_version
    new.domain = model.domain
    new.model_version = model.model_version
    new.doc_string = model.doc_string
    del new.metadata_props[:]
    new.metadata_props.extend(copy.deepcopy(list(model.metadata_props)))
    del new.opset_import[:]
    new.opset_import.extend(copy.deepcopy(list(model.opset_import)))
    _restore_output_types(model, new)
    try:
        onnx.checker.check_model(new)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - would be a bug in this pass
        raise GraphError(f"ctc-feats produced an invalid model: {exc}") from exc
    return CtcFeatsResult(model=new, probs=head.probs, feats=names["feats"], logits=names["logits"],
                          head=head)


def _restore_output_types(old: onnx.ModelProto, new: onnx.ModelProto) -> None:
    """Keep the original outputs' value infos byte for byte (graphsurgeon may rewrite shapes)."""
    originals = {o.name: o for o in old.graph.output}
    for i, out in enumerate(new.graph.output):
        if out.name in originals:
            new.graph.output[i].CopyFrom(originals[out.name])


def load_onnx(path: str) -> onnx.ModelProto:
    """Load an ONNX file, turning parse failures into a one-line :class:`GraphError`."""
    with open(path, "rb") as fh:  # FileNotFoundError / IsADirectoryError are reported by the CLI
        data = fh.read()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise GraphError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.graph.node:
        raise GraphError(f"{path}: not a readable ONNX model (no graph nodes)")
    return model
