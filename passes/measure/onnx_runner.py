"""onnxruntime as the reference runtime: the one place an ``InferenceSession`` is built.

:func:`onnx_session` builds a session (CPU provider, quiet logs, optional thread count, graph
optimizations on or off, optionally every intermediate tensor exposed as an output). :class:`OnnxRunner`
wraps one for running models as ncnnpass does: inputs given the ncnn way (by blob name or position,
without the batch dim) are mapped to the ONNX inputs by position and get their batch dim back; results
come as ``{output name: array}``. :meth:`OnnxRunner.cached` keeps warm runners per file.

>>> ref = OnnxRunner.cached("rec.onnx")
>>> probs = ref.run({"in0": x})["softmax_out"]       # x: 3x48x320, fed as 1x3x48x320
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["OnnxModelError", "OnnxRunner", "onnx_error_text", "onnx_session"]


class OnnxModelError(NcnnpassError):
    """The ONNX model cannot be loaded or run as asked."""


def onnx_error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    if "] : " in msg:  # onnxruntime prefixes "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : "
        msg = msg.split(" : ")[-1]
    return msg


def onnx_session(model: str | os.PathLike | Any, *, optimize: bool = True, num_threads: int | None = None,
                 expose: Sequence[str] = (), providers: Sequence[str] | None = None):
    """An onnxruntime session on ``model`` (a path or an ``onnx.ModelProto``).

    ``optimize=False`` turns graph optimizations off (every tensor computed as written); ``expose`` adds
    tensors as graph outputs (they must exist in the model). Raises :class:`OnnxModelError` (one line)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if num_threads:
        so.intra_op_num_threads = int(num_threads)
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    label = os.fspath(model) if isinstance(model, (str, os.PathLike)) else "the ONNX model"
    if expose:
        import onnx

        proto = onnx.load(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
        m = onnx.ModelProto()
        m.CopyFrom(proto)
        known = {o.name for o in m.graph.output}
        for name in expose:
            if name not in known:
                m.graph.output.append(onnx.ValueInfoProto(name=name))
                known.add(name)
        model = m
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, so, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise OnnxModelError(f"{label}: onnxruntime cannot load the model: {onnx_error_text(exc)}") from None


class OnnxRunner:
    """One onnxruntime session, fed the ncnn way. ``name`` is ``"onnxruntime"``."""

    name = "onnxruntime"
    _cache: OrderedDict[tuple, OnnxRunner] = OrderedDict()
    _cache_lock = threading.Lock()
    CACHE_SIZE = 4

    def __init__(self, model: str | os.PathLike | Any, *, optimize: bool = True, num_threads: int | None = None,
                 expose: Sequence[str] = ()) -> None:
        self.path = os.fspath(model) if isinstance(model, (str, os.PathLike)) else None
        self.session = onnx_session(model, optimize=optimize, num_threads=num_threads, expose=expose)
        ins = self.session.get_inputs()
        self.inputs = [i.name for i in ins]
        self.input_ranks = [len(i.shape) for i in ins]
        self.input_dims = {i.name: [d if isinstance(d, int) and d > 0 else None for d in i.shape] for i in ins}
        self.outputs = [o.name for o in self.session.get_outputs()]

    @classmethod
    def cached(cls, path: str | os.PathLike, *, optimize: bool = True, num_threads: int | None = None) -> OnnxRunner:
        """A warm runner for ``path`` (reused while the file is unchanged; a few are kept)."""
        p = Path(path)
        try:
            st = p.stat()
        except OSError as exc:
            raise OnnxModelError(f"{path}: cannot read the ONNX model ({exc.strerror})") from None
        key = (str(p.resolve()), st.st_mtime_ns, st.st_size, optimize, num_threads)
        with cls._cache_lock:
            runner = cls._cache.get(key)
            if runner is not None:
                cls._cache.move_to_end(key)
                return runner
        runner = cls(p, optimize=optimize, num_threads=num_threads)
        with cls._cache_lock:
            cls._cache[key] = runner
            while len(cls._cache) > cls.CACHE_SIZE:
                cls._cache.popitem(last=False)
        return runner

    def feeds(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """ONNX feeds from ncnn-style inputs: by ONNX name, else by position; a missing batch dim is added."""
        if isinstance(inputs, np.ndarray):
            arrays = [inputs]
        elif isinstance(inputs, Mapping):
            if set(inputs) == set(self.inputs):
                arrays = [inputs[n] for n in self.inputs]
            else:
                arrays = list(inputs.values())
        else:
            arrays = list(inputs)
        if len(arrays) != len(self.inputs):
            raise OnnxModelError(f"the ONNX model has inputs {self.inputs}; {len(arrays)} given")
        out = {}
        for name, rank, a in zip(self.inputs, self.input_ranks, arrays, strict=True):
            a = np.asarray(a, dtype=np.float32)
            out[name] = a[None] if a.ndim + 1 == rank else a
        return out

    def run(self, inputs: Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray,
            outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """``{output name: array}`` for ``outputs`` (default: the graph outputs)."""
        feeds = self.feeds(inputs)
        names = list(outputs) if outputs is not None else self.outputs
        try:
            values = self.session.run(names, feeds)
        except Exception as exc:  # noqa: BLE001
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
            where = os.path.basename(self.path) if self.path else "the ONNX model"
            raise OnnxModelError(f"onnxruntime cannot run {where} on input {shapes}: {onnx_error_text(exc)}") from None
        return dict(zip(names, values, strict=True))

    def run_list(self, inputs, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """:meth:`run` as a list in output order."""
        res = self.run(inputs, outputs)
        return [res[n] for n in (outputs if outputs is not None else self.outputs)]
