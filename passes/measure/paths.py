"""One file, every path: a model that carries featmask bits must run correctly on each ncnn path an app may
choose — x86, the ARM CPU and the Vulkan GPU.

A featmask (``31=``) only ever takes a layer *off* a reduced-precision path (or off the GPU). Placed right, it
cannot make a model worse on any path than the same file without masks; placed wrong, it makes ncnn read fp16
data as fp32 (garbage, NaN), crash, or fail to compile a shader (docs/phone.md, docs/gpu.md). So each path is
judged against the same file with every featmask cleared, run there under the same (default) options:

    broken  <=>  the run crashes, or an output has NaN/Inf or another shape, or
                 max|masked − ref| > MARGIN · max|unmasked − ref| + SLACK

``ref`` is the file without masks under fp32 options on x86 (what the model computes). ``MARGIN`` = 2: a
right placement removes rounding sources, so its error is at most the unmasked one up to how the remaining
roundings happen to add up (masked/unmasked stays <= 1.0 in every measured right placement of docs/phone.md
and docs/gpu.md); a wrong placement is off by the magnitude of the output (ratios of 10x to 1e5x, or NaN).
``SLACK`` (the rewrite gate's 1e-4, absolute up to magnitude 1, relative above) keeps a path whose unmasked
error is ~0 (x86 computes most layers in fp32) from failing on float rounding. When the unmasked file itself
is non-finite on a path there is no scale: the masked one must then just be finite.

Paths: ``x86`` always (an isolated worker: a crash is an error, not the end of the caller), ``arm`` (the
emulated Cortex-A76) and ``vulkan`` (lavapipe) when provisioned (``available``), or as named. Cost: two
inferences per path (masked and unmasked; on ARM in two emulated workers at once, so about one emulated
inference of wall time: ~15-60 s for a PP-OCR recognizer, ~2 s for a small net), one on x86 for the reference.
Files without precision/placement bits (0-4) need none of this: without masks the paths cannot disagree
on blob types.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError, RuntimeBridgeError
from ncnnpass.ir.featmask import PRECISION_BITS, carries_featmask, placement_problems
from ncnnpass.ir.runtime import describe_target, normalize_target, using_target
from ncnnpass.ir.runtime.shapes import normalize_input_shapes
from ncnnpass.ir.runtime.targets import Job, TargetPool, VulkanTarget
from ncnnpass.ir.splits import SplitRecord

from .inputs import seeded_inputs
from .runners import NcnnRunner
from .tolerance import Comparison, Tolerance, compare_outputs

__all__ = ["ALL_PATHS", "MARGIN", "SLACK", "PathResult", "PathsReport", "check_every_path", "path_of_target",
           "path_status", "resolve_paths", "without_featmasks"]

#: path -> the target that runs it
PATH_TARGETS = {"x86": "isolated", "vulkan": "vulkan", "arm": "arm"}  # cheapest first
ALL_PATHS = tuple(PATH_TARGETS)
MARGIN = 2.0
SLACK = Tolerance.of(1e-4)

Progress = Callable[[str], None] | None


def path_status(path: str) -> str | None:
    """None when ``path`` can be checked on this machine now, else why not (one line)."""
    if path == "arm":
        from ncnnpass.ir.runtime.arm_env import arm_runtime_status

        return arm_runtime_status()
    if path == "vulkan":
        from ncnnpass.ir.runtime.vulkan_env import vulkan_runtime_status

        return vulkan_runtime_status()
    return None


def resolve_paths(spec: str | Iterable[str] | None = "available") -> tuple[list[str], dict[str, str]]:
    """(paths to check, {path: why not} for the available ones left out). ``spec``: ``available`` (x86 and the
    provisioned ones; also None), ``all`` (the three, provisioned on use), ``none``, or names (``x86,vulkan``)."""
    names = [spec] if isinstance(spec, str) or spec is None else list(spec)
    items = [p.strip().lower() for n in names for p in (n or "available").split(",") if p.strip()]
    if items == ["none"]:
        return [], {}
    if items in (["available"], []):
        skipped = {p: why for p in ALL_PATHS if (why := path_status(p)) is not None}
        return [p for p in ALL_PATHS if p not in skipped], skipped
    if items == ["all"]:
        return list(ALL_PATHS), {}
    bad = [p for p in items if p not in PATH_TARGETS]
    if bad:
        raise NcnnpassError(f"unknown path(s) {', '.join(bad)}: use available, all, none or names of "
                            f"{', '.join(ALL_PATHS)}")
    return list(dict.fromkeys(items)), {}


def path_of_target(target: str | None) -> str | None:
    """The path a ``--target`` runs: ``x86``/``isolated`` -> x86, ``arm``/``arm-a76`` -> arm, ``vulkan``; None
    for ``arm-a57`` (no fp16 there: masks cannot disagree with its blob types)."""
    name = normalize_target(target)
    return {"x86": "x86", "isolated": "x86", "arm": "arm", "vulkan": "vulkan"}.get(name)


def without_featmasks(graph: Graph) -> Graph:
    """A copy of ``graph`` with the precision/placement bits (0-4) cleared on every layer and Split."""
    g = graph.copy()
    for ly in g.layers:
        if ly.featmask & PRECISION_BITS:
            ly.featmask = ly.featmask & ~PRECISION_BITS
    for blob in list(g.splits):
        rec = g.splits[blob]
        params = []
        for t in rec.params:
            if t.startswith("31="):
                bits = int(t[3:], 0) & ~PRECISION_BITS
                if not bits:
                    continue
                t = f"31={bits}"
            params.append(t)
        g.splits[blob] = SplitRecord(rec.layer_name, list(rec.top_names), list(rec.slots), params)
    return g


def _e(v: float | None) -> str:
    return "-" if v is None else "NaN/Inf" if not np.isfinite(v) else f"{v:.2e}"


@dataclass
class PathResult:
    """The file on one path: its outputs and those of the file without masks, both against the reference."""

    path: str
    label: str
    masked: Comparison | None = None
    plain: Comparison | None = None
    failure: str | None = None  # the masked file's run failed (crash, shader, timeout): one line
    plain_failure: str | None = None
    fallback: list[tuple[str, str]] = field(default_factory=list)  # vulkan: layers with no Vulkan implementation
    seconds: float = 0.0

    @property
    def broken(self) -> str | None:
        """Why the file is clearly wrong on this path (see the module docstring), or None."""
        if self.failure is not None:
            return f"the run fails: {self.failure}"
        assert self.masked is not None
        for name, d in self.masked.diffs.items():
            if d.got_shape is None or not d.same_shape:
                return f"output {name!r} is missing or changed shape"
            if not d.finite:
                return f"output {name!r} has NaN/Inf"
            p = self.plain.diffs.get(name) if self.plain is not None else None
            if p is None or not (p.same_shape and p.finite):
                continue  # no scale to judge by: finite is all that can be asked
            bound = MARGIN * p.max_abs + SLACK.bound(d.ref_max)
            if d.max_abs > bound:
                return (f"output {name!r} is {d.max_abs:.3g} off (max abs), the file without masks {p.max_abs:.3g} "
                        f"there (bound {MARGIN:g}x + {SLACK.atol:g})")
        return None

    def line(self) -> str:
        took = f", {self.seconds:.0f} s" if self.seconds >= 5 else ""
        plain = _e(self.plain.max_abs) if self.plain is not None else f"fails: {self.plain_failure}"
        bad = self.broken
        if bad is not None:
            return f"{self.label}: BROKEN: {bad}{took}"
        return f"{self.label}: ok, max abs {_e(self.masked.max_abs)} (without masks {plain}){took}"

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "broken": self.broken, "failure": self.failure,
                "max_abs": None if self.masked is None else _finite(self.masked.max_abs),
                "max_abs_without_masks": None if self.plain is None else _finite(self.plain.max_abs),
                "without_masks_failure": self.plain_failure, "seconds": self.seconds,
                "no_vulkan_implementation": [{"layer": n, "type": t} for n, t in self.fallback]}


def _finite(v: float) -> float | None:
    return v if np.isfinite(v) else None


@dataclass
class PathsReport:
    """:func:`check_every_path`'s findings."""

    results: list[PathResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it was not run
    masked_layers: int = 0
    #: featmask.PlacementProblem: the static rule's findings on every path considered (ARM, Vulkan)
    problems: list = field(default_factory=list)
    reference_failure: str | None = None

    @property
    def broken(self) -> list[PathResult]:
        return [r for r in self.results if r.broken is not None]

    @property
    def ran(self) -> set[str]:
        return {r.path for r in self.results}

    def unrun_problems(self) -> list:
        """The static rule's findings on paths that were not run here (not provisioned, no input size)."""
        return [p for p in self.problems if p.path in self.skipped]

    @property
    def refusal(self) -> str | None:
        """One line on why the file must not be written, or None."""
        if self.reference_failure is not None:
            return f"the file without featmasks does not run on x86 under fp32 options: {self.reference_failure}"
        bad = self.broken
        static = self.unrun_problems()
        if not bad and not static:
            return None
        where = [f"{r.label}: {r.broken}" for r in bad]
        paths = [r.path for r in bad]
        for path in dict.fromkeys(p.path for p in static):
            paths.append(path)
            where.append(f"{path} (not run here: {self.skipped[path]}): the placement rule of docs/gpu.md says so")
        named = [p for p in self.problems if p.path in paths]
        culprits = ", ".join(f"{p.layer} ({p.type} 31={p.featmask}, {p.path})" for p in named[:4])
        more = f" and {len(named) - 4} more" if len(named) > 4 else ""
        return (f"its featmasks break {', '.join(paths)}: {'; '.join(where)}"
                + (f"; placements that break it: {culprits}{more}" if culprits else "")
                + "; write the every-path form (keep-fp32 or make_featmask_safe: 31=23 with cast boundaries, "
                "docs/gpu.md), or name the paths to check with --paths")

    def lines(self) -> list[str]:
        out = [f"every path (the file sets featmask bits on {self.masked_layers} layer(s); ncnn default options vs "
               "the file without masks in fp32 on x86, the same seeded input):"]
        out += [f"  {r.line()}" for r in self.results]
        for r in self.results:
            if r.fallback:
                out.append(f"  {r.label}: {len(r.fallback)} layer(s) have no Vulkan implementation and run on the "
                           "CPU: " + ", ".join(f"{t} {n}" for n, t in r.fallback[:8])
                           + (" ..." if len(r.fallback) > 8 else ""))
        for path, why in self.skipped.items():
            flagged = [p for p in self.problems if p.path == path]
            verdict = (f"{len(flagged)} placement(s) break it by the rule of docs/gpu.md" if flagged
                       else "the placement rule of docs/gpu.md finds nothing that breaks it")
            out.append(f"  {path}: not run ({why}); {verdict}")
        for r in self.results:  # the rule and the run disagree: say so (the run decides)
            flagged = [p for p in self.problems if p.path == r.path]
            if flagged and r.broken is None:
                out.append(f"  {r.path}: the placement rule flags {len(flagged)} placement(s) that ran correctly "
                           "on this input")
        return out

    def to_dict(self) -> dict:
        return {"paths": [r.to_dict() for r in self.results], "skipped": self.skipped,
                "masked_layers": self.masked_layers, "refusal": self.refusal,
                "placements": [p.to_dict() for p in self.problems]}


def _runs_on(path: str, jobs: list[Job]) -> list[tuple[dict | None, str | None]]:
    """Run ``jobs`` on ``path``: (outputs, None) or (None, one-line failure) each. ARM runs them in parallel
    emulated workers (one emulated inference of wall time, :class:`TargetPool`); x86 and Vulkan use the warm shared
    worker (:class:`.runners.NcnnRunner`)."""
    target = PATH_TARGETS[path]
    if path == "arm":
        with TargetPool(target, workers=len(jobs)) as pool:
            return [(r.outputs[0], None) if r.ok else (None, str(r.error)) for r in pool.run(jobs)]
    out = []
    for job in jobs:
        try:
            runner = NcnnRunner(job.graph, target=target, options=job.options, num_threads=job.num_threads)
            out.append((runner.run(job.samples[0]), None))
        except RuntimeBridgeError as exc:
            out.append((None, str(exc)))
    return out


def check_every_path(graph: Graph, shape=None, *, seed: int = 0, paths: str | Iterable[str] | None = "available",
                     skip: Iterable[str] = (), progress: Progress = None) -> PathsReport:
    """Judge ``graph`` (a file that carries featmask bits) on every path of ``paths`` (:func:`resolve_paths`).

    Each path that can run here runs the file and the same file without masks under ncnn's default options on
    the seeded input of ``shape`` (None: the Input layers' sizes) and is judged as the module docstring says.
    Every path considered is also judged by the static placement rule (:func:`ncnnpass.ir.featmask.
    placement_problems`); for a path that cannot run here (not provisioned, or no input size known) the rule
    decides. ``skip``: paths the caller already measured (neither run nor judged again)."""
    chosen, skipped = resolve_paths(paths)
    skip = set(skip)
    chosen = [p for p in chosen if p not in skip]
    report = PathsReport(skipped={p: why for p, why in skipped.items() if p not in skip},
                         masked_layers=sum(1 for ly in graph.layers if ly.featmask & PRECISION_BITS))
    if not carries_featmask(graph):
        return report
    considered = tuple(p for p in (*chosen, *report.skipped) if p in ("arm", "vulkan"))
    report.problems = placement_problems(graph, considered)
    try:
        feeds = seeded_inputs(normalize_input_shapes(graph, shape, required=True), seed)
    except NcnnpassError:
        report.skipped.update({p: "no input size known: give --shape" for p in chosen})
        return report
    outs = list(graph.outputs)
    plain = without_featmasks(graph)
    (ref, fail), = _runs_on("x86", [Job(plain, [feeds], outs, "fp32", 1)])
    if ref is None:
        report.reference_failure = fail
        return report
    for path in sorted(chosen, key=list(PATH_TARGETS).index):
        label = describe_target(PATH_TARGETS[path])
        if report.broken and path == "arm":  # the verdict stands; spare the emulated minute
            report.skipped[path] = f"not needed: {report.broken[0].path} is broken already"
            continue
        if progress is not None:
            progress(f"checking the written file on {label}" + (" (two emulated inferences at once)"
                                                                  if path == "arm" else ""))
        t0 = time.perf_counter()
        runs = _runs_on(path, [Job(graph, [feeds], outs, "default", 1), Job(plain, [feeds], outs, "default", 1)])
        (got, failure), (base, base_failure) = runs
        res = PathResult(path, label, failure=failure, plain_failure=base_failure)
        if got is not None:
            res.masked = compare_outputs(ref, got, outs)
        if base is not None:
            res.plain = compare_outputs(ref, base, outs)
        if path == "vulkan" and got is not None:
            with using_target("vulkan") as session:
                if isinstance(session, VulkanTarget):
                    res.fallback = session.fallback_layers(graph, "default", 1)
        res.seconds = time.perf_counter() - t0
        report.results.append(res)
    return report
