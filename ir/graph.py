"""The in-memory ncnn network: :class:`Graph`, :class:`Layer`, :class:`Blob`.

``Split`` layers are absorbed on load (a blob simply has several consumers) and regenerated on
write, with their original names wherever the consumers did not change. Every edit goes through
the graph (or a layer property setter that calls it), so producer/consumer indices stay right.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import schema as _schema
from .errors import GraphError, WeightError
from .params import ParamDict, ParamValue
from .weights import Weight, weight_slots

if TYPE_CHECKING:
    from .splits import SplitRecord


class Layer:
    """One ncnn layer. ``inputs``/``outputs`` are tuples of blob names; assign to rewire."""

    __slots__ = ("type", "_name", "_inputs", "_outputs", "params", "weights", "graph", "line", "__weakref__")

    def __init__(self, type: str, name: str, inputs: Iterable[str] = (), outputs: Iterable[str] = (),
                 params: ParamDict | dict | None = None, weights: dict[str, Weight] | None = None,
                 line: int | None = None) -> None:
        self.type = type
        self._name = name
        self._inputs = tuple(inputs)
        self._outputs = tuple(outputs)
        if not isinstance(params, ParamDict):
            params = ParamDict(params or {}, _schema.float_ids(type))
        self.params = params
        self.weights: dict[str, Weight] = dict(weights or {})
        self.graph: Graph | None = None
        self.line = line

    def __repr__(self) -> str:
        return (f"<{self.type} {self._name!r} {' '.join(self._inputs)} -> {' '.join(self._outputs)}"
                f"{' ' + ' '.join(self.params.tokens()) if self.params else ''}>")

    # -- names and wiring ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, new: str) -> None:
        if self.graph is not None:
            self.graph._rename_layer(self, new)
        else:
            self._name = new

    @property
    def inputs(self) -> tuple[str, ...]:
        return self._inputs

    @inputs.setter
    def inputs(self, names: Iterable[str]) -> None:
        names = tuple(names)
        if self.graph is not None:
            self.graph._rewire(self, names, self._outputs)
        else:
            self._inputs = names

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._outputs

    @outputs.setter
    def outputs(self, names: Iterable[str]) -> None:
        names = tuple(names)
        if self.graph is not None:
            self.graph._rewire(self, self._inputs, names)
        else:
            self._outputs = names

    def i(self, k: int = 0) -> Layer | None:
        """The layer producing input ``k`` (``None`` for a graph input without producer)."""
        return self._g().blobs[self._inputs[k]].producer

    def o(self, k: int = 0, output: int = 0) -> Layer:
        """The ``k``-th consumer of output ``output``."""
        return self._g().blobs[self._outputs[output]].consumers[k]

    def _g(self) -> Graph:
        if self.graph is None:
            raise GraphError(f"layer {self._name!r} is not part of a graph")
        return self.graph

    # -- params ---------------------------------------------------------------------------------
    def get(self, key: int | str, default: ParamValue | None = None) -> ParamValue:
        """A param by id or schema name, with ncnn's default when absent."""
        if default is not None:
            if isinstance(key, str):  # a name this type does not have: the caller's default
                sch = _schema.schema(self.type)
                if sch is None or key not in sch.by_name:
                    return default
            return self.params.get(_schema.param_id_of(self.type, key), default)
        return _schema.get_param(self.type, self.params, key)

    def set(self, key: int | str, value: ParamValue) -> None:
        self.params[_schema.param_id_of(self.type, key)] = value

    @property
    def featmask(self) -> int:
        return int(self.params.get(_schema.FEATMASK_ID, 0))

    @featmask.setter
    def featmask(self, bits: int) -> None:
        if bits:
            self.params[_schema.FEATMASK_ID] = int(bits)
        else:
            self.params.pop(_schema.FEATMASK_ID, None)

    # -- weights --------------------------------------------------------------------------------
    def weight(self, name: str) -> np.ndarray:
        """A weight as float32 numpy (a view of the file when stored fp32 and unedited)."""
        try:
            return self.weights[name].float32()
        except KeyError:
            raise GraphError(f"layer {self._name!r} ({self.type}) has no weight {name!r}; "
                             f"it has {', '.join(self.weights) or 'none'}") from None

    def set_weight(self, name: str, values: np.ndarray, storage: str | None = None) -> None:
        """Set a weight's values; creates it when the layer's params call for it, and recreates it with
        the new size when the params changed its size (same storage unless ``storage`` is given)."""
        w = self.weights.get(name)
        if w is not None:
            try:
                slot = next((sl for sl in weight_slots(self.type, self.params, self._name) if sl.name == name), None)
            except WeightError:  # a custom type without a registered layout: keep the array's own size
                slot = None
            if slot is not None and (slot.count != w.count or slot.tagged != w.tagged):
                if storage is None and slot.tagged and w.tagged and w.storage in ("fp32", "fp16", "bf16", "int8"):
                    storage = w.storage
                self.weights[name] = Weight.from_array(slot, values, storage)
                return
        if w is None:
            for slot in weight_slots(self.type, self.params, self._name):
                if slot.name == name:
                    self.weights[name] = Weight.from_array(slot, values, storage)
                    self._order_weights()
                    return
            raise GraphError(f"layer {self._name!r} ({self.type}) with these params reads no weight {name!r}")
        w.set(values, storage)

    def _order_weights(self) -> None:
        order = [s.name for s in weight_slots(self.type, self.params, self._name)]
        self.weights = {n: self.weights[n] for n in order if n in self.weights} | {
            n: w for n, w in self.weights.items() if n not in order}

    def check_weights(self) -> None:
        """Raise :class:`WeightError` unless the weights match what the params make ncnn read."""
        slots = weight_slots(self.type, self.params, self._name)
        names = [s.name for s in slots]
        if list(self.weights) != names:
            raise WeightError(f"layer {self._name!r} ({self.type}): params call for weights "
                              f"[{', '.join(names)}] but it holds [{', '.join(self.weights)}]")
        for s in slots:
            w = self.weights[s.name]
            if w.count != s.count or w.tagged != s.tagged:
                raise WeightError(f"layer {self._name!r} ({self.type}): weight {s.name!r} has {w.count} values, "
                                  f"params call for {s.count}")


@dataclass(eq=False)
class Blob:
    """A named tensor: one producer, any number of consumers (one entry per input slot)."""

    name: str
    producer: Layer | None = None
    consumers: list[Layer] = field(default_factory=list)
    shape: tuple[int, ...] | None = None  # numpy order of ncnn's Mat: (w,), (h, w), (c, h, w), (c, d, h, w)

    def __repr__(self) -> str:
        p = self.producer.name if self.producer else None
        return f"<Blob {self.name!r} from {p} to {[c.name for c in self.consumers]}>"


@dataclass
class _Batch:
    """Pending order changes of :meth:`Graph.batch`."""

    removed: set[Layer] = field(default_factory=set)
    after: dict[Layer, list[Layer]] = field(default_factory=dict)
    placed: set[Layer] = field(default_factory=set)


@dataclass
class Problem:
    """Something :meth:`Graph.check` found."""

    kind: str
    message: str
    layer: str | None = None
    severity: str = "error"  # "error": ncnn would reject or misread it; "warning": ncnn accepts it

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}" if self.severity == "error" else f"warning: {self.kind}: {self.message}"


class Graph:
    """An ncnn network: ordered layers (no Split layers), blobs by name, and protected outputs."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.blobs: dict[str, Blob] = {}
        self._by_name: dict[str, Layer] = {}
        self._by_type: dict[str, dict[Layer, None]] = {}
        self._outputs: list[str] | None = None
        self.splits: dict[str, SplitRecord] = {}
        self.source: tuple[str | None, str | None] = (None, None)
        self._counter = itertools.count()
        self._split_names_retired: set[str] = set()
        self._dup_names: dict[str, list[Layer]] = {}  # a name several layers share (ncnn allows it)
        self.load_warnings: list[Problem] = []
        self._free_inputs: set[str] = set()
        self._loaded_dup_names: set[str] = set()  # names several layers of the loaded file shared  # blobs the loaded file reads but never produces (ncnn: inputs)  # oddities of the loaded file that ncnn tolerates
        self._batch: _Batch | None = None
        self._pos_cache: dict[Layer, int] | None = None  # layer -> index; dropped by every edit

    # -- loading and saving (implemented in io modules) -----------------------------------------
    @classmethod
    def load(cls, param: str, bin: str | None = None, *, strict_bin: bool = True) -> Graph:
        """Read ``param`` (text) and, if given, ``bin`` (memory-mapped)."""
        from .loader import load_graph

        return load_graph(param, bin, strict_bin=strict_bin)

    @classmethod
    def from_text(cls, text: str, bin_data: bytes | memoryview | None = None, *, file: str = "<string>",
                  strict_bin: bool = True) -> Graph:
        from .loader import graph_from_text

        return graph_from_text(text, bin_data, file=file, strict_bin=strict_bin)

    def save(self, param: str, bin: str | None = None, *, overwrite: bool = False) -> None:
        """Write ``param`` and ``bin`` atomically; refuses to overwrite the loaded files unless asked."""
        from .writer import save_graph

        save_graph(self, param, bin, overwrite=overwrite)

    def to_param_text(self) -> str:
        from .writer import param_text

        return param_text(self)

    def to_bin_bytes(self) -> bytes:
        from .writer import bin_bytes

        return bin_bytes(self)

    def copy(self) -> Graph:
        """An independent copy (weights are shared until edited: edits replace arrays, never mutate)."""
        from .loader import copy_graph

        return copy_graph(self)

    # -- queries --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Layer]:
        return iter(list(self.layers))

    def __len__(self) -> int:
        return len(self.layers)

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (the first one, as ncnn's lookup, when several share it)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise GraphError(f"no layer named {name!r}") from None

    def blob(self, name: str) -> Blob:
        try:
            return self.blobs[name]
        except KeyError:
            raise GraphError(f"no blob named {name!r}") from None

    def find(self, type: str | Iterable[str] | None = None, name: str | None = None,
             where: Callable[[Layer], bool] | None = None) -> list[Layer]:
        """Layers in graph order by type (or types), exact name, and/or a predicate."""
        if name is not None:
            cands = [self._by_name[name]] if name in self._by_name else []
        elif type is not None:
            types = [type] if isinstance(type, str) else list(type)
            seen = set()
            for t in types:
                seen.update(self._by_type.get(t, ()))
            cands = [ly for ly in self.layers if ly in seen] if len(types) > 1 else list(self._by_type.get(types[0], ()))
            cands.sort(key=self.position)
        else:
            cands = list(self.layers)
        if type is not None and name is not None:
            types = {type} if isinstance(type, str) else set(type)
            cands = [ly for ly in cands if ly.type in types]
        return [ly for ly in cands if where is None or where(ly)]

    def count_by_type(self, type: str) -> int:
        return len(self._by_type.get(type, ()))

    def types(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ly in self.layers:
            out[ly.type] = out.get(ly.type, 0) + 1
        return out

    def position(self, layer: Layer) -> int:
        return self._positions()[layer]

    def _positions(self) -> dict[Layer, int]:
        if self._pos_cache is None:
            self._pos_cache = {ly: i for i, ly in enumerate(self.layers)}
        return self._pos_cache

    def _touch(self) -> None:
        self._pos_cache = None

    @property
    def inputs(self) -> list[str]:
        """Blobs produced by ``Input`` layers, and consumed blobs that nothing produces."""
        out = [b for ly in self._by_type.get("Input", ()) for b in ly.outputs]
        out += [b.name for b in self.blobs.values() if b.producer is None and b.consumers]
        return out

    @property
    def outputs(self) -> list[str]:
        """Protected outputs: by default the blobs with a producer and no consumer at load time."""
        if self._outputs is None:
            return self.dangling_blobs()
        return [n for n in self._outputs if n in self.blobs]

    @outputs.setter
    def outputs(self, names: Iterable[str]) -> None:
        names = list(names)
        for n in names:
            self.blob(n)
        self._outputs = names

    def dangling_blobs(self) -> list[str]:
        return [b.name for b in self.blobs.values() if b.producer is not None and not b.consumers]

    # -- naming ---------------------------------------------------------------------------------
    def unique_layer_name(self, prefix: str) -> str:
        """A layer name no layer (nor a loaded or retired Split) has."""
        if not self._layer_name_taken(prefix):
            return prefix
        while True:
            cand = f"{prefix}_{next(self._counter)}"
            if not self._layer_name_taken(cand):
                return cand

    def _layer_name_taken(self, name: str) -> bool:
        return (name in self._by_name or name in self._split_names_retired
                or any(rec.layer_name == name for rec in self.splits.values()))

    def unique_blob_name(self, prefix: str) -> str:
        if prefix not in self.blobs and not self._split_name_taken(prefix):
            return prefix
        while True:
            cand = f"{prefix}_{next(self._counter)}"
            if cand not in self.blobs and not self._split_name_taken(cand):
                return cand

    def _split_name_taken(self, name: str) -> bool:
        return any(name in rec.top_names for rec in self.splits.values())

    # -- index maintenance ------------------------------------------------------------------------
    def _blob(self, name: str) -> Blob:
        b = self.blobs.get(name)
        if b is None:
            b = self.blobs[name] = Blob(name)
        return b

    def _link(self, layer: Layer) -> None:
        for n in layer._inputs:
            self._blob(n).consumers.append(layer)
        for n in layer._outputs:
            b = self._blob(n)
            if b.producer is not None and b.producer is not layer:
                raise GraphError(f"blob {n!r} would be produced twice: by {b.producer.name!r} and {layer.name!r}")
            b.producer = layer

    def _unlink(self, layer: Layer) -> None:
        for n in layer._inputs:
            b = self.blobs[n]
            b.consumers.remove(layer)
            self._drop_if_orphan(b)
        for n in layer._outputs:
            b = self.blobs[n]
            if b.producer is layer:
                b.producer = None
            self._drop_if_orphan(b)

    def _drop_if_orphan(self, b: Blob) -> None:
        if b.producer is None and not b.consumers:
            del self.blobs[b.name]

    def _rewire(self, layer: Layer, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        for n in outputs:
            b = self.blobs.get(n)
            if b is not None and b.producer is not None and b.producer is not layer:
                raise GraphError(f"blob {n!r} is already produced by layer {b.producer.name!r}")
        if len(set(outputs)) != len(outputs):
            raise GraphError(f"layer {layer.name!r} would produce the same blob twice")
        self._unlink(layer)
        layer._inputs, layer._outputs = inputs, outputs
        self._link(layer)

    def _rename_layer(self, layer: Layer, new: str) -> None:
        if new == layer._name:
            return
        if new in self._by_name:
            raise GraphError(f"a layer named {new!r} already exists")
        self._forget_name(layer)
        layer._name = new
        self._by_name[new] = layer

    def _index_name(self, layer: Layer) -> None:
        """Register ``layer``'s name; a name already taken becomes a shared (duplicate) name."""
        first = self._by_name.setdefault(layer._name, layer)
        if first is not layer:
            self._dup_names.setdefault(layer._name, [first]).append(layer)

    def _forget_name(self, layer: Layer) -> None:
        shared = self._dup_names.get(layer._name)
        if shared is None:
            del self._by_name[layer._name]
            return
        shared.remove(layer)
        pos = self._positions()
        self._by_name[layer._name] = min(shared, key=lambda ly: pos.get(ly, len(pos)))
        if len(shared) == 1:
            del self._dup_names[layer._name]

    def duplicate_layer_names(self) -> dict[str, list[Layer]]:
        """Names several layers share (a loaded file may have them; ncnn only uses the first)."""
        return {k: list(v) for k, v in self._dup_names.items()}

    # -- edits ----------------------------------------------------------------------------------
    def add_layer(self, type: str, name: str | None = None, inputs: Iterable[str] = (),
                  outputs: Iterable[str] = (), params: dict | ParamDict | None = None,
                  weights: dict[str, np.ndarray | Weight] | None = None, *, storage: str | None = None,
                  index: int | None = None, after: Layer | None = None, before: Layer | None = None) -> Layer:
        """Create a layer and insert it (at the end, at ``index``, or ``after``/``before`` a layer).

        ``outputs`` may name new blobs; ``weights`` maps slot names to numpy arrays (stored as
        ``storage`` for tagged slots, fp32 by default) and must match what the params call for.
        """
        name = name or self.unique_layer_name(type.lower())
        layer = Layer(type, name, inputs, outputs, params)
        if weights:
            slots = {s.name: s for s in weight_slots(type, layer.params, name)}
            for wname, arr in weights.items():
                if isinstance(arr, Weight):
                    layer.weights[wname] = arr
                elif wname not in slots:
                    raise GraphError(f"{type} {name!r} with these params reads no weight {wname!r} "
                                     f"(it reads {', '.join(slots) or 'none'})")
                else:  # ``storage`` applies to tagged slots; raw slots are always float32
                    slot = slots[wname]
                    layer.weights[wname] = Weight.from_array(slot, arr, storage if slot.tagged else None)
            layer._order_weights()
        if index is None:
            if after is not None:
                index = self.position(after) + 1
            elif before is not None:
                index = self.position(before)
            else:
                index = len(self.layers)
        self.insert(layer, index)
        return layer

    def insert(self, layer: Layer, index: int | None = None, *, after: Layer | None = None,
               _shared_name: bool = False) -> Layer:
        """Insert an existing detached :class:`Layer` at ``index`` (default: the end) or right
        ``after`` a layer. Inside :meth:`batch` an ``after`` placement costs O(1) (it is applied when
        the batch ends; ``after`` may be a layer removed in the same batch)."""
        batch = getattr(self, "_batch", None)
        if after is not None and index is not None:
            raise GraphError("give either index or after, not both")
        if layer.graph is not None:
            raise GraphError(f"layer {layer.name!r} already belongs to a graph")
        if layer.name in self._by_name and not (_shared_name or layer.name in self._loaded_dup_names):
            raise GraphError(f"a layer named {layer.name!r} already exists")  # (a rewrite may reuse a name
            # the loaded file already shared: replacing such a layer keeps its name)
        if len(set(layer._outputs)) != len(layer._outputs):
            raise GraphError(f"layer {layer.name!r} produces the same blob twice")
        for n in layer._outputs:
            b = self.blobs.get(n)
            if b is not None and b.producer is not None:
                raise GraphError(f"blob {n!r} is already produced by layer {b.producer.name!r}")
        if after is not None:
            if batch is not None:
                batch.after.setdefault(after, []).append(layer)
                batch.placed.add(layer)
            else:
                index = self.position(after) + 1
        if batch is not None:
            batch.removed.discard(layer)
        layer.graph = self
        self.layers.insert(len(self.layers) if index is None else index, layer)
        self._touch()
        self._index_name(layer)
        self._by_type.setdefault(layer.type, {})[layer] = None
        self._link(layer)
        self._touch()
        return layer

    def remove(self, layer: Layer, *, reconnect: bool = True) -> None:
        """Delete a layer. With ``reconnect`` (default) and one input/one output, consumers of its
        output read its input instead (and a protected output moves to that input's name)."""
        if layer.graph is not self:
            raise GraphError(f"layer {layer.name!r} is not in this graph")
        if reconnect and len(layer.inputs) == 1 and len(layer.outputs) == 1:
            src, dst = layer.inputs[0], layer.outputs[0]
            self._unlink(layer)
            self._detach(layer)
            self.replace_all_uses(dst, src, _missing_ok=True)
            if self._outputs is not None and dst in self._outputs:
                self._outputs = [src if n == dst else n for n in self._outputs]
            return
        if reconnect:
            for n in layer.outputs:
                if self.blobs[n].consumers:
                    raise GraphError(f"cannot remove {layer.name!r}: its output {n!r} is still consumed "
                                     "(rewire the consumers first or pass reconnect=False)")
        self._unlink(layer)
        self._detach(layer)

    def _detach(self, layer: Layer) -> None:
        batch = getattr(self, "_batch", None)
        if batch is not None:
            batch.removed.add(layer)
        else:
            self.layers.remove(layer)
        self._forget_name(layer)
        del self._by_type[layer.type][layer]
        if not self._by_type[layer.type]:
            del self._by_type[layer.type]
        layer.graph = None
        self._touch()

    def replace_all_uses(self, old: str, new: str, *, _missing_ok: bool = False) -> None:
        """Make every consumer of blob ``old`` read blob ``new`` instead."""
        b = self.blobs.get(old)
        if b is None:
            if _missing_ok:
                return
            raise GraphError(f"no blob named {old!r}")
        for consumer in list(dict.fromkeys(b.consumers)):
            consumer.inputs = tuple(new if n == old else n for n in consumer.inputs)

    def replace(self, old: Layer | list[Layer], new: Layer | list[Layer]) -> list[Layer]:
        """Replace layers by new detached layers, inserted where the last old layer stood."""
        olds = [old] if isinstance(old, Layer) else list(old)
        news = [new] if isinstance(new, Layer) else list(new)
        index = max(self.position(ly) for ly in olds)
        index -= sum(1 for ly in olds if self.position(ly) < index)
        for ly in olds:
            self.remove(ly, reconnect=False)
        for k, ly in enumerate(news):
            self.insert(ly, index + k)
        return news

    def rename_blob(self, old: str, new: str) -> None:
        """Rename a blob everywhere (producer, consumers, protected outputs)."""
        b = self.blob(old)
        if new == old:
            return
        if new in self.blobs:
            raise GraphError(f"a blob named {new!r} already exists")
        if b.producer is not None:
            p = b.producer
            p.outputs = tuple(new if n == old else n for n in p.outputs)
        self.replace_all_uses(old, new, _missing_ok=True)
        if self._outputs is not None:
            self._outputs = [new if n == old else n for n in self._outputs]
        if old in self.splits:
            self.splits[new] = self.splits.pop(old)

    @contextlib.contextmanager
    def batch(self) -> Iterator[Graph]:
        """Make many edits cost O(1) each instead of O(layers): inside the block, removed layers
        stay in ``graph.layers`` (with ``layer.graph`` None) and layers inserted ``after=`` another
        sit at the end; the order is rebuilt in one pass when the block exits. Blob/producer/consumer
        indices are exact throughout. Do not call :meth:`toposort`, :meth:`cleanup` or
        :meth:`check` inside a batch."""
        if getattr(self, "_batch", None) is not None:
            yield self
            return
        self._batch = _Batch()
        try:
            yield self
        finally:
            batch, self._batch = self._batch, None
            self._flush_batch(batch)

    def _flush_batch(self, batch: _Batch) -> None:
        if not batch.removed and not batch.after:
            return
        order: list[Layer] = []
        emitted: set[Layer] = set()

        def emit(ly: Layer) -> None:
            if ly.graph is self and ly not in batch.removed and ly not in emitted:
                emitted.add(ly)
                order.append(ly)

        def emit_after(anchor: Layer) -> None:
            # pre-order: each placed layer, then the layers placed after it, then its next sibling
            stack = [iter(batch.after.pop(anchor, ()))]
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    stack.pop()
                    continue
                emit(child)
                stack.append(iter(batch.after.pop(child, ())))

        for ly in self.layers:
            if ly not in batch.placed:
                emit(ly)
            emit_after(ly)
        for anchor in list(batch.after):  # anchors that are not in the list: keep their layers
            emit_after(anchor)
        for ly in self.layers:
            emit(ly)
        self.layers = order
        self._touch()

    # -- whole-graph operations -------------------------------------------------------------------
    def toposort(self) -> Graph:
        """Stable topological order (Kahn; keeps the current order where it is already valid)."""
        self.layers = self._topo_order()
        self._touch()
        return self

    def _topo_order(self) -> list[Layer]:
        """The layers in stable topological order (the graph is not changed)."""
        import heapq

        pos = {ly: i for i, ly in enumerate(self.layers)}
        indeg = {ly: 0 for ly in self.layers}
        users: dict[Layer, list[Layer]] = {ly: [] for ly in self.layers}
        for ly in self.layers:
            for n in set(ly.inputs):
                p = self.blobs[n].producer
                if p is not None and p is not ly:
                    indeg[ly] += 1
                    users[p].append(ly)
        heap = [pos[ly] for ly, d in indeg.items() if d == 0]
        heapq.heapify(heap)
        order: list[Layer] = []
        while heap:
            ly = self.layers[heapq.heappop(heap)]
            order.append(ly)
            for u in users[ly]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(heap, pos[u])
        if len(order) != len(self.layers):
            stuck = [ly.name for ly in self.layers if indeg[ly] > 0][:5]
            raise GraphError(f"the graph has a cycle through layers {', '.join(stuck)}")
        return order

    def cleanup(self) -> list[Layer]:
        """Remove layers that contribute to no protected output; returns the removed layers."""
        keep: set[Layer] = set()
        stack = [self.blobs[n].producer for n in self.outputs if n in self.blobs]
        while stack:
            ly = stack.pop()
            if ly is None or ly in keep:
                continue
            keep.add(ly)
            stack.extend(self.blobs[n].producer for n in ly.inputs)
        dead = [ly for ly in self.layers if ly not in keep and ly.type != "Input"]
        for ly in reversed(dead):
            self._unlink(ly)
            self._detach(ly)
        return dead

    def check(self, *, warnings: bool = False) -> list[Problem]:
        """Everything that would make ncnn reject or misread this graph; with ``warnings``, also the
        oddities ncnn accepts (:meth:`warnings`), after the errors."""
        problems = self._errors()
        return problems + self.warnings() if warnings else problems

    def warnings(self) -> list[Problem]:
        """Oddities ncnn loads without complaint but a converter would not write: those of the loaded
        file (header counts, ignored lines, ...) and those of the graph now (shared layer names,
        blobs read but never produced, one-blob layers with several blobs)."""
        from .acceptance import graph_warnings

        return list(self.load_warnings) + graph_warnings(self)

    def _errors(self) -> list[Problem]:
        problems: list[Problem] = []
        seen: set[str] = set()
        for ly in self.layers:
            for n in ly.inputs:
                b = self.blobs[n]
                if b.producer is None:
                    if n not in self._free_inputs:  # (one the loaded file had is an input: a warning)
                        problems.append(Problem("missing-producer", f"layer {ly.name!r} reads blob {n!r} that no layer produces", ly.name))
                elif n not in seen:
                    problems.append(Problem("order", f"layer {ly.name!r} reads blob {n!r} before {b.producer.name!r} produces it", ly.name))
            seen.update(ly.outputs)
            if ly.type not in _schema.KNOWN_TYPES:
                problems.append(Problem("unknown-type", f"layer {ly.name!r} has type {ly.type!r}, not an ncnn built-in (needs a custom layer)", ly.name))
            if ly.weights or ly.type in _weighted_types():
                try:
                    ly.check_weights()
                except WeightError as exc:
                    if self.source[1] is not None or ly.weights:
                        problems.append(Problem("weights", str(exc), ly.name))
            for name in (ly.name, *ly.inputs, *ly.outputs):
                if (len(name.encode("utf-8", "surrogateescape")) > 255 or not name
                        or any(ch in " \t\n\v\f\r" for ch in name)):  # ncnn's (ASCII) whitespace
                    problems.append(Problem("name", f"name {name!r} is empty, has whitespace or is over 255 bytes", ly.name))
        for n in self._outputs or []:  # (the outputs property hides the ones that are gone)
            if n not in self.blobs:
                problems.append(Problem("output", f"protected output {n!r} no longer exists"))
        return problems

    def validate(self) -> None:
        problems = self.check()
        if problems:
            raise GraphError("; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))


def _weighted_types() -> frozenset[str]:
    from .weights import WEIGHT_TABLE

    return frozenset(WEIGHT_TABLE)
