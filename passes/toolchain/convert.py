"""One reproducible step from a Paddle inference model (or ONNX) to a verified ncnn model.

Stages: source (zoo name / Paddle dir via paddle2onnx / ONNX file) → onnxsim → pnnx → ncnnpass
pipeline → verification against onnxruntime → compare report. Every stage is timed and logged; a
failing stage raises with its own message and leaves the files of the earlier stages in OUTDIR.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError, ToolError, VerificationError
from ncnnpass.ir.fileio import atomic_write

from . import log

Progress = Callable[[str], None]


@dataclass
class Stage:
    name: str
    seconds: float
    outputs: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class ModelFigures:
    """How one ncnn model compares with onnxruntime on the same seeded input."""

    layers: int
    max_abs_default: float
    max_abs_fp32: float
    ms_per_run: float
    second_width: int | None = None  # a width other than the conversion width, when the model is dynamic
    max_abs_default_second_width: float | None = None


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

    def table(self) -> str:
        b, a = self.figures["before"], self.figures["after"]
        rows = [
            ("", "pnnx output", f"after {self.pipeline}"),
            ("layers", str(b.layers), str(a.layers)),
            ("max |ncnn - onnxruntime|, default options", f"{b.max_abs_default:.2e}", f"{a.max_abs_default:.2e}"),
            ("max |ncnn - onnxruntime|, fp32 options", f"{b.max_abs_fp32:.2e}", f"{a.max_abs_fp32:.2e}"),
            ("inference, 1 thread, median (ms)", f"{b.ms_per_run:.2f}", f"{a.ms_per_run:.2f}"),
        ]
        if a.second_width is not None:
            rows.insert(4, (f"max |ncnn - onnxruntime| at width {a.second_width}, default",
                            f"{b.max_abs_default_second_width:.2e}", f"{a.max_abs_default_second_width:.2e}"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        return "\n".join(f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:>14}" for r in rows)

    def to_json(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d


def _stage(stages: list[Stage], name: str, progress: Progress):
    class _Timer:
        def __enter__(self):
            progress(f"[{len(stages) + 1}] {name} ...")
            self.t = time.perf_counter()
            self.stage = Stage(name, 0.0)
            return self.stage

        def __exit__(self, et, ev, tb):
            self.stage.seconds = time.perf_counter() - self.t
            stages.append(self.stage)
            status = "done" if et is None else "FAILED"
            progress(f"    {status} in {self.stage.seconds:.2f}s {self.stage.note}".rstrip())
            log.info("stage %s %s in %.2fs", name, status, self.stage.seconds)
            if et is not None and not isinstance(ev, NcnnpassError) and isinstance(ev, Exception):
                raise ToolError(f"stage {name!r} failed: {type(ev).__name__}: {ev}") from ev
            return False

    return _Timer()


def _check_source(src: str) -> None:
    """Fail with one message before any stage runs when ``src`` names nothing convert can read."""
    from . import model_zoo

    if src not in model_zoo.ZOO and not Path(src).exists():
        raise NcnnpassError(f"source not found: {src} (an .onnx file, a Paddle inference directory, or one of "
                            f"{', '.join(model_zoo.ZOO)})")


def _source_to_onnx(src: str, outdir: Path, stage: Stage) -> Path:
    from . import model_zoo

    target = outdir / "model.onnx"
    if src in model_zoo.ZOO:
        path, _ = model_zoo.fetch(src)
        stage.note = f"({src}: {model_zoo.ZOO[src].package}=={model_zoo.ZOO[src].version})"
        src = str(path)
    p = Path(src)
    if p.is_dir():
        from .paddle2onnx import paddle_to_onnx

        paddle_to_onnx(p, target)
        stage.note = stage.note or "(paddle2onnx)"
    elif p.is_file():
        if p.suffix.lower() != ".onnx":
            raise NcnnpassError(f"{src}: expected an .onnx file, a Paddle inference directory or one of "
                                f"{', '.join(model_zoo.ZOO)}")
        shutil.copyfile(p, target)
    else:
        raise NcnnpassError(f"{src}: not a file or a directory")
    return target


def _unsupported_types(param: Path) -> list[str]:
    from ncnnpass.ir.schema import KNOWN_TYPES

    g = Graph.load(param)
    return sorted({ly.type for ly in g.layers if ly.type not in KNOWN_TYPES})


def _width_is_dynamic(onnx_path: Path) -> bool:
    """True when the ONNX model's (first) input has a symbolic or unknown last dimension (width)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    return bool(dims) and (bool(dims[-1].dim_param) or dims[-1].dim_value <= 0)


def _pnnx_with_fallback(sim: Path, original: Path, outdir: Path, shape: tuple[int, ...], fp16: bool,
                        shape2: tuple[int, ...] | None) -> tuple[Path, Path, str, bool]:
    """Run pnnx, preferring the onnxsim output; returns (param, bin, note, dynamic width).

    pnnx is tried on the onnxsim output first; if it fails there or leaves ops ncnn cannot run (seen on
    PP-OCRv3: onnxsim's fixed shapes stop pnnx from fusing attention, leaving 5-D ``Tensor.reshape``,
    and a static model cannot take pnnx's ``inputshape2``), on the unsimplified ONNX, which pnnx
    simplifies itself. With ``shape2`` (a second width) pnnx writes width-dependent dims as expressions
    so the model runs at any width; without it they are baked in."""
    from .pnnx import run_pnnx

    attempts = [(sim, shape2), (original, shape2)] + ([(original, None)] if shape2 is not None else [])
    reasons = []
    for k, (src, s2) in enumerate(attempts):
        for stale in outdir.glob("*.ncnn.*"):
            stale.unlink()
        what = ("the onnxsim output" if src == sim else "the unsimplified ONNX") + \
            (" with a second width" if s2 is not None else " at one width")
        try:
            param, bin = run_pnnx(src, outdir, input_shape=shape, fp16=fp16, input_shape2=s2)
        except ToolError as exc:
            reasons.append(f"pnnx failed on {what}: {str(exc).strip().splitlines()[-1][:160]}")
            continue
        bad = _unsupported_types(param)
        if bad:
            reasons.append(f"pnnx left {', '.join(bad)} in {what}")
            continue
        if k:
            log.info("%s; used %s", "; ".join(reasons), what)
        note = f"({'; '.join(reasons)}; used {what})" if k else ""
        return param, bin, note, s2 is not None
    raise ToolError("pnnx could not convert the model: " + "; ".join(reasons))


def _error(graph: Graph, sess, x: np.ndarray, options: str) -> float:
    from ncnnpass.ir import runtime

    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    ref = ref[0] if ref.shape[0] == 1 else ref
    arr = next(iter(runtime.run(graph, x, options=options).values()))
    if arr.size != ref.size:
        raise VerificationError(f"ncnn output has {arr.size} values, onnxruntime {ref.size} "
                                f"(input {'x'.join(map(str, x.shape))})")
    return float(np.abs(arr.reshape(ref.shape) - ref).max())


def measure(graph: Graph, onnx_path: Path, x: np.ndarray, runs: int = 20,
            x2: np.ndarray | None = None) -> ModelFigures:
    """Errors against onnxruntime under default and fp32 options (and at a second width ``x2``),
    and median 1-thread latency."""
    import onnxruntime as ort

    from ncnnpass.ir import runtime

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    errs = {opt: _error(graph, sess, x, opt) for opt in ("default", "fp32")}
    net = runtime.load(graph, "default", num_threads=1)
    net.run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        net.run(x)
        times.append((time.perf_counter() - t) * 1000)
    fig = ModelFigures(len(graph.layers), errs["default"], errs["fp32"], statistics.median(times))
    if x2 is not None:
        fig.second_width = int(x2.shape[-1])
        fig.max_abs_default_second_width = _error(graph, sess, x2, "default")
    return fig


def convert(src: str, outdir: str | os.PathLike, *, shape: tuple[int, int, int] = (3, 48, 320),
            pipeline: str = "repair", fp16_weights: bool = False, tolerance: float = 1e-4,
            report: bool = True, seed: int = 0, dynamic_width: bool = True,
            progress: Progress = lambda s: None) -> ConvertResult:
    """Run the whole chain; see the module docstring. ``tolerance`` bounds the fp32-options error.

    ``dynamic_width``: when the ONNX input's width is dynamic (PaddleOCR recognition: N×3×48×W), ask
    pnnx for a model that runs at any width and verify it at a second width too."""
    from ncnnpass.passes import apply_passes

    from .onnxsim_step import simplify_onnx

    _check_source(src)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    stages: list[Stage] = []
    c, h, w = shape
    with _stage(stages, "source → ONNX", progress) as st:
        onnx_path = _source_to_onnx(src, out, st)
        st.outputs = [str(onnx_path)]
    with _stage(stages, "onnxsim", progress) as st:
        sim = out / "model.sim.onnx"
        simplify_onnx(onnx_path, sim, input_shape=(1, c, h, w))
        st.outputs = [str(sim)]
    with _stage(stages, f"pnnx (fp16={int(fp16_weights)})", progress) as st:
        w2 = w // 2 if w >= 32 else w * 2
        shape2 = (1, c, h, w2) if dynamic_width and _width_is_dynamic(onnx_path) else None
        before_param, before_bin, st.note, dynamic = _pnnx_with_fallback(
            sim, onnx_path, out / "pnnx", (1, c, h, w), fp16_weights, shape2)
        st.note = (st.note + f" (runs at any width; checked at {w} and {w2})" if dynamic else st.note).strip()
        st.outputs = [str(before_param), str(before_bin)]
    with _stage(stages, f"ncnnpass pipeline {pipeline!r}", progress) as st:
        before = Graph.load(before_param, before_bin)
        after = before.copy()
        rep = apply_passes(after, pipeline, input_shape=shape)
        after_param, after_bin = out / "model.ncnn.param", out / "model.ncnn.bin"
        after.save(after_param, after_bin)
        st.outputs = [str(after_param), str(after_bin)]
        st.note = f"({len(before.layers)} → {len(after.layers)} layers)"
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (1, c, h, w)).astype(np.float32)
    x2 = rng.uniform(-1, 1, (1, c, h, w2)).astype(np.float32) if dynamic else None
    with _stage(stages, "verify against onnxruntime", progress) as st:
        figures = {"before": measure(before, onnx_path, x, x2=x2), "after": measure(after, onnx_path, x, x2=x2)}
        st.note = f"(after: {figures['after'].max_abs_default:.2e} default, {figures['after'].max_abs_fp32:.2e} fp32)"
        if figures["after"].max_abs_fp32 > tolerance:
            raise VerificationError(f"the converted model differs from onnxruntime by "
                                    f"{figures['after'].max_abs_fp32:.2e} > {tolerance:g} under fp32 options")
        if dynamic and figures["after"].max_abs_default_second_width > max(tolerance, 10 * figures["after"].max_abs_default):
            raise VerificationError(f"the converted model differs from onnxruntime by "
                                    f"{figures['after'].max_abs_default_second_width:.2e} at width {w2}")
    result = ConvertResult(str(out), str(onnx_path), (str(before_param), str(before_bin)),
                           (str(after_param), str(after_bin)), pipeline, stages, figures, str(rep), tolerance)
    if report:
        with _stage(stages, "compare report", progress) as st:
            from ncnnpass.passes.compare.core import compare_models
            from ncnnpass.passes.compare.output import plot_png, write_json

            rep_json, rep_png = out / "compare.json", out / "compare.png"
            cr = compare_models(str(onnx_path), str(after_param), str(after_bin), shape=shape, seed=seed)
            write_json(cr, str(rep_json))
            plot_png(cr, str(rep_png))
            st.outputs = [str(rep_json), str(rep_png)]
    atomic_write(out / "convert.json", json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    return result
