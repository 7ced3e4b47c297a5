"""Runners: one interface to run a model and get ``{output name: array}``.

- :class:`~.onnx_runner.OnnxRunner` — onnxruntime (the reference);
- :class:`NcnnRunner` — ncnn on a target (``x86``, ``isolated``, ``arm``/``arm-a57`` emulated, ...) under
  an option preset; warm sessions are reused (the process-wide worker of the target, or a session given);
- :class:`~.paddle_runner.PaddleRunner` — Paddle inference in its side environment.

>>> ref, phone = OnnxRunner.cached("rec.onnx"), NcnnRunner(graph, target="arm", options="default")
>>> compare_outputs(ref.run(x), phone.run(x), by_size=True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.runtime import Target, describe_target, normalize_target, using_target
from ncnnpass.ir.runtime.options import Options

__all__ = ["Runner", "NcnnRunner", "paired_outputs"]

Inputs = Mapping[str, np.ndarray] | np.ndarray


class Runner(Protocol):
    """Anything that runs a model: ``run(inputs) -> {output name: array}``."""

    name: str

    def run(self, inputs: Inputs, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]: ...


class NcnnRunner:
    """``graph`` in ncnn on ``target`` under ``options`` (a preset name or field dict), ``num_threads`` threads."""

    def __init__(self, graph: Graph, *, target: str | Target | None = None, options: Options = "default",
                 num_threads: int | None = 1) -> None:
        self.graph = graph
        self.target = target if isinstance(target, Target) else normalize_target(target)
        self.options = options
        self.num_threads = num_threads
        self.outputs = list(graph.outputs)
        where = self.target.name if isinstance(self.target, Target) else self.target
        opts = options if isinstance(options, str) else "custom"
        self.name = f"ncnn {describe_target(where)}, {opts} options"

    def run(self, inputs: Inputs, outputs: Iterable[str] | str | None = None) -> dict[str, np.ndarray]:
        return self.run_many([inputs], outputs)[0]

    def run_many(self, inputs: Sequence[Inputs], outputs: Iterable[str] | str | None = None
                 ) -> list[dict[str, np.ndarray]]:
        """Load once, run each input (``outputs``: None = the graph's, a list, or ``"all"``)."""
        with using_target(self.target) as session:
            return session.run_many(self.graph, list(inputs), self.outputs if outputs is None else outputs,
                                    self.options, self.num_threads, False if outputs == "all" else None)


def paired_outputs(ncnn_outputs: Sequence[str], reference: Mapping[str, np.ndarray]
                   ) -> list[tuple[str, str]]:
    """(ncnn blob, reference name) pairs: by name where the names agree, else by position."""
    ref_names = list(reference)
    if all(n in reference for n in ncnn_outputs):
        return [(n, n) for n in ncnn_outputs]
    return list(zip(ncnn_outputs, ref_names, strict=False))
