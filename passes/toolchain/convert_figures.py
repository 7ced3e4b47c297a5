"""The numbers ``convert`` reports: one ncnn model against onnxruntime, and the before/after table."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import VerificationError
from ncnnpass.passes.measure.onnx_runner import OnnxRunner
from ncnnpass.passes.measure.runners import NcnnRunner
from ncnnpass.passes.measure.tolerance import max_abs_error


@dataclass
class Stage:
    name: str
    seconds: float
    outputs: list[str] = field(default_factory=list)
    note: str = ""
    status: str = "done"  # "done" or "failed" (an optional stage that failed; the conversion went on)
    reason: str = ""  # why it failed


@dataclass
class ModelFigures:
    """How one ncnn model compares with onnxruntime on the same seeded input."""

    layers: int
    max_abs_default: float
    max_abs_fp32: float
    ms_per_run: float
    second_width: int | None = None  # the second input size's width, when the model is dynamic
    max_abs_default_second_width: float | None = None  # error at the second input size (default options)
    second_height: int | None = None  # the second input size's height (differs from the first for det)
    max_abs_fp32_second_width: float | None = None  # error at the second input size (fp32 options)


@dataclass
class ConvertResult:
    outdir: str
    onnx: str
    before: tuple[str, str]
    after: tuple[str, str]
    pipeline: str
    stages: list[Stage]
    figures: dict[str, ModelFigures]
    pass_report: str
    tolerance: float
    kind: str | None = None  # "rec" | "det" | "cls" | None
    model_name: str | None = None
    shape: tuple[int, int, int] = (3, 48, 320)  # C, H, W converted and verified at
    second_shape: tuple[int, int, int] | None = None  # the second size verified (dynamic models)
    warnings: list[str] = field(default_factory=list)
    # with a phone target: {"label": ..., "before": {option set: max abs}, "after": {...}} (see phone_rows)
    phone: dict | None = None
    # with real text: the task report (passes/toolchain/convert_task.task_rows), its "rows" in the table
    task: dict | None = None
    # the every-path check of a model with featmask bits (measure.paths.PathsReport.to_dict)
    paths: dict | None = None

    def table(self) -> str:
        b, a = self.figures["before"], self.figures["after"]
        c, h, w = self.shape
        rows = [
            (f"{self.kind or 'model'} {c}×{h}×{w}", "pnnx output", f"after {self.pipeline}"),
            ("layers", str(b.layers), str(a.layers)),
            ("max |ncnn - onnxruntime|, default options", f"{b.max_abs_default:.2e}", f"{a.max_abs_default:.2e}"),
            ("max |ncnn - onnxruntime|, fp32 options", f"{b.max_abs_fp32:.2e}", f"{a.max_abs_fp32:.2e}"),
            ("inference, 1 thread, median (ms)", f"{b.ms_per_run:.2f}", f"{a.ms_per_run:.2f}"),
        ]
        if self.second_shape is not None and a.max_abs_default_second_width is not None:
            _, h2, w2 = self.second_shape
            where = f"width {w2}" if h2 == h else f"{h2}×{w2}"
            rows.insert(4, (f"max |ncnn - onnxruntime| at {where}, default",
                            f"{b.max_abs_default_second_width:.2e}", f"{a.max_abs_default_second_width:.2e}"))
        if self.phone:
            for opt in self.phone["after"]:
                rows.insert(-1, (f"max |ncnn - onnxruntime| on {self.phone['label']}, {opt}",
                                 f"{self.phone['before'][opt]:.2e}", f"{self.phone['after'][opt]:.2e}"))
        if self.task and self.task.get("rows"):
            rows[-1:-1] = [tuple(r) for r in self.task["rows"]]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max([14] + [len(r[2]) for r in rows])
        return "\n".join([f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:>{w2}}" for r in rows] + self._notes())

    def _notes(self) -> list[str]:
        """Lines under the table: layers the GPU runs on the CPU, and the every-path check."""
        out = []
        fallback = (self.phone or {}).get("no_vulkan_implementation") or []
        if fallback:
            out.append(f"on {self.phone['label']}: {len(fallback)} layer(s) have no Vulkan implementation and run on "
                       "the CPU: " + ", ".join(f"{x['type']} {x['layer']}" for x in fallback[:8])
                       + (" ..." if len(fallback) > 8 else ""))
        if self.paths:
            for r in self.paths["paths"]:
                verdict = "ok" if r["broken"] is None else f"BROKEN: {r['broken']}"
                out.append(f"every path: {r['label']}: {verdict}")
            out += [f"every path: {p}: not run ({why})" for p, why in self.paths["skipped"].items()]
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d


def max_error(graph: Graph, ref: OnnxRunner, x: np.ndarray, options: str) -> float:
    """max |ncnn - onnxruntime| on the first output; ncnn drops the batch and may drop other 1-dims,
    so the arrays are compared element for element once their sizes agree."""
    expected = ref.run_list(x)[0]
    arr = next(iter(NcnnRunner(graph, target="x86", options=options, num_threads=None).run(x).values()))
    if arr.size != expected.size:
        raise VerificationError(f"ncnn output has {arr.size} values ({'×'.join(map(str, arr.shape))}), "
                                f"onnxruntime {expected.size} ({'×'.join(map(str, expected.shape))}) "
                                f"at input {'×'.join(map(str, x.shape))}")
    return max_abs_error([expected], [arr])


def measure(graph: Graph, onnx_path: Path, x: np.ndarray, runs: int = 20,
            x2: np.ndarray | None = None, budget: float = 3.0) -> ModelFigures:
    """Errors against onnxruntime under default and fp32 options (and at a second size ``x2``),
    and median 1-thread latency over ``runs`` runs (fewer, at least 3, when they would take more than
    ``budget`` seconds)."""
    from ncnnpass.ir import runtime

    sess = OnnxRunner.cached(onnx_path)
    errs = {opt: max_error(graph, sess, x, opt) for opt in ("default", "fp32")}
    net = runtime.load(graph, "default", num_threads=1)
    t = time.perf_counter()
    net.run(x)
    first = time.perf_counter() - t
    runs = max(3, min(runs, int(budget / max(first, 1e-6))))  # a detector at 640×640 takes ~0.3 s a run
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        net.run(x)
        times.append((time.perf_counter() - t) * 1000)
    fig = ModelFigures(len(graph.layers), errs["default"], errs["fp32"], statistics.median(times))
    if x2 is not None:
        fig.second_width, fig.second_height = int(x2.shape[-1]), int(x2.shape[-2])
        fig.max_abs_default_second_width = max_error(graph, sess, x2, "default")
        fig.max_abs_fp32_second_width = max_error(graph, sess, x2, "fp32")
    return fig
