"""Placements judged on what users see: task metrics on real data against a reference.

- :func:`prepare_parts`: the samples (the user's ``images`` or the built-in lines/pages), a seeded
  calibration/held-out split (:func:`ncnnpass.passes.measure.split.split_samples`), each part prepared as
  PaddleOCR's inference does (:func:`ncnnpass.passes.measure.prepare.prepare_for_model`).
- :func:`reference_outputs`: onnxruntime on the ONNX when there is one, else the same ncnn model on this
  machine with fp16/bf16 off (what the model computes without fp16).
- :class:`Evaluator`: runs placements of one graph (each through ``transform``, e.g. a proxy's rewrite) on a
  :class:`ncnnpass.ir.runtime.TargetPool`, judges each
  with the kind's task metric (:mod:`ncnnpass.passes.measure.metrics`) and :class:`.criteria.Criteria`, and
  caches verdicts by (placement, part, sample count). It counts inferences and their wall time.

The candidate runs go through one function, :func:`candidate_outputs`, so another runner (e.g. the
measurement core's task evaluation) can take its place without touching the search.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.runtime import Job, TargetPool
from ncnnpass.passes.measure.metrics import metric_for
from ncnnpass.passes.measure.model_info import ModelInfo
from ncnnpass.passes.measure.model_input import ModelInput
from ncnnpass.passes.measure.prepare import prepare_for_model
from ncnnpass.passes.measure.split import split_samples

from .criteria import Criteria, Verdict
from .placement import Placement, apply_placement

Progress = Callable[[str], None]
#: what a search uses by default, per kind: (calibration, held-out) samples (lines for rec/cls, pages for det)
DEFAULT_COUNTS = {"rec": (32, 56), "cls": (64, 80), "det": (4, 6)}
HELD_OUT_SHARE = 0.5
#: inputs per placement from which a lone placement is spread over the workers (loading a net costs seconds)
SPLIT_AT = 8
#: decision margins below this are ties any rounding (fp32's too) may flip: not used to stress a placement
MARGIN_FLOOR = 2e-3
#: the share of changed answers the goal allows (99.5% of strings identical): the calibration set leaves out the
#: samples that fragile
ALLOWED_FLIPS = 0.005


@dataclass
class Part:
    """Prepared inputs of one part of the data and the reference's first output for each. ``pool``: the
    held-out samples a part of the riskiest stands for (judged as the gate would judge them:
    :class:`.criteria.Criteria`; 0: itself), ``pool_off`` of them known to be off already."""

    name: str
    inputs: list[ModelInput]
    references: list[np.ndarray] = field(default_factory=list)
    source: str = ""
    pool: int = 0
    pool_off: int = 0

    def __len__(self) -> int:
        return len(self.inputs)

    def slice(self, name: str, start: int, stop: int | None = None) -> Part:
        """Samples ``start:stop`` as a part of their own (standing for the same pool)."""
        return Part(name, self.inputs[start:stop], self.references[start:stop], self.source, self.pool,
                    self.pool_off)

    def pick(self, name: str, indices: Sequence[int], pool: int | None = None, pool_off: int = 0) -> Part:
        """Samples ``indices`` as a part of their own, standing for ``pool`` with ``pool_off`` off (default:
        this part's pool)."""
        if pool is None:
            pool, pool_off = self.pool, self.pool_off
        return Part(name, [self.inputs[i] for i in indices], [self.references[i] for i in indices], self.source,
                    pool, pool_off)

    def __add__(self, other: Part) -> Part:
        return Part(f"{self.name}+{other.name}", self.inputs + other.inputs, self.references + other.references,
                    self.source)


def prepare_parts(info: ModelInfo, *, images: str | os.PathLike | None = None, calibration: int | None = None,
                  held_out: int | None = None, seed: int = 0, model_dir: str | os.PathLike | None = None,
                  skip_held_out: int = 0) -> dict[str, Part]:
    """``{"calibration": Part, "held-out": Part}`` (see the module docstring). With ``images`` every sample
    of the user's data is split; the counts cap each part (None: all of it). Built-in data is drawn until
    both parts have their count (defaults :data:`DEFAULT_COUNTS`). ``skip_held_out`` leaves out the first
    held-out samples (a benchmark that must not reuse the lines a search confirmed on)."""
    kind = info.kind
    if kind not in DEFAULT_COUNTS:
        raise NcnnpassError("cannot tell whether the model is rec, det or cls: the search needs its kind")
    if images is not None:
        from ncnnpass.passes.measure.image_sources import load_images

        data = load_images(images)
        split = split_samples(data.samples, HELD_OUT_SHARE, seed)
        cal = split.calibration[:calibration] if calibration else split.calibration
        held = split.held_out[skip_held_out:][:held_out] if held_out else split.held_out[skip_held_out:]
        source = data.describe()
    else:
        from ncnnpass.passes.measure.synth import builtin_data

        want_cal, want_held = (calibration or DEFAULT_COUNTS[kind][0],
                               (held_out or DEFAULT_COUNTS[kind][1]) + skip_held_out)
        n = 2 * max(want_cal, want_held) + 8
        while True:
            data = builtin_data(kind, n, seed, dictionary=info.dictionary if kind == "rec" else None)
            split = split_samples(data.samples, HELD_OUT_SHARE, seed)
            if len(split.calibration) >= want_cal and len(split.held_out) >= want_held:
                break
            n = int(n * 1.5) + 8
        cal = split.calibration[:want_cal]
        held = split.held_out[skip_held_out:want_held]
        source = f"built-in {'pages' if kind == 'det' else 'lines'} (seed {seed})"
    parts = {}
    for name, samples in (("calibration", cal), ("held-out", held)):
        inputs = prepare_for_model(samples, info, model_dir, data=data)
        if not inputs:
            raise NcnnpassError(f"no {'pages' if kind == 'det' else 'text lines'} in the {name} part of {source}")
        parts[name] = Part(name, inputs, source=source)
    return parts


def _collapsed(ids: np.ndarray) -> np.ndarray:
    """Greedy CTC on frame labels: repeats merged, blanks (class 0, PaddleOCR's) dropped."""
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    out = ids[keep]
    return out[out != 0]


def decision_margin(kind: str, reference: np.ndarray) -> float:
    """How close the reference's own answer is to a different one. rec: the smallest top-1 minus top-2
    probability over the frames where taking the top-2 class instead changes the decoded string (CTC merges
    many frame flips away); cls: top-1 minus top-2; det: inf (pages are not ranked)."""
    if kind == "det":
        return float("inf")
    r = np.asarray(reference, dtype=np.float64).reshape(-1, np.shape(reference)[-1])
    if r.shape[1] < 2:
        return float("inf")
    order = np.argsort(r, axis=1)
    a, b = order[:, -1], order[:, -2]
    rows = np.arange(len(a))
    gaps = r[rows, a] - r[rows, b]
    if kind != "rec":
        return float(gaps.min())
    text = _collapsed(a)
    for t in np.argsort(gaps, kind="stable"):
        ids = a.copy()
        ids[t] = b[t]
        alt = _collapsed(ids)
        if len(alt) != len(text) or np.any(alt != text):
            return float(gaps[t])
    return float("inf")


def stress_order(kind: str, part: Part, floor: float = MARGIN_FLOOR, allowed: float = ALLOWED_FLIPS) -> list[int]:
    """Indices of ``part`` by how fragile the reference's answer is (smallest decision margin first). Last
    come the samples a goal of ``allowed`` changed answers may lose anyway (the most fragile ``allowed`` share
    of ``part``) and those with a margin below ``floor`` (a tie that fine flips under any rounding, fp32's)."""
    margins = [decision_margin(kind, r) for r in part.references]
    order = sorted(range(len(margins)), key=lambda i: margins[i])
    give_up = set(order[:round(allowed * len(order))]) | {i for i in order if margins[i] < floor}
    return [i for i in order if i not in give_up] + [i for i in order if i in give_up]


def stressed(kind: str, part: Part, count: int, name: str, hard_share: float = 0.75) -> Part:
    """``count`` samples of ``part``: the ``hard_share`` most fragile (:func:`stress_order`), most fragile first,
    then the first others in their order (typical samples). For det, the first ``count``."""
    if kind == "det" or count >= len(part):
        return part.slice(name, 0, count)
    order = stress_order(kind, part)
    hard = order[:round(count * hard_share)]
    rest = [i for i in range(len(part)) if i not in set(hard)][:count - len(hard)]
    return part.pick(name, hard + rest)


def at_risk(kind: str, part: Part, verdict: Verdict, count: int, name: str, floor: float = MARGIN_FLOOR) -> Part:
    """The ``count`` samples of ``part`` a candidate came closest to changing without changing them
    (``verdict``: its verdict on ``part``, with per-sample risks; rec: the frame risk, cls: the score change),
    riskiest first. The samples it changed are left out (its verdict on ``part`` counts them already), and the
    reference's ties (decision margin below ``floor``, flipped by any rounding) come last. A noisier target than
    the one ``verdict`` ran on changes these first: of the 9 lines (of 200) the emulated A76 got wrong with
    PP-OCRv5 at 66% fp16, 6 were among lavapipe's 7 riskiest there (4 among the reference's 8 most fragile).
    The part stands for ``part`` (its pool), with the samples ``verdict`` changed off already."""
    if len(verdict.risks) != len(part):
        raise ValueError(f"{len(verdict.risks)} risks for a part of {len(part)} samples")
    off = set(verdict.failing)
    tie = {i for i, r in enumerate(part.references) if decision_margin(kind, r) < floor}
    order = sorted((i for i in range(len(part)) if i not in off), key=lambda i: (i in tie, -verdict.risks[i]))
    return part.pick(name, order[:count], pool=len(part), pool_off=len(off))


def reference_outputs(inputs: Sequence[ModelInput], *, onnx: str | os.PathLike | None = None,
                      graph: Graph | None = None) -> list[np.ndarray]:
    """The reference's first output per input: onnxruntime on ``onnx``, else ``graph`` on x86 in fp32."""
    if onnx is not None:
        from ncnnpass.passes.measure.onnx_runner import OnnxRunner

        runner = OnnxRunner.cached(onnx, num_threads=1)
        return [runner.run_list(i.tensor)[0] for i in inputs]
    if graph is None:
        raise NcnnpassError("a reference needs an ONNX file or the ncnn graph")
    from ncnnpass.passes.measure.runners import NcnnRunner

    out = graph.outputs[0]
    runner = NcnnRunner(graph, target="x86", options="fp32", num_threads=None)
    return [r[out] for r in runner.run_many([i.tensor[0] for i in inputs], [out])]


def candidate_outputs(graphs: Sequence[Graph], inputs: Sequence[ModelInput], pool: TargetPool
                      ) -> list[tuple[list[np.ndarray | None], str | None]]:
    """Each graph's first output per input on ``pool`` (None where it failed) and the first error.

    With fewer graphs than workers, each graph's inputs are cut into one chunk per worker (a worker loads a
    net once per chunk) when there are at least :data:`SPLIT_AT` of them; all chunks run in parallel."""
    xs = [i.tensor[0] for i in inputs]
    chunks = pool.workers if len(graphs) < pool.workers and len(xs) >= SPLIT_AT else 1
    per = max(1, -(-len(xs) // chunks))
    jobs, owner = [], []
    for gi, g in enumerate(graphs):
        for start in range(0, len(xs), per):
            jobs.append(Job(g, xs[start:start + per], [g.outputs[0]]))
            owner.append(gi)
    results = pool.run(jobs)
    outs: list[list[np.ndarray | None]] = [[] for _ in graphs]
    errors: list[str | None] = [None] * len(graphs)
    for gi, job, res in zip(owner, jobs, results, strict=True):
        if res.ok:
            outs[gi] += [next(iter(o.values())) for o in res.outputs]
        else:
            outs[gi] += [None] * len(job.samples)
            errors[gi] = errors[gi] or str(res.error)
    return list(zip(outs, errors, strict=True))


class Evaluator:
    """Placements of ``graph`` on ``pool``, judged on ``parts`` (module docstring)."""

    def __init__(self, graph: Graph, kind: str, parts: Mapping[str, Part], pool: TargetPool, *,
                 criteria: Criteria | None = None, dictionary: Sequence[str] | None = None,
                 transform: Callable[[Graph], Graph] | None = None, progress: Progress | None = None) -> None:
        self.graph = graph
        self.transform = transform or (lambda g: g)
        self.kind = kind
        self.parts = dict(parts)
        self.pool = pool
        self.criteria = criteria or Criteria()
        self.metric = metric_for(kind, **({"dictionary": list(dictionary)} if kind == "rec" and dictionary else {}))
        self.say = progress or (lambda _m: None)
        self.cache: dict[tuple[Placement, str, int], Verdict] = {}
        self.nonfinite: dict[tuple[Placement, str, int], list[int]] = {}  # samples with NaN/Inf outputs
        self.views: dict[str, list[str]] = {}  # part -> parts with the same samples, judged by another name
        self.inferences = 0
        self.seconds = 0.0

    @property
    def target(self) -> str:
        return self.pool.name

    def evaluate(self, placements: Sequence[Placement], part: str = "calibration",
                 count: int | None = None) -> list[Verdict]:
        """The verdict of each placement on the first ``count`` samples of ``part`` (all by default)."""
        data = self.parts[part]
        n = len(data) if count is None else min(count, len(data))
        todo = [p for p in dict.fromkeys(placements) if (p, part, n) not in self.cache]
        if todo:
            t0 = time.perf_counter()
            graphs = [self.transform(apply_placement(self.graph, p)) for p in todo]
            runs = candidate_outputs(graphs, data.inputs[:n], self.pool)
            for p, (outs, error) in zip(todo, runs, strict=True):
                bad = [k for k, o in enumerate(outs) if o is not None and not np.all(np.isfinite(o))]
                for name in [part, *self.views.get(part, ())]:  # one run, judged under each name
                    self.cache[(p, name, n)] = self._judge(self.parts[name], n, outs, error)
                    self.nonfinite[(p, name, n)] = bad
            took = time.perf_counter() - t0
            self.seconds += took
            self.inferences += len(todo) * n
            self.say(f"  {len(todo)} placement(s) x {n} {part} samples on {self.target}: {took:.0f} s")
        return [self.cache[(p, part, n)] for p in placements]

    def view(self, part: str, name: str) -> str:
        """Registers ``name`` (once): the samples of ``part`` judged as a part named ``name`` is (e.g. calibration
        lines judged as held-out ones, :class:`.criteria.Criteria`), itself, not standing for a pool; evaluating
        either judges both from one run. Returns ``name``."""
        if name not in self.parts:
            src = self.parts[part]
            self.parts[name] = src.pick(name, range(len(src)), pool=0)
            self.views.setdefault(part, []).append(name)
            self.views.setdefault(name, []).append(part)
        return name

    def nonfinite_samples(self, placement: Placement, part: str = "calibration", count: int | None = None
                          ) -> list[int]:
        """Indices of the samples of ``part`` where ``placement`` returned NaN/Inf (evaluated before)."""
        n = len(self.parts[part]) if count is None else min(count, len(self.parts[part]))
        return self.nonfinite.get((placement, part, n), [])

    def _judge(self, data: Part, n: int, outs: list[np.ndarray | None], error: str | None) -> Verdict:
        return judge_outputs(self.kind, self.metric, self.criteria, data.slice(data.name, 0, n), outs, error)


def judge_outputs(kind: str, metric, criteria: Criteria, data: Part, outs: Sequence[np.ndarray | None],
                  error: str | None = None) -> Verdict:
    """The verdict on ``outs`` (one candidate output per sample of ``data``, None where it did not run) against
    ``data.references``: the task metric's numbers, the mean largest change, for rec the frame risks, and the
    criteria of the part ``data.name``; NaN/Inf count against it."""
    refs = data.references
    n = len(refs)
    keep = [k for k in range(n) if outs[k] is not None]
    if len(keep) < n:
        return criteria.failed(error or "no output", n)
    cands = []
    for k in keep:
        got = np.asarray(outs[k])
        if got.size != refs[k].size:
            return criteria.failed(f"output has {got.size} values, the reference {refs[k].size}", n)
        cands.append(got.reshape(refs[k].shape))
    nonfinite = sum(not np.all(np.isfinite(c)) for c in cands)
    safe = [np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0) for c in cands]
    result = metric.evaluate([refs[k] for k in keep], safe, [data.inputs[k] for k in keep])
    numbers = dict(result.numbers)
    diffs = [x.get("max_prob_diff", x.get("max_map_diff", 0.0)) for x in result.per_sample]
    numbers["mean_max_diff"] = float(np.mean(diffs)) if diffs else 0.0
    risks: list[float] = []
    if kind == "cls":
        numbers["per_line"] = [(x["differs"] or x["rotation_flip"], x["score_change"]) for x in result.per_sample]
        risks = [float(x["score_change"]) for x in result.per_sample]
    if kind == "rec":
        numbers["per_line"] = [(x["differs"] or x["crosses_drop_score"], x["conf_change"]) for x in result.per_sample]
        risks = [frame_risk(refs[k], c) for k, c in zip(keep, safe, strict=True)]
        numbers["frame_flip_lines"] = sum(r >= 1.0 for r in risks)
        numbers["mean_frame_risk"] = float(np.mean(np.minimum(risks, 1.0)))
    verdict = criteria.judge(kind, numbers, n, nonfinite, part=data.name, pool=data.pool,
                             pool_off=data.pool_off)
    verdict.risks = tuple(risks)
    return verdict


def frame_risk(reference: np.ndarray, candidate: np.ndarray) -> float:
    """How much of the reference's decision margin the candidate consumed, worst frame of a line:
    ``max_t 1 - m_c(t) / m_r(t)``, where ``m_r(t)`` is the reference's top-1 minus top-2 probability at frame
    ``t`` and ``m_c(t)`` the candidate's probability of that same top-1 class minus its best other class.
    >= 1: a frame's argmax flipped (the string may or may not change after CTC's merging); near 1: a near
    flip. A continuous stand-in for "strings identical" that small calibration sets can rank with."""
    r = np.asarray(reference, dtype=np.float64).reshape(-1, np.shape(reference)[-1])
    c = np.asarray(candidate, dtype=np.float64).reshape(r.shape)
    a = r.argmax(axis=1)
    rows = np.arange(len(a))
    rs = r.copy()
    rs[rows, a] = -np.inf
    cs = c.copy()
    cs[rows, a] = -np.inf
    m_r = r[rows, a] - rs.max(axis=1)
    m_c = c[rows, a] - cs.max(axis=1)
    return float(np.max(1.0 - m_c / np.maximum(m_r, 1e-12))) if len(a) else 0.0
