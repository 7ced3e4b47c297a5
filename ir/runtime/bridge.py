"""Run a :class:`Graph` in the real ncnn runtime (the ``ncnn`` pip package).

Options are applied before loading (ncnn requires it). Inputs are cloned into ncnn-owned Mats
(a non-owning Mat fed to an in-place first layer crashes ncnn in light mode).

``target`` picks where ncnn runs (:mod:`ncnnpass.ir.runtime.targets`): ``x86`` in this process (the library
default), ``isolated`` in a worker subprocess (a crash becomes a :class:`RuntimeBridgeError`), ``arm`` /
``arm-a57`` the aarch64 ncnn under qemu, ``vulkan`` ncnn's GPU path on lavapipe. For many runs on one
target use :func:`open_target`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import RuntimeBridgeError
from ..graph import Graph
from . import worker
from .options import option_fields
from .targets import Target, get_default_target, normalize_target, shared_target

__all__ = ["LoadedNet", "check_input_shapes", "infer_shapes", "load", "run"]


# Inputs are allocated from shapes a .param declares (Input 0=w 1=h 2=c) or a user gives: a lying
# header must not make us allocate gigabytes (PP-OCR rec inputs are 3x48x320 = 46k values).
MAX_INPUT_VALUES = 1 << 26  # 256 MiB of float32 over all inputs


def check_input_shapes(shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise :class:`RuntimeBridgeError` for non-positive dims or more than :data:`MAX_INPUT_VALUES` values."""
    total = 0
    for name, shape in shapes.items():
        if not shape or any(int(d) <= 0 for d in shape):
            raise RuntimeBridgeError(f"input {name!r}: shape {tuple(shape)} must have positive dimensions")
        n = 1
        for d in shape:
            n *= int(d)
        total += n
    if total > MAX_INPUT_VALUES:
        desc = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in shapes.items())
        raise RuntimeBridgeError(f"input shapes {desc} hold {total} values, more than the {MAX_INPUT_VALUES} "
                                 "ncnnpass allocates to run a model (give a smaller shape)")


def _ncnn():
    try:
        import ncnn
    except ImportError as exc:  # pragma: no cover - ncnn is a hard dependency
        raise RuntimeBridgeError(f"the ncnn Python package is not importable: {exc} (pip install ncnn)") from None
    return ncnn


@dataclass
class LoadedNet:
    """A Graph loaded into ncnn; keep it around to run many inputs."""

    net: object
    graph_inputs: list[str]
    graph_outputs: list[str]

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray, outputs: Iterable[str] | str | None = None,
            light_mode: bool | None = None) -> dict[str, np.ndarray]:
        if isinstance(inputs, np.ndarray):
            if len(self.graph_inputs) != 1:
                raise RuntimeBridgeError(f"the model has inputs {self.graph_inputs}; pass a dict")
            inputs = {self.graph_inputs[0]: inputs}
        try:
            names = worker.output_names(self.net, outputs, self.graph_outputs)
            return worker.run_net(_ncnn(), self.net, dict(inputs), names, light_mode)
        except worker.NcnnCallError as exc:
            raise RuntimeBridgeError(str(exc)) from None


def load(graph: Graph, options: str | Mapping[str, object] | None = None,
         num_threads: int | None = None) -> LoadedNet:
    """Load ``graph`` into an in-process ``ncnn.Net`` with the given options (set before loading)."""
    fields = option_fields(options)
    try:
        net = worker.load_net(_ncnn(), graph.to_param_text(), graph.to_bin_bytes(), fields, num_threads)
    except worker.NcnnCallError as exc:
        raise RuntimeBridgeError(str(exc)) from None
    return LoadedNet(net, graph.inputs, graph.outputs)


def run(graph: Graph, inputs: Mapping[str, np.ndarray] | np.ndarray, outputs: Iterable[str] | str | None = None,
        options: str | Mapping[str, object] | None = None, num_threads: int | None = None,
        light_mode: bool | None = None, target: str | Target | None = None) -> dict[str, np.ndarray]:
    """Run once: ``outputs`` = None (protected outputs), a name, a list, or ``"all"`` blobs.

    ``target``: a name (None = :func:`get_default_target`, ``x86`` unless set) or an open session. A
    name other than ``x86`` runs in a process-wide worker kept warm between calls."""
    if isinstance(target, Target):
        return target.run(graph, inputs, outputs, options, num_threads, light_mode)
    if normalize_target(target) == "x86":
        return load(graph, options, num_threads).run(inputs, outputs, light_mode)
    return shared_target(target).run(graph, inputs, outputs, options, num_threads, light_mode)


def infer_shapes(graph: Graph, input_shapes: Mapping[str, tuple[int, ...]] | tuple[int, ...],
                 options: str | Mapping[str, object] | None = "shapes", target: str | Target | None = None
                 ) -> dict[str, tuple[int, ...]]:
    """Run zeros of the given input shapes (numpy order, e.g. (c, h, w)) and record every blob's shape
    (on ``target``: ``isolated`` survives models that crash ncnn). One thread and the ``shapes`` preset (no
    winograd/sgemm pipelines to build): 20x faster than the default and the same shapes. Shapes do not depend on the CPU: with no
    ``target`` and an emulated ARM or Vulkan default (``--target arm``/``vulkan``), they are inferred in an
    isolated x86 worker, as crash-safe and faster; name ``target="arm"`` (or ``"vulkan"``) to run there anyway."""
    if target is None and (get_default_target().startswith("arm") or get_default_target() == "vulkan"):
        target = "isolated"
    if not isinstance(input_shapes, Mapping):
        ins = graph.inputs
        if len(ins) != 1:
            raise RuntimeBridgeError(f"the model has inputs {ins}; give a shape per input")
        input_shapes = {ins[0]: tuple(input_shapes)}
    check_input_shapes(input_shapes)
    feeds = {k: np.zeros(v, np.float32) for k, v in input_shapes.items()}
    names = list(graph.blobs)
    result = run(graph, feeds, names, options, num_threads=1, light_mode=False, target=target)
    shapes = {}
    for name, arr in result.items():
        shapes[name] = tuple(arr.shape)
        graph.blobs[name].shape = tuple(arr.shape)
    return shapes
