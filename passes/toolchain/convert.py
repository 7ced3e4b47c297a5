"""One reproducible step from a Paddle inference model (or ONNX) to a verified ncnn model.

Stages: source (zoo name / Paddle dir via paddle2onnx / ONNX file) → onnxsim → pnnx → ncnnpass
pipeline → verification against onnxruntime → compare report. Every stage is timed and logged.

The model's kind (rec/det/cls), default input shape and dynamic dims come from
:func:`ncnnpass.passes.measure.model_info.read_model_info`. Dynamic dims (rec: W, det: H and W)
are given to pnnx twice (``inputshape``/``inputshape2``) and verified at both sizes.

Fatal stages (source, pnnx, pipeline, verification) raise an error naming the stage and what to try,
leaving the files of the earlier stages in OUTDIR. Optional stages never end a conversion: onnxsim
failing hands the unsimplified ONNX to pnnx (which simplifies itself), a compare report failing is
recorded as ``failed`` with its reason in ``convert.json`` and in :attr:`ConvertResult.warnings`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError, ToolError, VerificationError
from ncnnpass.ir.fileio import atomic_write
from ncnnpass.ir.runtime.external import log
from ncnnpass.passes.measure.inputs import seeded_inputs
from ncnnpass.passes.measure.task_data import TaskRequest, count_for

from .convert_figures import ConvertResult, ModelFigures, Stage, measure
from .convert_task import keep_facts, task_rows

__all__ = ["convert", "ConvertResult", "ModelFigures", "Stage", "measure", "second_shape"]

Progress = Callable[[str], None]
REWRITE_TOLERANCE = 1e-4  # how much worse than the converter's output ncnnpass may make the model

HINTS = {
    "source": "give an .onnx file, a Paddle inference directory (inference.pdmodel or inference.json with "
              "inference.pdiparams) or a model name",
    "pnnx": "try --static-width, another --shape, or a newer pnnx (pip install -U --no-deps pnnx)",
    "pipeline": "try --pipeline repair, or list the pipelines with: ncnnpass passes",
    "paths": "the pipeline's featmasks break an ncnn path: use passes that write the every-path form "
             "(keep-fp32 with safe=1), or --paths to name the paths the model must run on",
    "verify": "compare both models with onnxruntime: ncnnpass compare OUTDIR/model.onnx "
              "OUTDIR/model.ncnn.param OUTDIR/model.ncnn.bin (and OUTDIR/pnnx/model.ncnn.*); --tolerance raises "
              "how much worse than the converter's output a rewrite may make it",
}


def _stage(stages: list[Stage], name: str, progress: Progress, hint: str | None = None, optional: bool = False):
    """Time one stage. A fatal stage's error is re-raised naming the stage and ``hint``; an optional
    stage's error is recorded on the stage (``status="failed"``, ``reason``) and swallowed."""

    class _Timer:
        def __enter__(self):
            progress(f"[{len(stages) + 1}] {name} ...")
            self.t = time.perf_counter()
            self.stage = Stage(name, 0.0)
            return self.stage

        def __exit__(self, et, ev, tb):
            self.stage.seconds = time.perf_counter() - self.t
            stages.append(self.stage)
            if et is not None and not isinstance(ev, Exception):
                return False  # KeyboardInterrupt and friends
            failed = et is not None
            if failed:
                self.stage.status = "failed"
                self.stage.reason = f"{type(ev).__name__}: {ev}".strip().splitlines()[0][:300]
            status = "FAILED" if failed else "done"
            progress(f"    {status} in {self.stage.seconds:.2f}s {self.stage.note}".rstrip())
            log.info("stage %s %s in %.2fs", name, status, self.stage.seconds)
            if not failed:
                return False
            if optional:
                progress(f"    warning: {name} failed ({self.stage.reason}); the conversion goes on")
                return True
            text = str(ev).strip()
            msg = f"stage {name!r} failed: {text if isinstance(ev, NcnnpassError) else type(ev).__name__ + ': ' + text}"
            msg += f" (what to try: {hint})" if hint else ""
            cls = type(ev) if isinstance(ev, NcnnpassError) else ToolError
            try:
                new = cls(msg)
            except TypeError:
                new = ToolError(msg)
            raise new from ev

    return _Timer()


def _check_source(src: str) -> None:
    """Fail with one message before any stage runs when ``src`` names nothing convert can read."""
    from . import model_zoo

    if src not in model_zoo.ZOO and not Path(src).exists():
        raise NcnnpassError(f"source not found: {src} (an .onnx file, a Paddle inference directory, or one of "
                            f"{', '.join(model_zoo.ZOO)})")


def _source_to_onnx(src: str, outdir: Path, stage: Stage, shape: tuple[int, int, int] | None
                    ) -> tuple[Path, Path, Path | None]:
    """(``OUTDIR/model.onnx``, the source file or directory it came from, a zoo model's dictionary file). A
    Paddle model's conversion is verified at ``shape`` or its kind's default (a detector cannot run at a
    recognizer's 48×320)."""
    from . import model_zoo

    target = outdir / "model.onnx"
    dictionary = None
    if src in model_zoo.ZOO:
        path, dictionary = model_zoo.fetch(src)
        stage.note = f"({src}: {model_zoo.ZOO[src].package}=={model_zoo.ZOO[src].version})"
        src = str(path)
    p = Path(src)
    if p.is_dir():
        from ncnnpass.passes.measure.model_info import read_model_info

        from .paddle2onnx import paddle_to_onnx, verify_conversion

        c, h, w = shape or read_model_info(p).input_shape
        paddle_to_onnx(p, target, verify=False)
        verify_conversion(p, target, input_shape=(1, c, h, w))
        stage.note = stage.note or "(paddle2onnx)"
    elif p.is_file():
        if p.suffix.lower() != ".onnx":
            raise NcnnpassError(f"{src}: expected an .onnx file, a Paddle inference directory or one of "
                                f"{', '.join(model_zoo.ZOO)}")
        atomic_write(target, p.read_bytes())  # an interrupted convert leaves no half-written model.onnx
    else:
        raise NcnnpassError(f"{src}: not a file or a directory")
    return target, p, dictionary


def _unsupported_types(param: Path) -> list[str]:
    from ncnnpass.ir.schema import KNOWN_TYPES

    g = Graph.load(param)
    return sorted({ly.type for ly in g.layers if ly.type not in KNOWN_TYPES})


def _pnnx_with_fallback(sim: Path | None, original: Path, outdir: Path, shape: tuple[int, ...], fp16: bool,
                        shape2: tuple[int, ...] | None) -> tuple[Path, Path, str, bool]:
    """Run pnnx, preferring the onnxsim output; returns (param, bin, note, dynamic width).

    pnnx is tried on the onnxsim output first; if it fails there or leaves ops ncnn cannot run (seen on
    PP-OCRv3: onnxsim's fixed shapes stop pnnx from fusing attention, leaving 5-D ``Tensor.reshape``,
    and a static model cannot take pnnx's ``inputshape2``), on the unsimplified ONNX, which pnnx
    simplifies itself. With ``shape2`` (a second width) pnnx writes width-dependent dims as expressions
    so the model runs at any width; without it they are baked in."""
    from .pnnx import run_pnnx

    attempts = ([(sim, shape2)] if sim is not None else []) + [(original, shape2)] + \
        ([(original, None)] if shape2 is not None else [])
    reasons = []
    for src, s2 in attempts:
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
        if reasons:
            log.info("%s; used %s", "; ".join(reasons), what)
        note = f"({'; '.join(reasons)}; used {what})" if reasons else ""
        return param, bin, note, s2 is not None
    raise ToolError("pnnx could not convert the model: " + "; ".join(reasons))


def _second_size(d: int) -> int:
    """A second size for a dynamic dim: about half (3/4 when that is too small), a multiple of 32 when
    ``d`` is one (DB detectors' FPN needs it); never ``d`` itself."""
    step = 32 if d % 32 == 0 else 1
    for f in (2, 4 / 3):
        d2 = int(d / f) // step * step
        if d2 >= max(step, 16) and d2 != d:
            return d2
    return d + 2 * step if step > 1 else d * 2


def second_shape(shape: tuple[int, int, int], dynamic: tuple[bool, bool]) -> tuple[int, int, int] | None:
    """The second C,H,W to give pnnx (``inputshape2``) and verify at: each dynamic dim changed."""
    c, h, w = shape
    if not any(dynamic):
        return None
    h2 = h if not dynamic[0] else (h * 3 // 4) // 32 * 32 if h % 32 == 0 and h >= 128 else _second_size(h)
    return (c, h2, _second_size(w) if dynamic[1] else w)


def _simplify(onnx_path: Path, out: Path, stage: Stage, shape: tuple[int, ...], dynamic: bool) -> Path | None:
    """The optional onnxsim stage: the pnnx-ready ONNX simplified, or None (pnnx then simplifies itself).

    A dynamic conversion keeps the input dims open (a fixed-shape model cannot take pnnx's inputshape2)."""
    from .onnxsim_step import simplify_onnx
    from .resize_roi import prepare_for_pnnx

    prep, cleared = prepare_for_pnnx(onnx_path, out / "model.prep.onnx")
    notes = [f"cleared the unused roi of {cleared} Resize nodes for pnnx"] if cleared else []
    sim = out / "model.sim.onnx"
    try:
        simplify_onnx(prep, sim, input_shape=None if dynamic else shape)
    except NcnnpassError as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        stage.note = "(" + "; ".join([*notes, f"onnxsim failed, pnnx gets the unsimplified ONNX: {reason}"]) + ")"
        stage.status, stage.reason = "failed", reason
        log.warning("onnxsim failed (%s); pnnx gets the unsimplified ONNX", reason)
        return None
    stage.outputs = [str(sim)]
    stage.note = f"({'; '.join(notes)})" if notes else ""
    return sim


def _write_report(out: Path, onnx_path: Path, param: Path, bin: Path, shape: tuple[int, int, int],
                  seed: int, stage: Stage) -> None:
    from ncnnpass.passes.compare.core import compare_models
    from ncnnpass.passes.compare.output import plot_png, write_json

    rep_json, rep_png = out / "compare.json", out / "compare.png"
    cr = compare_models(str(onnx_path), str(param), str(bin), shape=shape, seed=seed)
    write_json(cr, str(rep_json))
    stage.outputs = [str(rep_json)]
    plot_png(cr, str(rep_png))
    stage.outputs.append(str(rep_png))


def _phone_figures(before: Graph, after: Graph, onnx_path: Path, x: np.ndarray, target: str) -> dict:
    """max |ncnn - onnxruntime| of both models on the emulated phone or on the GPU (lavapipe), default and fp32
    options; on the GPU also the layers with no Vulkan implementation (``compare --target vulkan`` splits the
    GPU's loss further: each option set is a net load that compiles its shaders, seconds each)."""
    from ncnnpass.passes.compare.phone_rows import phone_rows

    gpu = target == "vulkan"
    options = ("default", "fp32")
    rows = {k: phone_rows(g, onnx_path, x, target=target, options=options)
            for k, g in (("before", before), ("after", after))}
    out = {"target": rows["after"]["target"], "label": rows["after"]["label"],
           **{k: {opt: r["max_abs"] for opt, r in v["rows"].items()} for k, v in rows.items()}}
    if gpu:
        out["no_vulkan_implementation"] = rows["after"].get("no_vulkan_implementation", [])
    return out


def _rows_stage(target: str) -> str:
    return "GPU rows (vulkan, lavapipe)" if target == "vulkan" else f"phone rows ({target}, emulated)"


def _every_path_stage(stages: list[Stage], after: Graph, shape: tuple[int, int, int], seed: int, paths,
                      progress: Progress, result: ConvertResult) -> None:
    """A written model that carries featmask bits must run correctly on every ncnn path (x86, and the ARM CPU
    and the Vulkan GPU where provisioned): :func:`ncnnpass.passes.measure.paths.check_every_path`. Fatal like
    the verification: the conversion fails naming the path (the files stay in OUTDIR for inspection)."""
    from ncnnpass.ir.featmask import carries_featmask
    from ncnnpass.passes.measure.paths import check_every_path

    if not carries_featmask(after):
        return
    with _stage(stages, "verify on every ncnn path", progress, HINTS["paths"]) as st:
        report = check_every_path(after, shape, seed=seed, paths=paths, progress=progress)
        result.paths = report.to_dict()
        st.note = "(" + "; ".join(ln.strip() for ln in report.lines()[1:]) + ")"
        if report.refusal:
            raise VerificationError(f"model.ncnn.param is not right on every path: {report.refusal}")


def _judge(figures: dict[str, ModelFigures], before: Graph, onnx_path: Path, x: np.ndarray, tolerance: float,
           fp16_weights: bool, kind: str | None, shape2: tuple[int, int, int] | None):
    """The gate (:mod:`.convert_gate`) on the measured figures; task-level answers only when needed."""
    from .convert_gate import CONVERTER_BOUND, judge, task_changes

    errors = {}
    for k, f in figures.items():
        errors[k] = {"fp32": f.max_abs_fp32, "default": f.max_abs_default}
        if shape2 is not None and f.max_abs_fp32_second_width is not None:
            errors[k][f"fp32 at {shape2[1]}x{shape2[2]}"] = f.max_abs_fp32_second_width
            errors[k][f"default at {shape2[1]}x{shape2[2]}"] = f.max_abs_default_second_width
    task = None
    if max(v for n, v in errors["before"].items() if n.startswith("fp32")) > CONVERTER_BOUND / 2:
        from ncnnpass.passes.measure.onnx_runner import OnnxRunner
        from ncnnpass.passes.measure.runners import NcnnRunner

        ref = OnnxRunner.cached(onnx_path).run_list(x)[0]
        got = next(iter(NcnnRunner(before, target="x86", options="fp32", num_threads=None).run(x).values()))
        task = task_changes(kind, ref, got)
    return judge(errors, tolerance=tolerance, fp16_weights=fp16_weights, kind=kind, task=task)


def convert(src: str, outdir: str | os.PathLike, *, shape: tuple[int, int, int] | None = None,
            pipeline: str = "repair", fp16_weights: bool = False, tolerance: float | None = None,
            report: bool = True, seed: int = 0, dynamic_width: bool = True, phone_target: str | None = None,
            verify_each: bool | None = None, task: TaskRequest | None = None,
            progress: Progress = lambda s: None, paths: str | None = "available") -> ConvertResult:
    """Run the whole chain; see the module docstring. ``tolerance``: how much worse than the converter's
    output (against onnxruntime, same options) the rewritten model may be (default 1e-4); the converter's
    own error is reported and fatal only past :data:`.convert_gate.CONVERTER_BOUND` with task-level
    evidence (see :mod:`.convert_gate`).

    ``shape``: C,H,W to convert and verify at; default per model kind (rec 3×48×320, cls 3×48×192,
    det 3×640×640, or the ``inference.yml`` image shape). ``dynamic_width``: when the ONNX input has
    dynamic dims the model kind varies at inference (rec: W, det: H and W), ask pnnx for a model that
    runs at any size and verify it at a second size too; False bakes ``shape`` in. ``phone_target``
    (``"arm"``, ``"arm-a57"``, ``"vulkan"``): also measure both models on the emulated phone or on the GPU
    (lavapipe) under default and fp32 options (an optional stage: a failure there is a warning). ``paths``: a
    pipeline that writes featmask bits must leave a model that runs correctly on each of these ncnn paths
    (:func:`ncnnpass.passes.measure.paths.resolve_paths`), else the conversion fails. ``verify_each``: the IR
    verifier after every pass of the pipeline (see :func:`ncnnpass.passes.apply_passes`). ``task``: also
    measure both models against onnxruntime on real text (the built-in held-out lines or pages, or
    ``task.images``) with the kind's task metric (an optional stage; :mod:`.convert_task`). A bad pipeline or
    pass spec fails before any stage runs."""
    from ncnnpass.passes import apply_passes, resolve_passes
    from ncnnpass.passes.measure.model_info import read_model_info

    _check_source(src)
    if task is not None:
        task.check()
    resolve_passes(pipeline)  # a bad spec fails now, not after minutes of conversion
    if tolerance is None:
        tolerance = REWRITE_TOLERANCE
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    stages: list[Stage] = []
    warnings: list[str] = []
    with _stage(stages, "source → ONNX", progress, HINTS["source"]) as st:
        onnx_path, source, dictionary = _source_to_onnx(src, out, st, shape)
        info = read_model_info(source, onnx_path)
        keep_facts(source, out, info, dictionary)
        st.outputs = [str(onnx_path)]
        st.note = f"{st.note} ({info.describe()})".strip()
        if task is not None:
            count_for(info.kind, task.lines, task.pages)  # --lines for a detector fails now
    c, h, w = shape if shape is not None else info.input_shape
    shape2 = second_shape((c, h, w), info.dynamic) if dynamic_width else None
    with _stage(stages, "onnxsim", progress, optional=True) as st:
        sim = _simplify(onnx_path, out, st, (1, c, h, w), shape2 is not None)
    if st.status == "failed":
        warnings.append(f"onnxsim failed ({st.reason}); pnnx converted the unsimplified ONNX")
    prep = out / "model.prep.onnx"
    pnnx_src = prep if prep.is_file() else onnx_path
    with _stage(stages, f"pnnx (fp16={int(fp16_weights)})", progress, HINTS["pnnx"]) as st:
        before_param, before_bin, st.note, dynamic = _pnnx_with_fallback(
            sim, pnnx_src, out / "pnnx", (1, c, h, w), fp16_weights, (1, *shape2) if shape2 else None)
        if not dynamic:
            shape2 = None
        else:
            what = "width" if shape2[1] == h else "size"
            st.note = (st.note + f" (runs at any {what}; checked at {h}×{w} and {shape2[1]}×{shape2[2]})").strip()
        st.outputs = [str(before_param), str(before_bin)]
    with _stage(stages, f"ncnnpass pipeline {pipeline!r}", progress, HINTS["pipeline"]) as st:
        before = Graph.load(before_param, before_bin)
        after = before.copy()
        rep = apply_passes(after, pipeline, input_shape=(c, h, w), verify_each=verify_each)
        after_param, after_bin = out / "model.ncnn.param", out / "model.ncnn.bin"
        after.save(after_param, after_bin)
        st.outputs = [str(after_param), str(after_bin)]
        st.note = f"({len(before.layers)} → {len(after.layers)} layers)"
    xs = seeded_inputs({"x": (1, c, h, w), **({"x2": (1, *shape2)} if shape2 else {})}, seed)
    x, x2 = xs["x"], xs.get("x2")
    with _stage(stages, "verify against onnxruntime", progress, HINTS["verify"]) as st:
        figures = {"before": measure(before, onnx_path, x, x2=x2), "after": measure(after, onnx_path, x, x2=x2)}
        gate = _judge(figures, before, onnx_path, x, tolerance, fp16_weights, info.kind, shape2)
        a = figures["after"]
        st.note = f"(after: {a.max_abs_default:.2e} default, {a.max_abs_fp32:.2e} fp32; {'; '.join(gate.notes[-1:])})"
        if gate.failure:
            raise VerificationError(gate.failure)
        warnings.extend(gate.warnings)
    result = ConvertResult(str(out), str(onnx_path), (str(before_param), str(before_bin)),
                           (str(after_param), str(after_bin)), pipeline, stages, figures, str(rep), tolerance,
                           kind=info.kind, model_name=info.name, shape=(c, h, w), second_shape=shape2,
                           warnings=warnings)
    _every_path_stage(stages, after, (c, h, w), seed, paths, progress, result)
    if phone_target:
        with _stage(stages, _rows_stage(phone_target), progress, optional=True) as st:
            result.phone = _phone_figures(before, after, onnx_path, x, phone_target)
            st.note = f"(after: {result.phone['after']['default']:.2e} default on {result.phone['label']})"
        if st.status == "failed":
            warnings.append(f"the {_rows_stage(phone_target).split(' (')[0]} failed ({st.reason}); the verified model "
                            "is written")
    if task is not None and info.kind in ("rec", "det", "cls"):
        with _stage(stages, "real text against onnxruntime", progress, optional=True) as st:
            result.task, found = task_rows(before, after, onnx_path, info, task, pipeline=pipeline,
                                           model_dir=out if (out / "inference.yml").is_file() else None,
                                           static_width=w if shape2 is None else None, progress=progress)
            warnings.extend(found)
            rows = result.task["rows"]
            if rows:
                st.note = f"(after: {rows[0][0].split(' vs ')[0]} {rows[0][2]})"
        if st.status == "failed":
            warnings.append(f"the real-text measurement failed ({st.reason}); the verified model is written")
    if report:
        with _stage(stages, "compare report", progress, optional=True) as st:
            _write_report(out, onnx_path, after_param, after_bin, (c, h, w), seed, st)
        if st.status == "failed":
            warnings.append(f"the compare report failed ({st.reason}); the verified model is written")
    atomic_write(out / "convert.json", json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    return result
