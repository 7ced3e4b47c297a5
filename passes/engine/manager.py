"""Passes and the pass manager: run rules to a fixpoint, compose passes, report what changed."""

from __future__ import annotations

import contextlib
import copy
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ncnnpass.ir import Graph, Layer
from ncnnpass.ir.errors import GraphError, NcnnpassError
from ncnnpass.ir.listeners import EditCounter

from .context import PassContext
from .options import Option, as_option, option_text
from .rewriter import Rewriter
from .rule import Rule, compile_rules, sort_rules

#: How far a pass may move a model's outputs under ncnn fp32 options, relative to their magnitude, by the
#: ``fold_storage`` of the run: an exact rewrite changes fp32 rounding only.
EXACT: dict[str, float] = {"fp32": 1e-4, "keep": 1e-4}
Bounds = Mapping[str, float] | Callable[[dict[str, Any], str], float]


class Pass:
    """A named graph transformation. ``run`` returns the number of rewrites per rule (or a count)."""

    name: str = ""
    doc: str = ""
    needs_shapes: bool = False
    #: a terminal pass runs once where it stands in the list, after the passes before it reached their
    #: fixpoint (a pass that measures on a target, e.g. ``repair-for-target``); the others iterate
    terminal: bool = False
    #: the declared numeric bound: ``{fold_storage: bound}`` or ``fn(options, fold_storage) -> bound``
    #: (see :meth:`numeric_bound`); the pass fuzzer (tests/fuzz/passes) holds every pass to it
    numeric_bounds: Bounds = EXACT
    #: option name -> :class:`~.options.Option` (typed; older ``(default, help)`` tuples are kept as text);
    #: options are given as ``name[key=value,...]`` or ``configure(key=value)``
    option_help: dict[str, Option] = {}
    #: ``validator(graph, **options)`` raises when the options make no sense for the graph (see :meth:`validate`)
    validator: Callable[..., None] | None = None

    def __init__(self) -> None:
        self.option_help = {k: as_option(v) for k, v in self.option_help.items()}
        self.options: dict[str, Any] = {k: v.default for k, v in self.option_help.items()}

    def configure(self, **options: Any) -> Pass:
        """A copy of this pass with some options changed (typed values; unknown options raise)."""
        unknown = set(options) - set(self.option_help)
        if unknown:
            known = ", ".join(self.option_help) or "none"
            raise NcnnpassError(f"pass {self.name} has no option {', '.join(sorted(unknown))} (options: {known})")
        parsed = {k: self.option_help[k].parse(self.name, k, v) for k, v in options.items()}
        new = copy.copy(self)
        new.options = {**self.options, **parsed}
        return new

    def numeric_bound(self, fold_storage: str = "fp32") -> float:
        """The largest max |after - before| / max |before| over a model's outputs (ncnn, fp32 options)
        this pass, as configured, may cause in a run with ``fold_storage``."""
        b = self.numeric_bounds
        return float(b(self.options, fold_storage) if callable(b) else b.get(fold_storage, b["fp32"]))

    def spec(self) -> str:
        """This pass as spec text, ``name[key=value,...]`` with the options that differ from their default."""
        changed = [(k, v) for k, v in self.options.items()
                   if k in self.option_help and v != self.option_help[k].default]
        if not changed:
            return self.name
        return f"{self.name}[{','.join(f'{k}={option_text(v)}' for k, v in changed)}]"

    def validate(self, graph: Graph) -> None:
        """Raise :class:`NcnnpassError` when this pass's options make no sense for ``graph``; called for
        every pass of a list before the first one runs (a pass given as a ``validate=`` hook uses it)."""
        if self.validator is not None:
            self.validator(graph, **self.options)

    def run(self, graph: Graph, ctx: PassContext) -> dict[str, int]:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class RulePass(Pass):
    """A pass made of declarative rules (pattern text plus optional Python hooks)."""

    def __init__(self, name: str, doc: str, text: str, hooks: dict[str, Callable[..., Any]] | None = None, *,
                 needs_shapes: bool = False, file: str | None = None,
                 options: dict[str, Option | tuple[Any, str]] | None = None,
                 enabled: Callable[[Rule, dict[str, Any]], bool] | None = None,
                 validate: Callable[..., None] | None = None, numeric_bounds: Bounds = EXACT) -> None:
        self.name = name
        self.doc = doc
        self.text = text
        self.hooks = dict(hooks or {})
        self.needs_shapes = needs_shapes
        self.file = file or f"<pass {name}>"
        self.option_help = dict(options or {})
        self.enabled = enabled
        self.validator = validate
        self.numeric_bounds = numeric_bounds
        self._rules: list[Rule] | None = None
        super().__init__()

    @property
    def rules(self) -> list[Rule]:
        """The compiled rules (compiled on first use, then shared by every run and copy)."""
        if self._rules is None:
            self._rules = compile_rules(self.text, self.hooks, self.file)
        return self._rules

    def configure(self, **options: Any) -> Pass:
        self.rules  # noqa: B018 - compile before copying so every configured copy shares the rules
        return super().configure(**options)

    def run(self, graph: Graph, ctx: PassContext) -> dict[str, int]:
        rules = [r for r in self.rules if self.enabled is None or self.enabled(r, self.options)]
        ctx.options = self.options
        return run_rules(graph, rules, ctx)


class FunctionPass(Pass):
    """A pass written as a Python function ``fn(graph, ctx, **options) -> int | dict``; ``validate(graph,
    **options)`` raises when the options make no sense for the graph (run before any pass of the list)."""

    def __init__(self, name: str, doc: str, fn: Callable[..., int | dict[str, int]], *,
                 needs_shapes: bool = False, options: dict[str, Option | tuple[Any, str]] | None = None,
                 validate: Callable[..., None] | None = None, terminal: bool = False,
                 numeric_bounds: Bounds = EXACT) -> None:
        self.name = name
        self.doc = doc
        self.fn = fn
        self.validator = validate
        self.needs_shapes = needs_shapes
        self.terminal = terminal
        self.numeric_bounds = numeric_bounds
        self.option_help = dict(options or {})
        super().__init__()

    def run(self, graph: Graph, ctx: PassContext) -> dict[str, int]:
        ctx.options = self.options
        result = self.fn(graph, ctx, **self.options)
        if isinstance(result, dict):
            return {k: int(v) for k, v in result.items() if v}
        return {self.name: int(result)} if result else {}


_SHAPE_ROUNDS = 4  # sweeps of one run_rules call that may wait for shapes the batch outdated


def run_rules(graph: Graph, rules: list[Rule], ctx: PassContext, max_rewrites: int | None = None) -> dict[str, int]:
    """Apply ``rules`` until none matches (worklist, linear in graph size); returns counts per rule.

    Every change goes through one :class:`~.rewriter.Rewriter`, whose listener re-queues the layers
    a rewrite touched. When a rule asked for a shape the batch had outdated, shapes are inferred
    again after the batch and the rules get another sweep (at most ``_SHAPE_ROUNDS``).
    """
    by_type: dict[str, list[Rule]] = {}
    for r in sort_rules(rules):
        for t in r.root_types:
            by_type.setdefault(t, []).append(r)
    if not by_type:
        return {}
    counts: Counter = Counter()
    ctx.protected = set(graph.outputs)
    limit = max_rewrites if max_rewrites is not None else 4 * len(graph.layers) + 100
    snapshot: dict[str, Counter] | None = None
    for _ in range(_SHAPE_ROUNDS):
        if snapshot is not None:  # a retry with fresh shapes: the last sweep's skip reasons are void
            ctx.reasons = defaultdict(Counter, {k: Counter(v) for k, v in snapshot.items()})
        snapshot = {k: Counter(v) for k, v in ctx.reasons.items()}
        ctx.stale_shape_asked = False
        n = _sweep(graph, by_type, ctx, counts, limit)
        if n:
            graph.toposort()
        if not ctx.stale_shape_asked or not ctx.refresh_shapes():
            break
    return dict(counts)


def _sweep(graph: Graph, by_type: dict[str, list[Rule]], ctx: PassContext, counts: Counter, limit: int) -> int:
    worklist: deque[Layer] = deque(graph.find(list(by_type)))
    queued = set(worklist)

    def requeue(ly: Layer) -> None:
        if ly.type in by_type and ly not in queued:
            worklist.append(ly)
            queued.add(ly)

    total = sum(counts.values())
    start = total
    with graph.batch(), graph.listening(Rewriter(ctx, requeue)) as rewriter:
        ctx.rewriter = rewriter  # (listening: it forgets the positions of layers that leave the graph)
        try:
            while worklist:
                layer = worklist.popleft()
                queued.discard(layer)
                if layer.graph is not graph:
                    continue
                for rule in by_type.get(layer.type, ()):
                    m = rule.match(layer, ctx)
                    if m is None:
                        continue
                    ctx.rewriter.apply(rule, m)
                    counts[rule.name] += 1
                    total += 1
                    if total > limit:
                        names = ", ".join(sorted({r.name for rs in by_type.values() for r in rs}))
                        raise GraphError(f"rewrite loop: more than {limit} rewrites in one run of rules {names} "
                                         f"(last: {rule.name} at {layer.name!r})")
                    break
        finally:
            ctx.rewriter = None
    return total - start


# -- reporting --------------------------------------------------------------------------------------
@dataclass
class PassStat:
    """What one pass did over a whole :func:`apply_passes` call."""

    name: str
    rewrites: int = 0
    by_rule: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    runs: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # what a pass said about its run (ctx.note)


@dataclass
class PassReport:
    """Per-pass rewrite counts of one :func:`apply_passes` call (``report["gap-fc-to-conv"]`` -> count)."""

    stats: dict[str, PassStat] = field(default_factory=dict)
    iterations: int = 0
    converged: bool = True
    layers_before: int = 0
    layers_after: int = 0

    @property
    def changed(self) -> bool:
        return any(s.rewrites for s in self.stats.values())

    @property
    def counts(self) -> dict[str, int]:
        return {n: s.rewrites for n, s in self.stats.items()}

    def __getitem__(self, name: str) -> int:
        return self.stats[name].rewrites if name in self.stats else 0

    def __str__(self) -> str:
        lines = [f"{'pass':<40} {'rewrites':>8}  {'time':>7}"]
        for s in self.stats.values():
            lines.append(f"{s.name:<40} {s.rewrites:>8}  {s.seconds * 1000:>5.0f}ms")
            for rule, n in sorted(s.by_rule.items()):
                if rule != s.name:
                    lines.append(f"  {rule:<38} {n:>8}")
            for reason, n in s.skipped.most_common(3):
                lines.append(f"  skipped {n}x: {reason}")
            lines.extend(f"  {note}" for note in s.notes)
        state = "fixpoint" if self.converged else "NOT converged (iteration limit)"
        lines.append(f"{'changed' if self.changed else 'unchanged'}: {self.layers_before} -> {self.layers_after} "
                     f"layers, {self.iterations} iteration(s), {state}")
        return "\n".join(lines)


def run_passes(graph: Graph, passes: list[Pass], *, input_shapes: dict[str, tuple[int, ...]] | None = None,
               max_iterations: int = 8, fold_storage: str = "fp32", fixpoint: bool = True,
               verify_each: bool | None = None, progress: Callable[[str], None] | None = None) -> PassReport:
    """Run ``passes`` in order, repeating the list until nothing changes (``max_iterations``). A terminal pass
    (:attr:`Pass.terminal`) runs once where it stands, after the passes before it reached their fixpoint.

    The options of every pass are validated (:meth:`Pass.validate`) before the first pass runs.
    ``verify_each``: run the IR verifier before the first pass and after every pass, and raise a
    :class:`GraphError` naming the pass that broke the graph (:mod:`.verify_each`; default: the
    ``NCNNPASS_VERIFY_EACH`` environment variable, off when unset). ``progress``: where long passes
    (measurements on a target) report what they do."""
    from .verify_each import EachPassVerifier, verify_each_default

    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise NcnnpassError(f"max_iterations must be a positive int, not {max_iterations!r}")
    for p in passes:  # every pass's options, before the first pass touches the graph
        p.validate(graph)
    if verify_each is None:
        verify_each = verify_each_default()
    segments: list[list[Pass]] = [[]]
    for p in passes:
        if p.terminal:
            segments += [[p], []]
        else:
            segments[-1].append(p)
    with contextlib.ExitStack() as stack:
        verifier = stack.enter_context(EachPassVerifier(graph)) if verify_each else None  # (refuses a broken input)
        graph.outputs = list(graph.outputs)  # freeze what counts as an output before anything is rewritten
        ctx = PassContext(graph, input_shapes, fold_storage)
        ctx.progress = progress
        report = PassReport(layers_before=len(graph.layers))
        for p in passes:
            report.stats.setdefault(p.name, PassStat(p.name))
        report.converged = True
        for seg in [s for s in segments if s]:
            once = (len(seg) == 1 and seg[0].terminal) or not fixpoint
            rounds = 1 if once else max_iterations
            for it in range(rounds):
                report.iterations = max(report.iterations, it + 1)
                changed = False
                for p in seg:
                    n, edited = _run_one(p, graph, ctx, report.stats[p.name])
                    if verifier is not None:
                        verifier.after(p.spec(), n, it + 1)
                    changed = changed or edited
                if not changed or once:
                    break
            else:
                report.converged = False
    report.layers_after = len(graph.layers)
    return report


def _run_one(p: Pass, graph: Graph, ctx: PassContext, stat: PassStat) -> tuple[int, bool]:
    """Run one pass once, adding to its statistics; returns its rewrite count and whether the graph changed
    (a pass may edit without reporting rewrites, e.g. keep-fp32's cast boundaries: not a fixpoint)."""
    if p.needs_shapes:
        ctx.refresh_shapes()
        if ctx.shape_error:
            stat.skipped[ctx.shape_error] += 1
    before = {k: Counter(v) for k, v in ctx.reasons.items()}
    ctx.notes = stat.notes
    t0 = time.perf_counter()
    with graph.listening(EditCounter()) as edits:  # edits a pass makes without counting them
        counts = p.run(graph, ctx)
    stat.seconds += time.perf_counter() - t0
    stat.runs += 1
    n = sum(counts.values())
    if n or edits.n:
        ctx.graph_changed()
    stat.rewrites += n
    stat.by_rule.update(counts)
    for rule, c in ctx.reasons.items():
        stat.skipped.update(c - before.get(rule, Counter()))
    return n, bool(n or edits.n)
