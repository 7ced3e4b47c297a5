"""Compiling pattern text into rules: load-time checks and the match plan.

A rule is compiled once. Its *root* is the last match line that produces a boundary output; a
*plan* orders the other lines so each is reached from one already matched: as the producer of a
blob it reads (deterministic, every blob has one producer) or as a consumer of a blob it touches
(the few consumers of that blob are tried in graph order, with backtracking). Everything that can be
checked without a graph is checked here, with the file:line:column of the pattern text: unknown
layer types and param names, unbound captures and names, blobs the replacement does not produce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ncnnpass.ir import layer_types as _layer_types
from ncnnpass.ir import schema as _schema
from ncnnpass.ir.errors import PatternSyntaxError

from .builtins import BUILTINS
from .expr import names_used
from .syntax import Node, Pos, RuleText


@dataclass
class _Test:
    pid: int
    op: str
    kind: str
    value: Any
    text: str


@dataclass
class _PLayer:
    index: int
    handle: str
    types: frozenset[str]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tests: list[_Test]
    mentioned: frozenset[int]
    rest: bool
    deferred: list[_Test]


@dataclass
class _Step:
    kind: str          # "producer" or "consumer"
    player: int        # pattern layer to match
    var: str           # the blob variable that leads to it
    slot: int          # output index (producer) or input index (consumer) of that variable on player



class CompiledRule:
    """The compiled, checked form of one rule (no graph needed). :class:`~.rule.Rule` adds matching
    and rewriting."""

    def __init__(self, text: RuleText, hooks: dict[str, Callable[..., Any]] | None, file: str,
                 order: int = 0, match_only: bool = False) -> None:
        self.file = file
        self.name = text.name
        self.doc = text.doc
        self.order = order
        self.functions: dict[str, Callable[..., Any]] = {**BUILTINS, **(hooks or {})}
        self._text = text
        self._key_cache: dict[tuple[str, str], int] = {}
        self._compile_match(text)
        self.benefit = text.benefit if text.benefit is not None else len(self.players)
        self.where = list(text.where)
        self.aliases = [(a.old, a.new) for a in text.aliases]
        self.replace = list(text.replace)
        self.assigns = list(text.weights)
        self.match_only = match_only
        if match_only:
            if self.replace or self.aliases or self.assigns:
                raise self._err("this pattern is for matching only: remove the replace/weights sections", text.pos)
            self.rep_handles: set[str] = set()
        else:
            self._check_replace(text)
        self._check_names(text)
        for rl in self.replace:
            for it in rl.items:
                if it.kind in ("set", "drop") and rl.type is not None:
                    self._key(rl.type, it.key, it.pos)

    # -- compile -----------------------------------------------------------------------------------
    def _err(self, message: str, pos: Pos | None) -> PatternSyntaxError:
        pos = pos or self._text.pos
        return PatternSyntaxError(f"rule {self.name}: {message}", self.file, pos.line, pos.column)

    def _key(self, type_: str, key: str, pos: Pos | None) -> int:
        cached = self._key_cache.get((type_, key))
        if cached is not None:
            return cached
        if key.isdigit():
            pid = int(key)
            if not 0 <= pid <= 31:
                raise self._err(f"param id {pid} is out of range 0..31", pos)
        else:
            try:
                pid = _schema.param_id_of(type_, key)
            except KeyError:
                raise self._err(f"{type_} has no param named {key!r} (use its numeric id)", pos) from None
        self._key_cache[(type_, key)] = pid
        return pid

    def _expand_types(self, names: Iterable[str], pos: Pos | None) -> list[str]:
        """Layer types of a match line: ncnn type names and trait groups (``conv_like``), in order."""
        out: list[str] = []
        for t in names:
            if t in _layer_types.KNOWN_TYPES:
                group = (t,)
            elif _layer_types.is_group(t):
                group = tuple(sorted(_layer_types.types_with(t)))
            else:
                raise self._err(f"unknown layer type {t!r}", pos)
            out += [x for x in group if x not in out]
        return out

    def _compile_match(self, text: RuleText) -> None:
        handles: set[str] = set()
        self.players: list[_PLayer] = []
        produced: dict[str, tuple[int, int]] = {}
        consumed: dict[str, list[tuple[int, int]]] = {}
        shared: set[str] = set()
        for i, pl in enumerate(text.match):
            if pl.handle in handles:
                raise self._err(f"handle {pl.handle!r} is used twice in match", pl.pos)
            handles.add(pl.handle)
            types = self._expand_types(pl.types, pl.pos)
            tests, deferred, mentioned = [], [], set()
            for pt in pl.tests:
                pids = {self._key(t, pt.key, pt.pos) for t in types}
                if len(pids) != 1:
                    raise self._err(f"param {pt.key!r} has different ids in {', '.join(types)}", pt.pos)
                pid = pids.pop()
                if pid in mentioned:
                    raise self._err(f"param {pt.key} is tested twice on {pl.handle}", pt.pos)
                mentioned.add(pid)
                test = _Test(pid, pt.op, pt.kind, pt.value, f"{pl.handle}.{pt.key}")
                (deferred if pt.kind == "computed" else tests).append(test)
            for k, v in enumerate(pl.outputs):
                if v in produced:
                    raise self._err(f"blob {v!r} is produced twice in match", pl.pos)
                produced[v] = (i, k)
            for k, v in enumerate(pl.inputs):
                consumed.setdefault(v, []).append((i, k))
            shared |= pl.shared
            self.players.append(_PLayer(i, pl.handle, frozenset(types), tuple(pl.inputs), tuple(pl.outputs),
                                        tests, frozenset(mentioned), pl.rest, deferred))
        if not self.players:
            raise self._err("the match section is empty", None)
        for i, pl in enumerate(text.match):  # a variable cannot be read before... any order is fine
            for v in pl.inputs:
                if v in produced and produced[v][0] == i:
                    raise self._err(f"layer {pl.handle} reads its own output {v!r}", pl.pos)
        self.handles = {p.handle: p for p in self.players}
        self.produced = produced
        self.consumed = consumed
        self.inputs = [v for v in consumed if v not in produced]
        self.outputs = [v for v in produced if v not in consumed]
        self.internal = [v for v in produced if v in consumed]
        self.shared = shared & set(self.internal)
        for v in shared - set(produced) - set(self.inputs):  # pragma: no cover - syntax prevents it
            raise self._err(f"blob {v!r} marked '!' is not in the match", None)
        if not self.outputs:
            raise self._err("the match produces no boundary output (a cycle?)", text.match[-1].pos)
        out_set = set(self.outputs)
        root = max(i for i, p in enumerate(self.players) if out_set & set(p.outputs))
        self.root = root
        self.root_types = self.players[root].types
        # plan: producers first (deterministic), then consumers (enumerated)
        planned = {root}
        steps: list[_Step] = []
        frontier = [root]
        while len(planned) < len(self.players):
            progress = False
            for i in list(frontier):
                for v in self.players[i].inputs:
                    if v in produced and produced[v][0] not in planned:
                        j, k = produced[v]
                        steps.append(_Step("producer", j, v, k))
                        planned.add(j)
                        frontier.append(j)
                        progress = True
            if progress:
                continue
            for i in list(frontier):
                p = self.players[i]
                for v in (*p.inputs, *p.outputs):
                    for j, k in consumed.get(v, ()):
                        if j not in planned:
                            steps.append(_Step("consumer", j, v, k))
                            planned.add(j)
                            frontier.append(j)
                            progress = True
                            break
                    if progress:
                        break
                if progress:
                    break
            if not progress:
                lost = [self.players[i].handle for i in range(len(self.players)) if i not in planned]
                raise self._err(f"match layers {', '.join(lost)} are not connected to {self.players[root].handle}",
                                text.match[0].pos)
        self.steps = steps
        self.captures_bound = {t.value for p in self.players for t in p.tests if t.kind == "capture" and t.op == "="}

    def _check_replace(self, text: RuleText) -> None:
        avail = set(self.inputs)
        produced_by_rep: set[str] = set()
        rep_handles: set[str] = set()
        consumed_later: dict[str, int] = {}
        for rl in self.replace:
            if rl.handle in rep_handles:
                raise self._err(f"handle {rl.handle!r} is used twice in replace", rl.pos)
            rep_handles.add(rl.handle)
            if rl.type is not None and rl.type not in _schema.KNOWN_TYPES:
                raise self._err(f"unknown layer type {rl.type!r}", rl.pos)
            if rl.copy_type is not None and rl.copy_type not in self.handles:
                raise self._err(f"@{rl.copy_type} is not a matched layer", rl.pos)
            for it in rl.items:
                if it.kind == "copy" and it.key not in self.handles:
                    raise self._err(f"@{it.key} is not a matched layer", it.pos)
                if it.kind == "set":
                    self._check_value_captures(it.value_kind, it.value, it.pos)
            for v in rl.inputs:
                if v not in avail:
                    why = ("is consumed inside the match and not produced again by an earlier replacement line"
                           if v in self.produced else "is not bound by the match")
                    raise self._err(f"replacement layer {rl.handle} reads blob {v!r}, which {why}", rl.pos)
                consumed_later[v] = consumed_later.get(v, 0) + 1
            for v in rl.outputs:
                if v in produced_by_rep or v in self.inputs:
                    raise self._err(f"replacement produces blob {v!r}, which already has a producer", rl.pos)
                produced_by_rep.add(v)
                avail.add(v)
        self.rep_handles = rep_handles
        aliased = set()
        for a in text.aliases:
            if a.old not in self.produced:
                raise self._err(f"{a.old} := ...: {a.old!r} is not produced by the match", a.pos)
            if a.new not in avail:
                raise self._err(f"... := {a.new}: blob {a.new!r} is not available after the replacement", a.pos)
            if a.old in produced_by_rep:
                raise self._err(f"blob {a.old!r} is both produced by the replacement and aliased", a.pos)
            aliased.add(a.old)
        for v in [*self.outputs, *sorted(self.shared)]:
            if v not in produced_by_rep and v not in aliased:
                raise self._err(f"the replacement must produce blob {v!r} (or alias it with {v} := ...)",
                                text.replace[0].pos if text.replace else text.pos)
        for v in produced_by_rep:
            if v not in self.produced and v not in consumed_later and v not in {a.new for a in text.aliases}:
                rl = next(r for r in self.replace if v in r.outputs)
                raise self._err(f"replacement blob {v!r} is never read", rl.pos)
        for asg in self.assigns:
            if asg.handle not in rep_handles:
                raise self._err(f"weights: {asg.handle!r} is not a replacement layer", asg.pos)

    def _check_value_captures(self, kind: str | None, value: Any, pos: Pos | None) -> None:
        if kind == "capture" and value not in self.captures_bound:
            raise self._err(f"capture %{value} is not bound by the match", pos)

    def _check_names(self, text: RuleText) -> None:
        known = set(self.handles) | set(self.produced) | set(self.inputs) | set(self.functions)
        exprs: list[Node] = list(self.where)
        for p in self.players:
            exprs += [t.value for t in p.deferred]
        for rl in self.replace:
            exprs += [it.value for it in rl.items if it.kind == "set" and it.value_kind == "computed"]
        exprs += [a.expr for a in self.assigns]
        for e in exprs:
            for n in names_used(e):
                if n.kind == "capture" and n.args[0] not in self.captures_bound:
                    raise self._err(f"capture %{n.args[0]} is not bound by the match", n.pos)
                if n.kind == "name" and n.args[0] not in known:
                    raise self._err(f"unknown name {n.args[0]!r} (not a handle, blob or function)", n.pos)
