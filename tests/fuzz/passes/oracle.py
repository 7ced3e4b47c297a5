"""One fuzz case and its judgement: run a pass sequence on a model and hold the result to the oracle.

After the sequence: :func:`.checks.graph_problems` finds nothing (verifier, copy and text round trips),
every protected output is still produced under its name, and ncnn (fp32 options, one thread) gives the
same outputs as on the unmodified model within the sequence's declared bound (the largest
``Pass.numeric_bound`` of its passes; 1e-4 for exact rewrites), relative to each output's magnitude.
A reference that ncnn cannot run, or runs to NaN/Inf, makes the case ``invalid`` (a generator defect).

An output that is a small difference of large values (``mean(x) - x`` of a nearly flat ``x``) turns the
rounding of any exact rewrite upstream into a large relative error. Such outputs are recognised by
measuring the unmodified model's own fp32 noise, in the manner of Monte Carlo arithmetic: the model with
every value of every layer's result multiplied by ``1 ± 2^-20`` (8 ulps, random signs; two draws), run
with direct convolutions instead of Winograd/sgemm (other summation orders too). (ncnn's packed layout
off would be a third order, but this ncnn segfaults on some valid graphs with it.) Each output may move by its bound times its
magnitude plus that noise.
"""

from __future__ import annotations

import base64
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from ncnnpass.ir import Graph, runtime
from ncnnpass.passes import apply_passes, resolve_passes

from .checks import graph_problems

MAGNITUDE_FLOOR = 1e-3  # outputs smaller than this are compared as if this large
NOISE_EPS = 2.0 ** -20   # relative perturbation of every layer's result in the noise runs


@dataclass
class Case:
    """Everything needed to replay a case (JSON-friendly through :meth:`to_json`)."""

    id: str
    source: str                                   # "generated" or "real:<model>/<form>"
    param: str
    bin: bytes
    passes: list[str]
    fold_storage: str = "fp32"
    pass_shapes: dict[str, list[int]] | None = None  # input_shape given to apply_passes (None: declared)
    run_shapes: dict[str, list[int]] = field(default_factory=dict)
    outputs: list[str] | None = None               # protected outputs to set (None: as loaded)
    input_seed: int = 0
    max_iterations: int = 8                        # apply_passes' repeat limit
    second_shapes: dict[str, list[int]] | None = None  # a dynamic model is compared at this size too
    shapes: dict[str, list[int]] | None = None     # generated graphs: every blob's shape, as the generator says

    @property
    def kind(self) -> str:
        return "real" if self.source.startswith("real") else "generated"

    def to_json(self) -> dict:
        d = asdict(self)
        d["bin"] = base64.b64encode(self.bin).decode()
        return d

    @classmethod
    def from_json(cls, d: dict) -> Case:
        d = dict(d)
        d["bin"] = base64.b64decode(d["bin"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Outcome:
    status: str                  # "ok", "fail" (a finding), "invalid" (the input model is not runnable)
    stage: str = ""
    kind: str = ""               # exception type, "problems", "numeric", "outputs", "crash", "hang"
    message: str = ""
    detail: str = ""
    rules: dict[str, int] = field(default_factory=dict)  # "pass/rule" -> rewrites
    error: float = 0.0
    bound: float = 0.0
    seconds: float = 0.0

    @property
    def signature(self) -> tuple[str, str, str]:
        return self.status, self.stage, self.kind


def feeds_for(case: Case, shapes: dict[str, list[int]] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(case.input_seed)
    shapes = case.run_shapes if shapes is None else shapes
    return {k: rng.uniform(-1, 1, tuple(v)).astype(np.float32) for k, v in sorted(shapes.items())}


def load(case: Case) -> Graph:
    g = Graph.from_text(case.param, case.bin, file=f"<case {case.id}>")
    if case.outputs:
        g.outputs = case.outputs
    return g


# the noise runs: fp32 too, with other kernels (no Winograd/sgemm pipelines: also 10x quicker to load)
DIRECT = {"use_winograd_convolution": False, "use_sgemm_convolution": False}


def _run(g: Graph, feeds: dict, names: list[str] | str, other: dict | None = None) -> dict[str, np.ndarray]:
    options = "fp32" if other is None else {**runtime.OPTION_PRESETS["fp32"], **other}
    return runtime.run(g, feeds, names, options=options, num_threads=1)


def perturbed(g: Graph, shapes: dict[str, tuple[int, ...]], seed: int) -> Graph:
    """A copy of ``g`` whose every layer result (of rank 1-3) is multiplied element-wise by ``1 ± NOISE_EPS``
    (random signs, a MemoryData operand); blob names are kept."""
    rng = np.random.default_rng(seed)
    p = g.copy()
    for ly in list(p.layers):
        for o in ly.outputs:
            shape = shapes.get(o)
            if shape is None or not 1 <= len(shape) <= 3:
                continue
            raw = p.unique_blob_name(f"{o}__raw")
            ly.outputs = tuple(raw if n == o else n for n in ly.outputs)
            factors = (1 + NOISE_EPS * rng.choice([-1.0, 1.0], int(np.prod(shape)))).astype(np.float32)
            dims = dict(zip((0, 1, 2), reversed(shape), strict=False))
            md = p.add_layer("MemoryData", outputs=[p.unique_blob_name(f"{o}__eps")], params=dims,
                             weights={"data": factors}, after=ly)
            p.add_layer("BinaryOp", inputs=[raw, md.outputs[0]], outputs=[o], params={0: 2}, after=md)
    return p


def noise(g: Graph, feeds: dict, names: list[str], ref: dict[str, np.ndarray],
          shapes: dict[str, tuple[int, ...]]) -> dict[str, float]:
    """Per output, how far the unmodified model itself moves under fp32-level perturbations."""
    out = {n: 0.0 for n in names}
    runs = [_run(perturbed(g, shapes, s), feeds, names, DIRECT) for s in (1, 2)]
    for other in runs:
        for n in names:
            if other[n].shape == ref[n].shape:
                d = np.abs(other[n].astype(np.float64) - ref[n])
                out[n] = max(out[n], float(np.nan_to_num(d, nan=np.inf).max()) if d.size else 0.0)
    return out


def compare(ref: dict[str, np.ndarray], out: dict[str, np.ndarray], floor: dict[str, float] | None = None,
            bound: float = 0.0) -> tuple[float, str]:
    """(worst error relative to each output's magnitude, what went wrong or '') over the outputs; an output
    within ``bound`` x its magnitude + its ``floor`` (absolute) counts as equal."""
    worst = 0.0
    for name, a in ref.items():
        b = out.get(name)
        if b is None:
            return float("inf"), f"output {name!r} missing"
        if a.shape != b.shape:
            return float("inf"), f"output {name!r}: shape {b.shape}, expected {a.shape}"
        if not np.isfinite(b).all():
            return float("inf"), f"output {name!r}: NaN/Inf (reference finite)"
        scale = max(float(np.abs(a).max()) if a.size else 0.0, MAGNITUDE_FLOOR)
        diff = float(np.abs(a - b).max()) if a.size else 0.0
        slack = (floor or {}).get(name, 0.0)
        if diff > bound * scale + slack:
            return diff / scale, (f"output {name!r}: max |after - before| = {diff:.3g} > {bound:g} x magnitude "
                                  f"{scale:.3g} + fp32 noise {slack:.3g}")
        worst = max(worst, diff / scale)
    return worst, ""


def invariants(g: Graph, plist: list, converged: bool, shapes: dict | None, fold_storage: str,
               max_iterations: int = 8) -> list[str]:
    """Promises about the rewritten graph besides its values:

    * a run with the default iteration limit (8) reaches a fixpoint (more means passes undo each other),
      unless the sequence asks for both directions of adaptive-avgpool-lowering (then they must);
    * a run that reports a fixpoint leaves nothing for the same passes to do: run again, they rewrite nothing;
    * a sequence that ends with ARM-safe ``keep-fp32`` (the default ``safe=1``, bits with no-fp16-storage)
      leaves every layer kept out of fp16 storage reading fp32 blobs (the ARM rule, docs/phone.md)."""
    broken = []
    directions = {p.options.get("direction") for p in plist if p.name == "adaptive-avgpool-lowering"}
    if not converged and max_iterations >= 8 and directions != {"lower", "raise"}:
        broken.append(f"no fixpoint within {max_iterations} iterations of the sequence")
    if converged:
        again = g.copy()
        rep = apply_passes(again, plist, input_shape=shapes, fold_storage=fold_storage)
        if rep.changed:
            broken.append(f"a run that reached a fixpoint rewrites again: {rep.counts}")
    last = plist[-1] if plist else None
    if last is not None and last.name == "keep-fp32" and str(last.options.get("safe")).lower() not in ("0", "false", "no"):
        from ncnnpass.ir.featmask import NO_FP16_STORAGE, unsafe_edges
        from ncnnpass.passes.ncnn.keep_fp32 import parse_bits

        if parse_bits(last.options.get("bits")) & NO_FP16_STORAGE:
            bad = unsafe_edges(g)
            if bad:
                ly, slot, why = bad[0]
                broken.append(f"after keep-fp32 (safe) {ly.type} {ly.name!r} input {slot} is unsafe: {why} "
                              f"({len(bad)} such input(s))")
    return broken


def check_case(case: Case, progress: Callable[[str], None] = lambda stage: None) -> Outcome:
    """Run ``case`` in this process (ncnn too: run it under :mod:`.runner` to survive ncnn crashes)."""
    t0 = time.perf_counter()
    out = _check(case, progress)
    out.seconds = time.perf_counter() - t0
    return out


def _fail(stage: str, exc: BaseException | None = None, kind: str = "", message: str = "") -> Outcome:
    if exc is not None:
        kind = kind or type(exc).__name__
        text = str(exc).strip()
        message = message or (text.splitlines()[0][:400] if text else kind)
        return Outcome("fail", stage, kind, message, traceback.format_exc())
    return Outcome("fail", stage, kind, message)


def _check(case: Case, progress: Callable[[str], None]) -> Outcome:
    progress("reference")
    sizes = [case.run_shapes] + ([case.second_shapes] if case.second_shapes else [])
    refs = []  # per size: (feeds, reference outputs, their fp32 noise)
    try:
        g0 = load(case)
        names = list(g0.outputs)
        for size in sizes:
            feeds = feeds_for(case, size)
            ref = _run(g0, feeds, names)
            if not all(np.isfinite(v).all() for v in ref.values()):
                return Outcome("invalid", "reference", "non-finite", f"the unmodified model gives NaN/Inf at {size}")
            shapes = {k: v.shape for k, v in _run(g0, feeds, "all", DIRECT).items()}
            if case.shapes and size is sizes[0]:  # ncnn runs what the generator meant (a Reshape of the
                wrong = {k: (tuple(v), shapes.get(k)) for k, v in case.shapes.items()  # wrong size is no error)
                         if k in shapes and tuple(v) != shapes[k]}
                if wrong:
                    return Outcome("invalid", "reference", "shapes", f"generator vs ncnn shapes: {wrong}")
            refs.append((feeds, ref, noise(g0, feeds, names, ref, shapes)))
    except Exception as exc:  # the input itself is broken: the generator's fault
        return Outcome("invalid", "reference", type(exc).__name__, str(exc)[:400], traceback.format_exc())
    progress("passes")
    try:
        g = load(case)
        plist = resolve_passes(case.passes)
        bound = max((p.numeric_bound(case.fold_storage) for p in plist), default=1e-4)
        shapes = None if case.pass_shapes is None else {k: tuple(v) for k, v in case.pass_shapes.items()}
        report = apply_passes(g, plist, input_shape=shapes, fold_storage=case.fold_storage,
                              max_iterations=case.max_iterations)
    except Exception as exc:
        return _fail("passes", exc)
    rules = {f"{name}/{rule}": n for name, st in report.stats.items() for rule, n in st.by_rule.items() if n}
    progress("invariants")
    try:
        broken = invariants(g, plist, report.converged, shapes, case.fold_storage, case.max_iterations)
    except Exception as exc:
        o = _fail("invariants", exc)
        o.rules = rules
        return o
    if broken:
        return Outcome("fail", "invariants", "invariant", "; ".join(broken)[:400], "\n".join(broken), rules)
    progress("verify")
    try:
        problems = graph_problems(g)
    except Exception as exc:
        o = _fail("verify", exc)
        o.rules = rules
        return o
    if problems:
        return Outcome("fail", "verify", "problems", "; ".join(problems)[:400], "\n".join(problems), rules)
    lost = [n for n in names if n not in g.blobs or g.blobs[n].producer is None or n not in g.outputs]
    if lost:
        return Outcome("fail", "outputs", "outputs", f"protected outputs lost: {lost}", "", rules)
    worst = 0.0
    for size, (feeds, ref, floor) in zip(sizes, refs, strict=True):
        progress("run-after")
        try:
            after = _run(g, feeds, names)
        except Exception as exc:
            o = _fail("run-after", exc)
            o.rules = rules
            return o
        progress("compare")
        err, what = compare(ref, after, floor, bound)
        if what:
            at = f" at the second size {size}" if size is not sizes[0] else ""
            return Outcome("fail", "compare", "numeric", what + at, "", rules, err, bound)
        worst = max(worst, err)
    return Outcome("ok", rules=rules, error=worst, bound=bound)
