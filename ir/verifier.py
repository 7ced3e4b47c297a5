"""The IR verifier: everything a pass can break in a :class:`~ncnnpass.ir.graph.Graph` (MLIR's
``mlir::verify``, LLVM's ``-verify-machineinstrs``).

:func:`verify_graph` returns :class:`~ncnnpass.ir.graph_check.Problem` records (``[]`` when the graph is
sound); :func:`require_valid` raises :class:`~ncnnpass.ir.errors.GraphError` naming the first ones. What
it checks, in this order (a graph whose wiring is broken is not asked the later questions, which would
only fail on the same cause):

1. ``graph.layers``: each layer once, alive (``layer.graph is graph``);
2. the blob table equals what the layers' inputs and outputs say: one producer per blob, one consumer
   entry per input slot, no blob nobody touches, no dead layer referenced;
3. the layer index (by name, shared names, by type, positions) agrees with ``graph.layers``;
4. the Split book: every recorded consumer slot ``(layer, i)`` is alive and ``layer.inputs[i]`` is the
   blob (or the slot is ``None``), every layer it names is one it listens for;
5. names: layers share a name only when the loaded file shared it; no layer or blob took the name of a
   recorded or retired Split;
6. weights: the arrays the params call for, each of its stored size (and :meth:`Graph.check`: a valid
   topological order, known types, names ncnn reads, protected outputs present);
7. with ``round_trip``: :meth:`Graph.copy` and the text round trip (``to_param_text``/``to_bin_bytes``
   -> :meth:`Graph.from_text` -> text and bytes again) give the same text and bytes.

It reads the graph through its public API only. Cost: linear in the graph; the round trip (one parse,
four writes) is most of it. ``docs/DEVELOPING.md`` has the figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import schema as _schema
from .errors import GraphError, NcnnpassError
from .graph_check import Problem, graph_errors

if TYPE_CHECKING:
    from .graph import Graph, Layer
    from .weights import Weight

__all__ = ["describe", "new_problems", "require_valid", "round_trip_problems", "structure_problems", "verify_graph",
           "written_form"]

MAX_LISTED = 3  # problems quoted in a GraphError


def verify_graph(graph: Graph, *, round_trip: bool = True) -> list[Problem]:
    """Everything wrong with ``graph`` as an IR (``[]`` when it is sound); see the module docstring."""
    problems = structure_problems(graph)
    if problems:  # the later checks index blobs and positions: they would only trip over the same cause
        return problems
    problems += graph_errors(graph)
    if round_trip:
        written = written_form(graph)
        problems += [written] if isinstance(written, Problem) else round_trip_problems(graph, written)
    return problems


def structure_problems(graph: Graph) -> list[Problem]:
    """Checks 1-5 and the stored size of each weight (6): what no edit through the graph's API can break."""
    problems = _layer_list(graph)
    problems += _blob_table(graph)
    if problems:
        return problems
    return _layer_index(graph) + _split_book(graph) + _names(graph) + _weight_sizes(graph)


def require_valid(graph: Graph, *, round_trip: bool = True, what: str = "the graph") -> None:
    """Raise :class:`GraphError` (``"<what> is broken: ..."``) unless :func:`verify_graph` finds nothing."""
    problems = verify_graph(graph, round_trip=round_trip)
    if problems:
        raise GraphError(f"{what} is broken: {describe(problems)}")


def describe(problems: list[Problem]) -> str:
    """The first problems on one line, with the count of the others."""
    text = "; ".join(str(p) for p in problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    return text + (f" (+{more} more)" if more > 0 else "")


# -- 1. the layer list ----------------------------------------------------------------------------------
def _layer_list(g: Graph) -> list[Problem]:
    out: list[Problem] = []
    seen: set[int] = set()
    for ly in g.layers:
        if id(ly) in seen:
            out.append(Problem("layer-list", f"layer {ly.name!r} is in graph.layers twice", ly.name))
        seen.add(id(ly))
        if ly.graph is not g:
            out.append(Problem("dead-layer", f"graph.layers holds layer {ly.name!r}, which is not part of the "
                               "graph (removed, or from another graph)", ly.name))
        if len(set(ly.outputs)) != len(ly.outputs):
            out.append(Problem("blobs", f"layer {ly.name!r} lists an output twice: {', '.join(ly.outputs)}", ly.name))
    return out


def _alive(g: Graph, layer: Layer | None, live: set[int]) -> bool:
    return layer is not None and layer.graph is g and id(layer) in live


# -- 2. producers and consumers -----------------------------------------------------------------------------
def _blob_table(g: Graph) -> list[Problem]:
    """The blob table rebuilt from the layers' wiring, compared entry by entry with ``graph.blobs``."""
    out: list[Problem] = []
    producer: dict[str, Layer] = {}
    readers: dict[str, list[Layer]] = {}
    live: set[int] = set()
    for ly in g.layers:
        live.add(id(ly))
        for n in ly.inputs:
            r = readers.get(n)
            if r is None:
                readers[n] = [ly]
            else:
                r.append(ly)
        for n in ly.outputs:
            first = producer.setdefault(n, ly)
            if first is not ly:
                out.append(Problem("blobs", f"blob {n!r} is produced by both {first.name!r} and {ly.name!r}", ly.name))
    blobs = g.blobs
    for name in sorted((producer.keys() | readers.keys()) - blobs.keys()):
        who = producer.get(name) or readers[name][0]
        out.append(Problem("blobs", f"layer {who.name!r} uses blob {name!r}, which the blob table lacks", who.name))
    for name, b in blobs.items():
        want, got = readers.get(name, ()), b.consumers
        if b.name != name:
            out.append(Problem("blobs", f"the blob table holds blob {b.name!r} under the name {name!r}"))
        for ly in (b.producer, *got):
            if ly is not None and not _alive(g, ly, live):
                out.append(Problem("dead-layer", f"blob {name!r} refers to layer {ly.name!r}, which is not in the graph",
                                   ly.name))
        if b.producer is not producer.get(name):
            out.append(Problem("blobs", f"blob {name!r} has producer {_name(b.producer)} in the blob table but "
                               f"{_name(producer.get(name))} by the layers' outputs", _name(producer.get(name), None)))
        if len(got) != len(want) or (got != want and sorted(map(id, got)) != sorted(map(id, want))):
            out.append(Problem("blobs", f"blob {name!r} lists consumers [{', '.join(c.name for c in got)}] but the "
                               f"layers reading it are [{', '.join(c.name for c in want)}] (one entry per input slot)",
                               name))
        if b.producer is None and not got:
            out.append(Problem("blobs", f"blob {name!r} has neither producer nor consumers (left behind)"))
    return out


def _name(layer: Layer | None, none: str | None = "none") -> str | None:
    return repr(layer.name) if layer is not None else none


# -- 3. the layer index -------------------------------------------------------------------------------------
def _layer_index(g: Graph) -> list[Problem]:
    out: list[Problem] = []
    by_name: dict[str, list[Layer]] = {}
    types: Counter = Counter()
    for ly in g.layers:
        by_name.setdefault(ly.name, []).append(ly)
        types[ly.type] += 1
    indexed = g.layer_names()
    if indexed != set(by_name):
        extra, missing = sorted(indexed - set(by_name)), sorted(set(by_name) - indexed)
        out.append(Problem("index", f"the name index differs from the layers: indexed but absent "
                           f"{extra[:3]}, present but not indexed {missing[:3]}"))
    for name in sorted(indexed & set(by_name)):
        first = g.layer(name)
        if first.graph is not g or first.name != name or all(first is not ly for ly in by_name[name]):
            out.append(Problem("index", f"graph.layer({name!r}) gives {first!r}, not a layer of the graph named so", name))
    shared = g.duplicate_layer_names()
    want_shared = {n: ls for n, ls in by_name.items() if len(ls) > 1}
    for name in sorted(set(shared) | set(want_shared)):
        if {id(ly) for ly in shared.get(name, ())} != {id(ly) for ly in want_shared.get(name, ())}:
            out.append(Problem("index", f"the index of the shared name {name!r} disagrees with the layers", name))
    for t in sorted(set(types) | _schema.KNOWN_TYPES):
        if g.count_by_type(t) != types.get(t, 0):
            out.append(Problem("index", f"the type index counts {g.count_by_type(t)} {t} layers, the graph has "
                               f"{types.get(t, 0)} (a layer's type changed outside the graph?)"))
    for i, ly in enumerate(g.layers):
        try:
            pos = g.position(ly)
        except KeyError:
            pos = None
        if pos != i:
            out.append(Problem("index", f"graph.position({ly.name!r}) is {pos}, the layer stands at {i} "
                               "(graph.layers changed behind the graph's back)", ly.name))
            break
    return out


# -- 4. the Split book ----------------------------------------------------------------------------------------
def _split_book(g: Graph) -> list[Problem]:
    out: list[Problem] = []
    live = {id(ly) for ly in g.layers}
    listened = {id(ly) for ly in g.splits.readers()}
    for ly in g.splits.readers():
        if not _alive(g, ly, live):
            out.append(Problem("splits", f"the Split book refers to layer {ly.name!r}, which is not in the graph",
                               ly.name))
    for blob, rec in g.splits.items():
        if len(rec.slots) != len(rec.top_names):
            out.append(Problem("splits", f"the Split record of {blob!r} has {len(rec.top_names)} tops but "
                               f"{len(rec.slots)} consumer slots"))
        if len(set(rec.top_names)) != len(rec.top_names):
            out.append(Problem("splits", f"the Split record of {blob!r} names a top twice"))
        for slot in rec.slots:
            if slot is None:
                continue
            ly, i = slot
            if not _alive(g, ly, live):
                out.append(Problem("splits", f"the Split record of {blob!r} holds layer {ly.name!r}, which is not in "
                                   "the graph", ly.name))
            elif not (0 <= i < len(ly.inputs) and ly.inputs[i] == blob):
                got = ly.inputs[i] if 0 <= i < len(ly.inputs) else "nothing"
                out.append(Problem("splits", f"the Split record of {blob!r} says input {i} of {ly.name!r} reads it; "
                                   f"that input is {got!r}", ly.name))
            if id(ly) not in listened:
                out.append(Problem("splits", f"the Split record of {blob!r} holds layer {ly.name!r} without "
                                   "listening for its edits (SplitBook.readers)", ly.name))
    return out


# -- 5. names an edit created ---------------------------------------------------------------------------------
def _names(g: Graph) -> list[Problem]:
    out: list[Problem] = []
    loaded_shared = g.loaded_shared_names
    for name, layers in g.duplicate_layer_names().items():
        if name not in loaded_shared:
            out.append(Problem("names", f"{len(layers)} layers are named {name!r}, a name the loaded file did not "
                               "share (an edit must give new layers unique names)", name))
    layer_names = g.layer_names()
    for blob, rec in g.splits.items():
        if rec.layer_name in layer_names and rec.layer_name not in loaded_shared:
            out.append(Problem("names", f"layer {rec.layer_name!r} took the name of the Split of {blob!r}",
                               rec.layer_name))
        taken = [t for t in rec.top_names if t in g.blobs]
        if taken:
            out.append(Problem("names", f"blob {taken[0]!r} took the name of a top of the Split of {blob!r}"))
    for name in sorted(g.splits.retired & layer_names - loaded_shared):
        out.append(Problem("names", f"layer {name!r} took the name of a Split of the loaded file", name))
    return out


# -- 6. weights ---------------------------------------------------------------------------------------------
_PAYLOAD_BYTES = {"fp32": 4, "fp32s": 4, "raw": 4, "fp16": 2, "bf16": 2, "int8": 1}


def _stored_bytes(w: Weight) -> int | None:
    """The bytes a weight of its count and storage takes in a ``.bin`` (None: unknown storage)."""
    per = _PAYLOAD_BYTES.get(w.storage)
    if per is None and w.storage != "table":
        return None
    payload = 1024 + w.count if w.storage == "table" else per * w.count
    return (4 if w.tagged else 0) + (payload + 3) // 4 * 4


def _weight_sizes(g: Graph) -> list[Problem]:
    """Each held array is as long as its count and storage say (the layout itself: :meth:`Layer.check_weights`,
    asked by :func:`graph_errors`)."""
    out: list[Problem] = []
    for ly in g.layers:
        for name, w in ly.weights.items():
            if w.name != name:
                out.append(Problem("weights", f"layer {ly.name!r} holds weight {w.name!r} under the name {name!r}",
                                   ly.name))
            if w.edited:
                if w.data.size != w.count:
                    out.append(Problem("weights", f"layer {ly.name!r} weight {name!r} holds {w.data.size} values, "
                                       f"its count is {w.count}", ly.name))
                continue
            want = _stored_bytes(w)
            if want is not None and len(w.file_bytes()) != want:
                out.append(Problem("weights", f"layer {ly.name!r} weight {name!r} has {len(w.file_bytes())} bytes; "
                                   f"{w.count} x {w.storage} take {want}", ly.name))
    return out


# -- 7. copy and round trip -----------------------------------------------------------------------------------
def _has_weights(g: Graph) -> bool:
    return g.source[1] is not None or any(ly.weights for ly in g.layers)


Written = tuple[str, bytes | None]


def written_form(graph: Graph, text: str | None = None) -> Written | Problem:
    """``(param text, bin bytes or None for a graph without weights)``, or the Problem that stops writing
    (``text``: the graph's ``to_param_text()`` when the caller has it)."""
    try:
        return text or graph.to_param_text(), (graph.to_bin_bytes() if _has_weights(graph) else None)
    except (NcnnpassError, ValueError, TypeError) as exc:  # (a param value the writer cannot spell)
        return Problem("round-trip", f"the graph cannot be written: {exc}")


def round_trip_problems(graph: Graph, written: Written) -> list[Problem]:
    """:meth:`Graph.copy` and :meth:`Graph.from_text` of ``written`` (:func:`written_form`) write it again."""
    from .graph import Graph as _Graph
    from .parser import gc_paused

    text, data = written
    out: list[Problem] = []
    for what, build in (("copy()", graph.copy),
                        ("the text round trip", lambda: _Graph.from_text(text, data, file="<verifier>"))):
        try:
            with gc_paused():  # (two graphs of small objects and no cycles: collections only cost time)
                other = build()
                same_text = other.to_param_text() == text
                same_bytes = data is None or other.to_bin_bytes() == data
        except (NcnnpassError, KeyError, ValueError) as exc:  # KeyError: a copy over a dead reference
            out.append(Problem("round-trip", f"{what} failed: {type(exc).__name__}: {exc}"))
            continue
        if not same_text:
            out.append(Problem("round-trip", f"{what} writes other .param text: {_first_diff(text, other)}"))
        if not same_bytes:
            out.append(Problem("round-trip", f"{what} writes other .bin bytes"))
    return out


def _first_diff(text: str, other: Graph) -> str:
    a, b = text.splitlines(), other.to_param_text().splitlines()
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"line {k + 1}: {' '.join(x.split())!r} vs {' '.join(y.split())!r}"
    return f"{len(a)} vs {len(b)} lines"


def new_problems(before: Iterable[Problem], after: list[Problem]) -> list[Problem]:
    """The problems of ``after`` that ``before`` did not have (by message)."""
    seen = {str(p) for p in before}
    return [p for p in after if str(p) not in seen]
