"""The onnxruntime reference: every intermediate tensor exposed as a graph output.

Graph optimizations are off (``ORT_DISABLE_ALL``) so every tensor of the file exists and is computed
as written (fusions could otherwise drop or change intermediates). ``Constant`` node outputs are not
exposed. For each exposed tensor we keep its position in topological order, its producing node and
its ancestors (a bitmask over tensor indices) for the structural part of blob mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import onnx

from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes.measure.onnx_runner import OnnxModelError, OnnxRunner, onnx_error_text, onnx_session

__all__ = ["OnnxModelError", "OnnxTensor", "OnnxReference"]


@dataclass
class OnnxTensor:
    """One tensor of the ONNX graph (node output or graph input)."""

    name: str
    index: int  # topological position among exposed tensors
    op: str  # producing op type ("<input>" for graph inputs)
    node: str  # producing node name
    inputs: tuple[str, ...] = ()  # the producing node's non-initializer inputs
    ancestors: int = 0  # bitmask of tensor indices this one depends on
    from_input: bool = False  # depends on a graph input (False: constant-derived)
    aliases: list[str] = field(default_factory=list)


def _toposort(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Nodes in a topological order (ONNX requires it; some exporters do not comply)."""
    produced = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    nodes = list(graph.node)
    order: list[onnx.NodeProto] = []
    pending = nodes
    while pending:
        rest = []
        for n in pending:
            if all((not i) or i in produced for i in n.input):
                order.append(n)
                produced.update(o for o in n.output if o)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.input if i and i not in produced})[:3]
            raise OnnxModelError(f"the ONNX graph reads tensors nothing produces: {', '.join(missing)}")
        pending = rest
    return order


class OnnxReference:
    """Load an ONNX model once; run it with every intermediate tensor as an output."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None) -> None:
        self.path = os.fspath(path)
        try:
            self.model = onnx.load(self.path)
        except FileNotFoundError:
            raise
        except Exception as exc:  # protobuf DecodeError and friends
            raise OnnxModelError(f"{self.path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
        g = self.model.graph
        inits = {i.name for i in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in inits]
        self.output_names = [o.name for o in g.output]
        self.input_dims: dict[str, list[int | None]] = {}
        for i in g.input:
            if i.name in inits:
                continue
            dims = []
            for d in i.type.tensor_type.shape.dim:
                dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
            self.input_dims[i.name] = dims
        self.tensors: dict[str, OnnxTensor] = {}
        self.order: list[str] = []
        for name in self.input_names:
            self._add(OnnxTensor(name, len(self.order), "<input>", "<input>", from_input=True))
        for node in _toposort(g):
            if node.op_type == "Constant":
                continue
            ins = tuple(i for i in node.input if i and i in self.tensors)
            anc = 0
            from_input = False
            for i in ins:
                t = self.tensors[i]
                anc |= t.ancestors | (1 << t.index)
                from_input |= t.from_input
            for o in node.output:
                if o and o not in self.tensors:
                    self._add(OnnxTensor(o, len(self.order), node.op_type, node.name or o, ins, anc, from_input))
        self.num_threads = num_threads
        self._session = None
        self.metadata = {p.key: p.value for p in self.model.metadata_props}

    def _add(self, t: OnnxTensor) -> None:
        self.tensors[t.name] = t
        self.order.append(t.name)

    def session(self):
        """The onnxruntime session with all tensors as outputs, optimizations off (built once)."""
        if self._session is None:
            expose = [n for n in self.order if n not in self.input_names]
            self._session = onnx_session(self.model, optimize=False, num_threads=self.num_threads, expose=expose)
        return self._session

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor's value (graph inputs included), keyed by name."""
        sess = self.session()
        names = [o.name for o in sess.get_outputs()]
        try:
            values = sess.run(names, feeds)
        except Exception as exc:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
            raise OnnxModelError(f"onnxruntime cannot run {os.path.basename(self.path)} on input {shapes}: "
                                 f"{onnx_error_text(exc)}") from None
        out = dict(feeds)
        out.update(zip(names, values, strict=True))
        return out

    def check_optimized(self, feeds: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> float | None:
        """Max abs difference of the graph outputs between a normal (optimized) session and the run with every
        tensor exposed and optimizations off (Polygraphy's sanity check); ``None`` if it cannot run."""
        try:
            runner = OnnxRunner(self.model, num_threads=self.num_threads)
            outs = runner.run_list(feeds, self.output_names)
        except NcnnpassError:
            return None
        diff = 0.0
        for name, arr in zip(self.output_names, outs, strict=True):
            ref = values.get(name)
            if ref is None or not isinstance(arr, np.ndarray) or arr.dtype.kind != "f" or arr.shape != ref.shape:
                continue
            diff = max(diff, float(np.max(np.abs(arr.astype(np.float64) - ref))) if arr.size else 0.0)
        return diff

    def constant_values(self) -> dict[str, np.ndarray]:
        """Float initializers and ``Constant`` node outputs (candidates for ncnn ``MemoryData`` blobs)."""
        if getattr(self, "_constants", None) is None:
            from onnx import numpy_helper

            out: dict[str, np.ndarray] = {}
            g = self.model.graph
            for init in g.initializer:
                try:
                    arr = numpy_helper.to_array(init)
                except Exception:  # external data that is not there, odd types
                    continue
                if arr.dtype.kind == "f" and arr.size:
                    out[init.name] = arr.astype(np.float32, copy=False)
            for node in g.node:
                if node.op_type == "Constant" and node.output:
                    for a in node.attribute:
                        if a.name == "value":
                            arr = numpy_helper.to_array(a.t)
                            if arr.dtype.kind == "f" and arr.size:
                                out[node.output[0]] = arr.astype(np.float32, copy=False)
            self._constants = out
        return self._constants

    def character_list(self) -> list[str] | None:
        """The recognition dictionary stored in metadata ``character`` (RapidOCR models), if any."""
        from ncnnpass.passes.measure.ctc_decode import dictionary_from_metadata

        return dictionary_from_metadata(self.model)
