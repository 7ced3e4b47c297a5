"""Task evaluation: what users see change between a reference and candidate runs of one model.

One API for every client (``compare``, ``run --verify``, ``convert``, ``ocr``, the phone repair search):

>>> task = task_data(info)                                     # built-in held-out lines/pages (task_data.py)
>>> report = evaluate(task, [Side.onnxruntime("rec.onnx"), Side.ncnn(graph, "arm")])
>>> print("\\n".join(report.render())); report.failures(TaskCriteria())

- :class:`Side`: onnxruntime on an ONNX file (:class:`.onnx_runner.OnnxRunner`, warm and cached) or an ncnn
  graph on a target under an option preset. x86 runs in this process; worker targets (``isolated``, the
  emulated ``arm``) run one job per sample on a :class:`ncnnpass.ir.runtime.TargetPool` (``workers``
  emulated phones in parallel; pass ``pools`` to reuse warm ones across calls).
- :func:`run_sides`: every side's first output for every prepared input (each at its own size), with the
  seconds it took and, for an ncnn side, the error that stopped it (a crash on the phone is a result).
- :func:`evaluate`: the kind's task metric (:mod:`.metrics`) for each (reference, candidate) pair;
  a :class:`TaskReport` of plain data with its one text rendering (:meth:`TaskReport.render`) and JSON form.
- :class:`TaskCriteria`: when a candidate counts as "the same for users" (strings identical and no
  drop_score crossing for rec, det F >= 0.99, no cls label flip, no NaN/Inf); :func:`headline` gives the
  few numbers tables show.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError, RuntimeBridgeError
from ncnnpass.ir.runtime.options import Options
from ncnnpass.ir.runtime.targets import Job, TargetPool, describe_target, normalize_target

from .metrics import MetricResult, metric_for
from .model_input import ModelInput
from .onnx_runner import OnnxRunner
from .runners import NcnnRunner
from .task_data import TaskData

__all__ = ["Side", "SideRun", "PairResult", "TaskReport", "TaskCriteria", "run_sides", "evaluate", "headline", "rewrite_check"]

Progress = Callable[[str], None] | None


@dataclass
class Side:
    """One way to run the model: ``onnx`` (a file, run by onnxruntime) or ``graph`` on ``target`` under
    ``options`` (an ncnn option preset name or field dict)."""

    label: str
    onnx: str | None = None
    graph: Graph | None = None
    target: str = "x86"
    options: Options = "default"
    num_threads: int | None = 1

    @classmethod
    def onnxruntime(cls, path: str | os.PathLike, label: str = "onnxruntime") -> Side:
        return cls(label, onnx=os.fspath(path))

    @classmethod
    def ncnn(cls, graph: Graph, target: str | None = "x86", options: Options = "default",
             label: str | None = None) -> Side:
        where = normalize_target(target)
        opts = options if isinstance(options, str) else "custom"
        return cls(label or f"ncnn {where}" + ("" if opts == "default" else f" {opts}"), graph=graph, target=where,
                   options=options)

    @property
    def where(self) -> str:
        if self.onnx is not None:
            return "onnxruntime"
        opts = self.options if isinstance(self.options, str) else "custom"
        return f"ncnn on {describe_target(self.target)}, {opts} options"


@dataclass
class SideRun:
    """A side's first output per input (None where it failed), the time it took and its error if any."""

    label: str
    where: str
    outputs: list[np.ndarray | None]
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "where": self.where, "seconds": self.seconds, "error": self.error}


def _onnx_outputs(side: Side, inputs: Sequence[ModelInput]) -> list[np.ndarray | None]:
    runner = OnnxRunner.cached(side.onnx, num_threads=1)  # type: ignore[arg-type]
    return [runner.run_list(i.tensor)[0] for i in inputs]


def _ncnn_x86(side: Side, inputs: Sequence[ModelInput]) -> list[np.ndarray | None]:
    g = side.graph
    assert g is not None
    out = g.outputs[0]
    runner = NcnnRunner(g, target="x86", options=side.options, num_threads=side.num_threads)
    return [r[out] for r in runner.run_many([i.tensor[0] for i in inputs], [out])]


def _ncnn_pool(side: Side, inputs: Sequence[ModelInput], pool: TargetPool) -> tuple[list[np.ndarray | None], str | None]:
    g = side.graph
    assert g is not None
    out = g.outputs[0]
    jobs = [Job(g, [i.tensor[0]], [out], side.options, side.num_threads) for i in inputs]
    results = pool.run(jobs)
    outs: list[np.ndarray | None] = [r.outputs[0][out] if r.ok else None for r in results]
    errors = [f"sample {k} ({inputs[k].sample.provenance}): {r.error}" for k, r in enumerate(results) if not r.ok]
    error = None
    if errors:
        error = f"{len(errors)} of {len(results)} samples failed; first: {errors[0]}"
    return outs, error


def run_sides(sides: Sequence[Side], inputs: Sequence[ModelInput], *, workers: int = 2,
              pools: Mapping[str, TargetPool] | None = None, progress: Progress = None) -> list[SideRun]:
    """Run every side on every input (see the module docstring). onnxruntime errors raise (the reference
    must run); an ncnn side's failure is recorded on its :class:`SideRun`."""
    say = progress or (lambda _m: None)
    made: dict[str, TargetPool] = {}
    runs = []
    try:
        for side in sides:
            t0 = time.perf_counter()
            error = None
            say(f"task metrics: {side.label} ({side.where}) on {len(inputs)} inputs")
            if side.onnx is not None:
                outs = _onnx_outputs(side, inputs)
            elif side.graph is None:
                raise NcnnpassError(f"side {side.label!r} has neither an ONNX file nor an ncnn graph")
            elif normalize_target(side.target) == "x86":
                try:
                    outs = _ncnn_x86(side, inputs)
                except RuntimeBridgeError as exc:
                    outs, error = [None] * len(inputs), str(exc)
            else:
                target = normalize_target(side.target)
                pool = (pools or {}).get(target) or made.get(target)
                if pool is None:
                    pool = made[target] = TargetPool(target, max(1, min(workers, len(inputs))))
                outs, error = _ncnn_pool(side, inputs, pool)
            runs.append(SideRun(side.label, side.where, outs, time.perf_counter() - t0, error))
    finally:
        for pool in made.values():
            pool.close()
    return runs


@dataclass
class PairResult:
    """A candidate against a reference: the task metric's result, or why there is none."""

    reference: str
    candidate: str
    result: MetricResult | None
    error: str | None = None
    nonfinite: int = 0  #: samples where the candidate returned NaN/Inf

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "candidate": self.candidate, "error": self.error,
                               "nonfinite_samples": self.nonfinite}
        if self.result is not None:
            out["metric"] = self.result.to_dict(per_sample=per_sample)
            out["headline"] = dict(headline(self.result))
        return out


@dataclass(frozen=True)
class TaskCriteria:
    """When a candidate is "the same for users" as its reference (the ``run --verify`` gate; the phone
    repair search's acceptance test): every rec string identical and at most ``drop_score_crossings``
    lines crossing PaddleOCR's drop_score, det F at least ``min_det_f``, no cls label flip, no NaN/Inf;
    ``max_conf_change`` (rec, optional) bounds the line confidence change."""

    min_det_f: float = 0.99
    drop_score_crossings: int = 0
    max_conf_change: float | None = None

    def failures(self, pair: PairResult) -> list[str]:
        """Why ``pair`` misses the criteria ([] when it meets them)."""
        if pair.error is not None or pair.result is None:
            return [f"{pair.candidate} did not run: {pair.error}"]
        r, n = pair.result, pair.result.numbers
        out = []
        if pair.nonfinite:
            out.append(f"{pair.nonfinite} samples return NaN/Inf")
        first = r.differing()[:1]
        example = f" (first: {first[0].get('describe', first[0]['sample'])})" if first else ""
        if r.kind == "rec":
            changed = n["lines"] - n["identical"]
            if changed:
                out.append(f"{changed} of {n['lines']} strings change{example}")
            if n["drop_score_crossings"] > self.drop_score_crossings:
                out.append(f"{n['drop_score_crossings']} lines cross drop_score")
            if self.max_conf_change is not None and n["max_conf_change"] > self.max_conf_change:
                out.append(f"confidence changes by {n['max_conf_change']:.2e} > {self.max_conf_change:g}")
        elif r.kind == "det":
            if n["f"] < self.min_det_f:
                out.append(f"det F {n['f']:.4f} < {self.min_det_f:g} ({n['candidate_boxes']} boxes against "
                           f"{n['reference_boxes']}){example}")
        elif r.kind == "cls":
            flips = n["lines"] - n["agreement"]
            if flips:
                out.append(f"{flips} of {n['lines']} labels flip{example}")
        return out


def headline(result: MetricResult) -> list[tuple[str, str]]:
    """The few numbers a table shows for a result: rec strings identical, confidence change, drop_score
    crossings; det F and flipping pixels; cls agreement."""
    n = result.numbers
    if result.kind == "rec":
        return [("strings identical", f"{n['identical']}/{n['lines']} ({n['identical_share']:.1%})"),
                ("confidence change, max", f"{n['max_conf_change']:.1e}"),
                ("drop_score crossings", str(n["drop_score_crossings"]))]
    if result.kind == "det":
        return [("det F (boxes at IoU 0.5)", f"{n['f']:.4f} ({n['pages']} pages)"),
                ("pixels flipping at 0.3", str(n["flipped_pixels"]))]
    return [("labels agree", f"{n['agreement']}/{n['lines']} ({n['agreement_share']:.1%})"),
            ("rotation decisions that flip", str(n["rotation_flips"]))]


@dataclass
class TaskReport:
    """What :func:`evaluate` found: the data, each side's run, each pair's metric result, notes."""

    task: TaskData
    sides: list[SideRun]
    pairs: list[PairResult]
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.task.kind

    def pair(self, candidate: str, reference: str | None = None) -> PairResult:
        for p in self.pairs:
            if p.candidate == candidate and (reference is None or p.reference == reference):
                return p
        raise KeyError(f"no pair with candidate {candidate!r}" + (f" and reference {reference!r}" if reference else ""))

    def failures(self, criteria: TaskCriteria, candidate: str, reference: str | None = None) -> list[str]:
        return criteria.failures(self.pair(candidate, reference))

    def render(self, examples: int = 3) -> list[str]:
        """The text report: the data, then per pair its metric summary and the first samples that differ."""
        out = [f"what users see ({self.kind}, PaddleOCR's pre- and post-processing):"]
        out += [f"  {line}" for line in self.task.describe()]
        seconds = {s.label: s for s in self.sides}
        for p in self.pairs:
            run = seconds.get(p.candidate)
            where = f"{run.where}, {run.seconds:.1f}s" if run is not None else ""
            out.append(f"  {p.candidate} vs {p.reference}" + (f" ({where})" if where else "") + ":")
            if p.result is None:
                out.append(f"    failed: {p.error}")
                continue
            out += [f"    {line}" for line in p.result.render(examples)]
            if p.error:
                out.append(f"    note: {p.error}")
            if p.nonfinite:
                out.append(f"    {p.nonfinite} samples return NaN/Inf")
        out += [f"  {n}" for n in self.notes]
        return out

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        return {"kind": self.kind, "data": self.task.to_dict(), "sides": [s.to_dict() for s in self.sides],
                "pairs": [p.to_dict(per_sample) for p in self.pairs], "notes": list(self.notes)}


def _aligned(ref: np.ndarray, got: np.ndarray, inp: ModelInput, label: str) -> np.ndarray:
    if got.size != ref.size:
        raise NcnnpassError(
            f"{label}: ncnn output has {got.size} values, the reference's {ref.size} "
            f"({'x'.join(map(str, ref.shape))}) on {inp.sample.provenance} (input {'x'.join(map(str, inp.shape))}): "
            "was the .param converted for one input size? (ncnnpass convert makes models that run at any size)")
    return np.asarray(got).reshape(ref.shape)


def _compare(metric, ref: SideRun, cand: SideRun, inputs: Sequence[ModelInput]) -> PairResult:
    keep = [k for k in range(len(inputs)) if ref.outputs[k] is not None and cand.outputs[k] is not None]
    if not keep:
        return PairResult(ref.label, cand.label, None, cand.error or ref.error or "no outputs")
    r = [ref.outputs[k] for k in keep]
    c = [_aligned(ref.outputs[k], cand.outputs[k], inputs[k], cand.label) for k in keep]  # type: ignore[arg-type]
    nonfinite = sum(not np.all(np.isfinite(x)) for x in c)
    result = metric.evaluate(r, c, [inputs[k] for k in keep])
    error = cand.error
    if len(keep) < len(inputs):
        error = f"{len(inputs) - len(keep)} of {len(inputs)} samples left out: {cand.error or ref.error}"
    return PairResult(ref.label, cand.label, result, error, nonfinite)


def evaluate(task: TaskData, sides: Sequence[Side], pairs: Sequence[tuple[str, str]] | None = None, *,
             dictionary: Sequence[str] | None = None, workers: int = 2, pools: Mapping[str, TargetPool] | None = None,
             progress: Progress = None) -> TaskReport:
    """Run ``sides`` on ``task``'s inputs and compare each pair ``(reference label, candidate label)``
    (default: the first side against each other one) with the kind's metric; ``dictionary``: the
    recogniser's characters (default: the one ``task`` was drawn for)."""
    if len(sides) < 2:
        raise NcnnpassError("a task evaluation needs a reference and at least one candidate")
    labels = [s.label for s in sides]
    if len(set(labels)) != len(labels):
        raise NcnnpassError(f"side labels must be unique: {labels}")
    pairs = list(pairs) if pairs is not None else [(labels[0], lb) for lb in labels[1:]]
    for a, b in pairs:
        if a not in labels or b not in labels:
            raise NcnnpassError(f"pair ({a!r}, {b!r}) names a side that is not given ({', '.join(labels)})")
    options = {"dictionary": dictionary if dictionary is not None else task.dictionary} if task.kind == "rec" else {}
    metric = metric_for(task.kind, **options)
    runs = {r.label: r for r in run_sides(sides, task.inputs, workers=workers, pools=pools, progress=progress)}
    results = [_compare(metric, runs[a], runs[b], task.inputs) for a, b in pairs]
    return TaskReport(task, list(runs.values()), results)


def rewrite_check(before: Graph, after: Graph, task: TaskData, *, target: str | None = None,
                  onnx: str | os.PathLike | None = None, criteria: TaskCriteria | None = None, workers: int = 2,
                  pools: Mapping[str, TargetPool] | None = None, progress: Progress = None
                  ) -> tuple[TaskReport, list[str]]:
    """``run --verify`` on real text: ``before`` and ``after`` in ncnn on ``target`` under fp32 options (the
    rewrite alone) must meet ``criteria``; with ``onnx`` each also runs under the target's default options
    against onnxruntime (reported, not judged). Returns the report and the failures ([] = write)."""
    where = normalize_target(target)
    sides = [Side.ncnn(before, where, "fp32", label="before"), Side.ncnn(after, where, "fp32", label="after")]
    pairs = [("before", "after")]
    if onnx is not None:
        sides = [Side.onnxruntime(onnx), *sides, Side.ncnn(before, where, label="before, default options"),
                 Side.ncnn(after, where, label="after, default options")]
        pairs += [("onnxruntime", "before, default options"), ("onnxruntime", "after, default options")]
    report = evaluate(task, sides, pairs, workers=workers, pools=pools, progress=progress)
    return report, (criteria or TaskCriteria()).failures(report.pair("after", "before"))
