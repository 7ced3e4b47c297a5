"""Compiled rewrite rules: checking at load time, matching from a root layer, rewriting.

A rule is compiled once. Its *root* is the last match line that produces a boundary output; a
*plan* orders the other lines so each is reached from one already matched: as the producer of a
blob it reads (deterministic, every blob has one producer) or as a consumer of a blob it touches
(the few consumers of that blob are tried in graph order, with backtracking). A match costs
O(pattern size × fan-out), so a sweep over the layers of the root's type is linear in graph size.

Safety: a blob produced and consumed inside the match (an *internal* blob) may have no other
consumer and may not be a protected output, unless written ``t!``; then the replacement must produce
it again. Outputs of the match keep their names, so outside consumers and protected outputs are
untouched. Replacement layers whose outputs end up unused are dropped.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncnnpass.ir import Layer, ParamDict, Weight, weight_slots
from ncnnpass.ir import layer_types as _layer_types
from ncnnpass.ir import schema as _schema
from ncnnpass.ir.errors import GraphError, PatternSyntaxError

from .builtins import BUILTINS
from .context import PassContext
from .expr import Env, EvalError, Unknown, evaluate, names_used, truth, values_equal
from .syntax import Node, ParamTest, PatLine, Pos, RepItem, RepLine, RuleText, parse_rules

_RESERVED_IDS = (_schema.SHAPE_HINT_ID, _schema.FEATMASK_ID)
_LAYER_ATTRS = ("type", "name", "inputs", "outputs", "featmask", "params", "weights")


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


class Match:
    """A successful match: matched layers by handle, blob names by variable, captured values."""

    __slots__ = ("rule", "ctx", "layers", "blobs", "captures", "protected")

    def __init__(self, rule: Rule, ctx: PassContext, layers: dict[str, Layer], blobs: dict[str, str],
                 captures: dict[str, Any], protected: set[str]) -> None:
        self.rule = rule
        self.ctx = ctx
        self.layers = layers
        self.blobs = blobs
        self.captures = captures
        self.protected = protected

    def __getitem__(self, capture: str) -> Any:
        return self.captures[capture]

    def layer(self, handle: str) -> Layer:
        return self.layers[handle]

    def blob(self, var: str) -> str:
        return self.blobs[var]

    def weight(self, handle: str, slot: str) -> np.ndarray:
        return self.layers[handle].weight(slot)

    def shape(self, var: str) -> tuple[int, ...] | None:
        return self.ctx.shape(self.blobs[var])

    def storage_for(self, w: Weight | None) -> str:
        """Storage for a computed (folded) weight derived from ``w``: fp32 unless the run keeps storage."""
        if w is not None and self.ctx.fold_storage == "keep" and w.storage in ("fp16", "bf16"):
            return w.storage
        return "fp32"

    def __repr__(self) -> str:
        inner = ", ".join(f"{h}={ly.name}" for h, ly in self.layers.items())
        return f"<Match {self.rule.name}: {inner}>"


class _MatchEnv(Env):
    def __init__(self, m: Match) -> None:
        self.m = m

    def name(self, name: str, node: Node) -> Any:
        m = self.m
        if name in m.layers:
            return m.layers[name]
        if name in m.blobs:
            return m.ctx.graph.blobs.get(m.blobs[name]) or m.blobs[name]
        fn = m.rule.functions.get(name)
        if fn is not None:
            return fn
        raise EvalError(f"rule {m.rule.name}: unknown name {name!r}")

    def capture(self, name: str, node: Node) -> Any:
        try:
            return self.m.captures[name]
        except KeyError:
            raise EvalError(f"rule {self.m.rule.name}: capture %{name} is not bound") from None

    def attr(self, obj: Any, name: str, node: Node) -> Any:
        if isinstance(obj, Layer):
            if name in obj.weights:
                return obj.weights[name]
            if name in _LAYER_ATTRS:
                return getattr(obj, name)
            try:
                return obj.get(name)
            except KeyError:
                raise EvalError(f"rule {self.m.rule.name}: {obj.type} {obj.name!r} has no param or weight "
                                f"{name!r}") from None
        if isinstance(obj, Weight):
            if name in ("storage", "count", "tagged"):
                return getattr(obj, name)
            if name == "data":
                return obj.float32()
        from ncnnpass.ir import Blob

        if isinstance(obj, Blob):
            if name == "name":
                return obj.name
            s = self.m.ctx.shape(obj.name)
            if name == "shape":
                return s if s is not None else Unknown(f"shape of blob {obj.name!r} unknown")
            if name in ("c", "h", "w"):
                if s is None or len(s) != 3:
                    return Unknown(f"blob {obj.name!r} is not known to be 3-D")
                return s["chw".index(name)]
        if isinstance(obj, np.ndarray) and name in ("shape", "size", "ndim"):
            return getattr(obj, name)
        raise EvalError(f"rule {self.m.rule.name}: {type(obj).__name__} has no attribute {name!r}")

    def call(self, fn: Any, args: list[Any], node: Node) -> Any:
        if not callable(fn):
            raise EvalError(f"rule {self.m.rule.name}: {node.text or 'value'} is not callable")
        for a in args:
            if isinstance(a, Unknown):
                return a
        try:
            return fn(self.m, *args)
        except (EvalError, PatternSyntaxError):
            raise
        except Exception as exc:  # a hook's own failure: name the rule and the call
            raise EvalError(f"rule {self.m.rule.name}: {node.text or 'call'} failed: {type(exc).__name__}: "
                            f"{exc}") from exc


class Rule:
    """One compiled rewrite rule. Build with :func:`compile_rules`."""

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

    # -- matching ----------------------------------------------------------------------------------
    def match(self, layer: Layer, ctx: PassContext) -> Match | None:
        """Match with ``layer`` as the root; ``None`` (and a recorded reason) when it does not fit."""
        root = self.players[self.root]
        if layer.type not in root.types:
            return None
        state = _State({}, {}, {}, set())
        if not self._check_layer(root, layer, state):
            return None
        result = self._search(0, state, ctx)
        if result is None:
            return None
        m = Match(self, ctx, result.layers, result.blobs, result.caps, ctx.protected)
        reason = self._check_match(m)
        if reason is not None:
            ctx.skip(self.name, reason)
            return None
        return m

    def _search(self, k: int, state: _State, ctx: PassContext) -> _State | None:
        if k == len(self.steps):
            return state
        step = self.steps[k]
        pl = self.players[step.player]
        g = ctx.graph
        blob = g.blobs.get(state.blobs[step.var])
        if blob is None:
            return None
        if step.kind == "producer":
            p = blob.producer
            if p is None or len(p.outputs) <= step.slot or p.outputs[step.slot] != blob.name:
                return None
            st = state.copy()
            if not self._check_layer(pl, p, st):
                return None
            return self._search(k + 1, st, ctx)
        for c in dict.fromkeys(blob.consumers):
            if len(c.inputs) <= step.slot or c.inputs[step.slot] != blob.name or c in state.used:
                continue
            st = state.copy()
            if self._check_layer(pl, c, st):
                found = self._search(k + 1, st, ctx)
                if found is not None:
                    return found
        return None

    def _check_layer(self, pl: _PLayer, layer: Layer, st: _State) -> bool:
        if layer.type not in pl.types or layer in st.used:
            return False
        if len(layer.inputs) != len(pl.inputs) or len(layer.outputs) != len(pl.outputs):
            return False
        for var, name in zip(pl.inputs, layer.inputs, strict=True):
            bound = st.blobs.get(var)
            if bound is None:
                st.blobs[var] = name
            elif bound != name:
                return False
        for var, name in zip(pl.outputs, layer.outputs, strict=True):
            bound = st.blobs.get(var)
            if bound is None:
                st.blobs[var] = name
            elif bound != name:
                return False
        params = layer.params
        ltype = layer.type
        for t in pl.tests:
            v = _schema.get_param(ltype, params, t.pid)
            if not _test(t, v, st.caps):
                return False
        if not pl.rest:
            for pid in params:
                if pid in pl.mentioned or pid in _RESERVED_IDS:
                    continue
                if not values_equal(params[pid], _default(ltype, params, pid)):
                    return False
        st.layers[pl.handle] = layer
        st.used.add(layer)
        return True

    def _check_match(self, m: Match) -> str | None:
        g = m.ctx.graph
        counts: dict[str, int] = {}
        for v in self.internal:
            counts[v] = len(self.consumed[v])
        for v in self.internal:
            if v in self.shared:
                continue
            name = m.blobs[v]
            if name in m.protected:
                return f"internal blob {v} ({name}) is a protected output"
            if len(g.blobs[name].consumers) != counts[v]:
                return f"internal blob {v} ({name}) has consumers outside the match"
        for old, _new in self.aliases:
            if m.blobs[old] in m.protected:
                return f"blob {old} ({m.blobs[old]}) is a protected output and cannot be bypassed"
        env = _MatchEnv(m)
        for p in self.players:
            layer = m.layers[p.handle]
            for t in p.deferred:
                value = evaluate(t.value, env)
                if isinstance(value, Unknown):
                    return value.reason
                if not _compare(t.op, _schema.get_param(layer.type, layer.params, t.pid), value):
                    return f"param {t.text} does not satisfy {{{t.value.text}}}"
        for w in self.where:
            value = evaluate(w, env)
            if isinstance(value, Unknown):
                return value.reason
            if not truth(value):
                return f"where: {w.text}"
        if self.assigns and not m.ctx.weights_loaded:
            return "no weights loaded (the rule computes weights)"
        if len(self.outputs) + len(self.shared) > 1 and self._creates_cycle(m):
            return "the replacement would create a cycle"
        return None

    def _creates_cycle(self, m: Match) -> bool:
        """Would a path from an output of the match back to one of its inputs close a loop?"""
        g, order = m.ctx.graph, m.ctx.order
        matched = set(m.layers.values())
        inputs = {m.blobs[v] for v in self.inputs}
        limit = max((order.get(g.blobs[n].producer, -1) for n in inputs if g.blobs[n].producer), default=-1)
        stack = [c for v in (*self.outputs, *self.shared) for c in g.blobs[m.blobs[v]].consumers if c not in matched]
        seen: set[Layer] = set()
        while stack:
            ly = stack.pop()
            if ly in seen or order.get(ly, float("inf")) > limit:
                continue
            seen.add(ly)
            if any(o in inputs for o in ly.outputs):
                return True
            for o in ly.outputs:
                stack.extend(c for c in g.blobs[o].consumers if c not in matched)
        return False

    # -- rewriting ---------------------------------------------------------------------------------
    def apply(self, m: Match) -> list[Layer]:
        """Replace the matched layers; returns the new layers (in order)."""
        ctx = m.ctx
        g = ctx.graph
        env = _MatchEnv(m)
        matched = list(m.layers.values())
        anchor = max(matched, key=lambda ly: ctx.order.get(ly, -1.0))
        root_name = m.layers[self.players[self.root].handle].name
        names: dict[str, str] = dict(m.blobs)
        taken: set[str] = set()
        for rl in self.replace:  # fresh names for blobs only the replacement knows
            for v in rl.outputs:
                if v not in names:
                    names[v] = ctx.new_blob_name(f"{root_name}_{v}", taken)
        reused = {h for h in self.rep_handles if h in m.layers}
        new_layers: list[Layer] = []
        assigned: dict[str, dict[str, Any]] = {}
        if ctx.weights_loaded:
            for asg in self.assigns:
                assigned.setdefault(asg.handle, {})[asg.slot] = evaluate(asg.expr, env)
        layer_names: set[str] = set()
        for rl in self.replace:
            ltype = rl.type if rl.type is not None else m.layers[rl.copy_type].type
            params = self._params(rl, ltype, m, env)
            if rl.handle in reused:
                lname = m.layers[rl.handle].name
            else:
                lname = g.unique_layer_name(f"{root_name}_{rl.handle}")
                while lname in layer_names:
                    lname = g.unique_layer_name(f"{lname}_")
            layer_names.add(lname)
            layer = Layer(ltype, lname, [names[v] for v in rl.inputs], [names[v] for v in rl.outputs], params)
            if ctx.weights_loaded:
                self._weights(layer, rl, m, assigned.get(rl.handle, {}))
            new_layers.append(layer)
        for ly in matched:
            g.remove(ly, reconnect=False)
        prev = anchor
        base = ctx.order.get(anchor, 0.0)
        for k, ly in enumerate(new_layers):
            g.insert(ly, after=prev)
            ctx.order[ly] = base + (k + 1) * 1e-6
            prev = ly
            for o in ly.outputs:
                g.blobs[o].shape = None
        for old, new in self.aliases:
            g.replace_all_uses(names[old], names[new])
        protected = m.protected
        for ly in reversed(list(new_layers)):  # drop replacement layers nobody reads
            if all(not g.blobs[o].consumers and o not in protected for o in ly.outputs):
                g.remove(ly, reconnect=False)
                new_layers.remove(ly)
        return new_layers

    def _params(self, rl: RepLine, ltype: str, m: Match, env: _MatchEnv) -> ParamDict:
        params = ParamDict({}, _schema.float_ids(ltype))
        for it in rl.items:
            if it.kind == "copy":
                src = m.layers[it.key]
                if src.type == ltype:
                    copied = src.params.copy()
                    for k in params:
                        if k not in copied:
                            copied[k] = params[k]
                    params = copied
                else:
                    for k, v in src.params.items():
                        params[k] = v
            elif it.kind == "drop":
                params.pop(self._key(ltype, it.key, it.pos), None)
            else:
                pid = self._key(ltype, it.key, it.pos)
                value = _rep_value(it, m, env)
                if value is None:
                    params.pop(pid, None)
                else:
                    params[pid] = value
        # output shape hints (-23330=) copied from a matched layer may no longer be true: ncnn does
        # without them, so a replacement layer never carries them
        params.pop(_schema.SHAPE_HINT_ID, None)
        return params

    def _weights(self, layer: Layer, rl: RepLine, m: Match, assigned: dict[str, Any]) -> None:
        slots = weight_slots(layer.type, layer.params, layer.name)
        src = m.layers.get(rl.handle)
        out: dict[str, Weight] = {}
        assigned = {k: v for k, v in assigned.items() if v is not None}  # None: "not this time"
        for s in slots:
            if s.name in assigned:
                out[s.name] = _to_weight(s, assigned.pop(s.name), m, src)
                continue
            w = src.weights.get(s.name) if src is not None else None
            if w is not None and w.count == s.count and w.tagged == s.tagged:
                out[s.name] = _copy_weight(w)
                continue
            if src is not None and not src.weights and not any(ly.weights for ly in m.layers.values()):
                continue  # the matched layers carry no weights (param-only model)
            raise EvalError(f"rule {self.name}: replacement layer {rl.handle} ({layer.type}) needs weight "
                            f"{s.name!r} ({s.count} values) and nothing provides it")
        if assigned:
            raise EvalError(f"rule {self.name}: {layer.type} {rl.handle} with these params reads no weight "
                            f"{', '.join(assigned)}")
        layer.weights = out


@dataclass
class _State:
    layers: dict[str, Layer]
    blobs: dict[str, str]
    caps: dict[str, Any]
    used: set[Layer] = field(default_factory=set)

    def copy(self) -> _State:
        return _State(dict(self.layers), dict(self.blobs), dict(self.caps), set(self.used))


def _default(ltype: str, params: ParamDict, pid: int) -> Any:
    """ncnn's value for ``pid`` if it were absent (a default may follow another param)."""
    sch = _schema.schema(ltype)
    p = sch.by_id.get(pid) if sch is not None else None
    if p is None:
        return 0
    if p.follows is not None:
        return _schema.get_param(ltype, params, p.follows)
    return list(p.default) if isinstance(p.default, list) else p.default


def _test(t: _Test, v: Any, caps: dict[str, Any]) -> bool:
    kind = t.kind
    if kind == "any":
        return True
    if kind == "capture":
        if t.op == "=":
            if t.value in caps:
                return values_equal(v, caps[t.value])
            caps[t.value] = v
            return True
        if t.value not in caps:
            return False
        return _compare(t.op, v, caps[t.value])
    if kind == "alternatives":
        return any(values_equal(v, x) for x in t.value)
    return _compare(t.op, v, t.value)


def _compare(op: str, v: Any, ref: Any) -> bool:
    if op == "=":
        return values_equal(v, ref)
    if op == "!=":
        return not values_equal(v, ref)
    if isinstance(v, (list, str)) or isinstance(ref, (list, str)):
        return False
    if op == "<":
        return v < ref
    if op == "<=":
        return v <= ref
    if op == ">":
        return v > ref
    return v >= ref


def _rep_value(it: RepItem, m: Match, env: _MatchEnv) -> Any:
    if it.value_kind == "capture":
        return m.captures[it.value]
    if it.value_kind == "literal":
        return it.value
    value = evaluate(it.value, env)
    if isinstance(value, Unknown):
        raise EvalError(f"rule {m.rule.name}: {{{it.value.text}}} is unknown: {value.reason}")
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, bool):
        value = int(value)
    return value


def _copy_weight(w: Weight) -> Weight:
    """A new Weight sharing the same (read-only or replaced-on-edit) data: bytes are written unchanged."""
    return copy.copy(w)


def _to_weight(slot: Any, value: Any, m: Match, src: Layer | None) -> Weight:
    if isinstance(value, Weight):
        if value.count == slot.count and value.tagged == slot.tagged:
            w = _copy_weight(value)
            w.name = slot.name
            return w
        storage = value.storage if slot.tagged and value.storage in ("fp32", "fp16", "bf16") else None
        return Weight.from_array(slot, value.float32(), storage if slot.tagged else None)
    storage = None
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        value, storage = value
    try:
        arr = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:  # e.g. ``conv.bias = conv``: a layer, not values
        raise EvalError(f"rule {m.rule.name}: weight {slot.name!r} needs float values, got "
                        f"{type(value).__name__} ({exc})") from None
    if arr.size != slot.count:
        raise EvalError(f"rule {m.rule.name}: weight {slot.name!r} needs {slot.count} values, got {arr.size}")
    if not slot.tagged:
        storage = None
    elif storage is None:
        ref = src.weights.get(slot.name) if src is not None else None
        storage = m.storage_for(ref)
    return Weight.from_array(slot, arr, storage)


def compile_rules(text: str, hooks: dict[str, Callable[..., Any]] | None = None,
                  file: str = "<pattern>", match_only: bool = False) -> list[Rule]:
    """Parse and check pattern text; returns its rules in file order. ``match_only`` rules have no
    ``replace:`` section (used to select layers, e.g. by ``keep-fp32``)."""
    rules = []
    seen: set[str] = set()
    for i, rt in enumerate(parse_rules(text, file, require_replace=not match_only)):
        if rt.name in seen:
            raise PatternSyntaxError(f"rule {rt.name!r} is defined twice", file, rt.pos.line, rt.pos.column)
        seen.add(rt.name)
        rules.append(Rule(rt, hooks, file, i, match_only))
    return rules


def sort_rules(rules: Iterable[Rule]) -> list[Rule]:
    """Rules in the order they are tried on a root: higher benefit first, then file order."""
    return sorted(rules, key=lambda r: (-r.benefit, r.order))


__all__ = ["GraphError", "Match", "ParamTest", "PatLine", "Rule", "compile_rules", "sort_rules"]
