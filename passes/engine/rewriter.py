"""The rewriter: the one object that changes the graph while rules run.

Like xDSL's ``PatternRewriter``, it owns every mutation a rule makes: where replacement layers go
(right after the last matched layer), fresh blob and layer names, dropping replacement layers nobody
reads, building weights (computed arrays go through ``Layer.set_weight``), invalidating the shapes of
blobs it creates, and telling a listener (the worklist driver) which layers to look at again. It
also keeps the layer positions while a batch of rewrites is in flight (``graph.position`` is exact
only between batches).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ncnnpass.ir import Graph, Layer, ParamDict, Weight, weight_slots
from ncnnpass.ir import schema as _schema
from ncnnpass.ir.listeners import GraphListener

from .expr import EvalError, Unknown, evaluate
from .match import Match, MatchEnv
from .syntax import RepItem, RepLine

if TYPE_CHECKING:
    from .context import PassContext
    from .rule import Rule

Listener = Callable[[Layer], None]


class Rewriter(GraphListener):
    """Applies matches to ``ctx.graph``; ``listener(layer)`` hears of every layer a rewrite touched.

    Its positions are kept per layer; while it listens to the graph (``graph.listening(rewriter)``, as the
    worklist driver does for a sweep) a layer that leaves the graph leaves them too, so it never holds
    a dead layer."""

    def __init__(self, ctx: PassContext, listener: Listener | None = None) -> None:
        self.ctx = ctx
        self.graph: Graph = ctx.graph
        self.listener = listener
        self._order: dict[Layer, float] = {ly: float(i) for i, ly in enumerate(self.graph.layers)}
        self._split_tops: set[str] | None = None

    # -- positions and names -----------------------------------------------------------------------
    def position(self, layer: Layer) -> float:
        """Where ``layer`` stands (replacement layers get fractions after their anchor)."""
        return self._order.get(layer, -1.0)

    def fresh_blob_name(self, prefix: str, taken: set[str]) -> str:
        """A blob name no blob, reserved Split output or name in ``taken`` uses (added to ``taken``)."""
        if self._split_tops is None:
            self._split_tops = self.graph.splits.top_names()
        blobs, tops = self.graph.blobs, self._split_tops
        cand, k = prefix, 0
        while cand in blobs or cand in tops or cand in taken:
            k += 1
            cand = f"{prefix}_{k}"
        taken.add(cand)
        return cand

    def fresh_layer_name(self, prefix: str, taken: set[str]) -> str:
        g = self.graph
        name = g.unique_layer_name(prefix)
        while name in taken:
            name = g.unique_layer_name(f"{name}_")
        taken.add(name)
        return name

    def layer_removed(self, layer: Layer) -> None:
        """(graph event) ``layer`` left the graph: forget its position."""
        self._order.pop(layer, None)

    # -- mutation ----------------------------------------------------------------------------------
    def insert_after(self, anchor: Layer, layers: list[Layer], base: float | None = None) -> None:
        """Insert ``layers`` in order right after ``anchor`` (which may have left the graph in this batch:
        then ``base`` is the position it had); their output shapes are unknown until inferred."""
        g, prev = self.graph, anchor
        base = self.position(anchor) if base is None else base
        base = 0.0 if base < 0 else base
        for k, ly in enumerate(layers):
            g.insert(ly, after=prev)
            self._order[ly] = base + (k + 1) * 1e-6
            prev = ly
            for o in ly.outputs:
                g.blobs[o].shape = None
        if layers:
            self.ctx.graph_changed()

    def remove(self, layers: Iterable[Layer]) -> None:
        for ly in layers:
            self.graph.remove(ly, reconnect=False)

    def replace_all_uses(self, old: str, new: str) -> None:
        if old in self.graph.blobs:  # else an output nothing read (nor protects) left with its producer
            self.graph.replace_all_uses(old, new)

    def drop_unused(self, layers: list[Layer], protected: set[str]) -> list[Layer]:
        """Remove the layers of ``layers`` whose outputs nobody reads (last first); returns the rest."""
        g = self.graph
        kept = list(layers)
        for ly in reversed(list(layers)):
            if all(not g.blobs[o].consumers and o not in protected for o in ly.outputs):
                g.remove(ly, reconnect=False)
                kept.remove(ly)
        return kept

    def notify(self, new_layers: list[Layer], blobs: Iterable[str]) -> None:
        """Tell the listener about the new layers and the producers/consumers of the touched blobs."""
        if self.listener is None:
            return
        for ly in _neighbours(self.graph, new_layers, list(blobs)):
            self.listener(ly)

    # -- applying a match --------------------------------------------------------------------------
    def apply(self, rule: Rule, m: Match) -> list[Layer]:
        """Replace the layers ``m`` matched by ``rule``'s replacement; returns the new layers (in order)."""
        ctx = self.ctx
        env = MatchEnv(m)
        matched = list(m.layers.values())
        anchor = max(matched, key=self.position)
        root_name = m.layers[rule.players[rule.root].handle].name
        names: dict[str, str] = dict(m.blobs)
        taken: set[str] = set()
        for rl in rule.replace:  # fresh names for blobs only the replacement knows
            for v in rl.outputs:
                if v not in names:
                    names[v] = self.fresh_blob_name(f"{root_name}_{v}", taken)
        reused = {h for h in rule.rep_handles if h in m.layers}
        new_layers: list[Layer] = []
        assigned: dict[str, dict[str, Any]] = {}
        if ctx.weights_loaded:
            for asg in rule.assigns:
                assigned.setdefault(asg.handle, {})[asg.slot] = evaluate(asg.expr, env)
        layer_names: set[str] = set()
        for rl in rule.replace:
            ltype = rl.type if rl.type is not None else m.layers[rl.copy_type].type
            params = _params(rule, rl, ltype, m, env)
            if rl.handle in reused:
                lname = m.layers[rl.handle].name
                layer_names.add(lname)
            else:
                lname = self.fresh_layer_name(f"{root_name}_{rl.handle}", layer_names)
            layer = Layer(ltype, lname, [names[v] for v in rl.inputs], [names[v] for v in rl.outputs], params)
            if ctx.weights_loaded:
                _build_weights(rule, layer, rl, m, assigned.get(rl.handle, {}))
            new_layers.append(layer)
        base = self.position(anchor)  # (the anchor is removed next: its position goes with it)
        self.remove(matched)
        self.insert_after(anchor, new_layers, base)
        for old, new in rule.aliases:
            self.replace_all_uses(names[old], names[new])
        new_layers = self.drop_unused(new_layers, m.protected)
        touched = [m.blobs[v] for v in rule.inputs] + [m.blobs[o] for o, _ in rule.aliases]
        self.notify(new_layers, touched)
        return new_layers


def _neighbours(graph: Graph, new_layers: list[Layer], touched: list[str]) -> Iterable[Layer]:
    """The new layers, then producers and consumers of their outputs and of the ``touched`` blobs."""
    seen: set[Layer] = set()
    blobs = graph.blobs
    for ly in new_layers:
        if ly.graph is graph:
            seen.add(ly)
            yield ly
    names = [o for ly in new_layers if ly.graph is graph for o in ly.outputs] + touched
    for n in names:
        b = blobs.get(n)
        if b is None:
            continue
        for c in b.consumers:
            if c not in seen:
                seen.add(c)
                yield c
        if b.producer is not None and b.producer not in seen:
            seen.add(b.producer)
            yield b.producer


def _params(rule: Rule, rl: RepLine, ltype: str, m: Match, env: MatchEnv) -> ParamDict:
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
            params.pop(rule._key(ltype, it.key, it.pos), None)
        else:
            pid = rule._key(ltype, it.key, it.pos)
            value = _rep_value(it, m, env)
            if value is None:
                params.pop(pid, None)
            else:
                params[pid] = value
    # output shape hints (-23330=) copied from a matched layer may no longer be true: ncnn does
    # without them, so a replacement layer never carries them
    params.pop(_schema.SHAPE_HINT_ID, None)
    return params


def _build_weights(rule: Rule, layer: Layer, rl: RepLine, m: Match, assigned: dict[str, Any]) -> None:
    """Give a replacement layer the weights its params call for: assigned values (through
    ``Layer.set_weight``), else the same-named weight of the matched layer it replaces, byte for byte."""
    slots = weight_slots(layer.type, layer.params, layer.name)
    src = m.layers.get(rl.handle)
    layer.weights = {}
    assigned = {k: v for k, v in assigned.items() if v is not None}  # None: "not this time"
    for s in slots:
        if s.name in assigned:
            value = assigned.pop(s.name)
            if isinstance(value, Weight) and value.count == s.count and value.tagged == s.tagged:
                w = copy.copy(value)
                w.name = s.name
                layer.weights[s.name] = w
            else:
                arr, storage = _values(s, value, m, src)
                layer.set_weight(s.name, arr, storage)
            continue
        w = src.weights.get(s.name) if src is not None else None
        if w is not None and w.count == s.count and w.tagged == s.tagged:
            layer.weights[s.name] = copy.copy(w)  # shares the (read-only) bytes: written unchanged
            continue
        if src is not None and not src.weights and not any(ly.weights for ly in m.layers.values()):
            continue  # the matched layers carry no weights (param-only model)
        raise EvalError(f"rule {rule.name}: replacement layer {rl.handle} ({layer.type}) needs weight "
                        f"{s.name!r} ({s.count} values) and nothing provides it")
    if assigned:
        raise EvalError(f"rule {rule.name}: {layer.type} {rl.handle} with these params reads no weight "
                        f"{', '.join(assigned)}")


def _values(slot: Any, value: Any, m: Match, src: Layer | None) -> tuple[np.ndarray, str | None]:
    """Float32 values and storage for a computed weight (a Weight of another size, an array, or
    ``(array, storage)``)."""
    if isinstance(value, Weight):
        storage = value.storage if slot.tagged and value.storage in ("fp32", "fp16", "bf16") else None
        return value.float32(), storage if slot.tagged else None
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
    return arr, storage


def _rep_value(it: RepItem, m: Match, env: MatchEnv) -> Any:
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
