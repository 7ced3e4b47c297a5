"""Matching a compiled rule from a root layer, and what a match gives expressions and hooks.

A match costs O(pattern size × fan-out), so a sweep over the layers of the root's type is linear in
graph size. Safety: a blob produced and consumed inside the match (an *internal* blob) may have no
other consumer and may not be a protected output, unless written ``t!``; then the replacement must
produce it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ncnnpass.ir import Layer, ParamDict, Weight
from ncnnpass.ir import schema as _schema
from ncnnpass.ir.errors import PatternSyntaxError

from .context import PassContext
from .expr import Env, EvalError, Unknown, evaluate, truth, values_equal
from .syntax import Node

if TYPE_CHECKING:
    from .compile import _PLayer, _Test
    from .rule import Rule

_RESERVED_IDS = (_schema.SHAPE_HINT_ID, _schema.FEATMASK_ID)
_LAYER_ATTRS = ("type", "name", "inputs", "outputs", "featmask", "params", "weights")


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


class MatchEnv(Env):
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


class RuleMatching:
    """The matching half of :class:`~.rule.Rule` (reads the attributes :class:`~.compile.CompiledRule` sets)."""

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
        env = MatchEnv(m)
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
        g, pos = m.ctx.graph, m.ctx.position
        matched = set(m.layers.values())
        inputs = {m.blobs[v] for v in self.inputs}
        limit = max((pos(g.blobs[n].producer) for n in inputs if g.blobs[n].producer), default=-1.0)
        stack = [c for v in (*self.outputs, *self.shared) for c in g.blobs[m.blobs[v]].consumers if c not in matched]
        seen: set[Layer] = set()
        while stack:
            ly = stack.pop()
            if ly in seen or pos(ly) > limit:
                continue
            seen.add(ly)
            if any(o in inputs for o in ly.outputs):
                return True
            for o in ly.outputs:
                stack.extend(c for c in g.blobs[o].consumers if c not in matched)
        return False


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
