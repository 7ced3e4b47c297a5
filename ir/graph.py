"""The in-memory ncnn network: :class:`Graph`, :class:`Layer`, :class:`Blob`.

``Split`` layers are absorbed on load (a blob simply has several consumers) and regenerated on
write, with their original names wherever the consumers did not change. Every edit goes through
the graph (or a layer property setter that calls it), so producer/consumer indices stay right.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from . import schema as _schema
from .blob import Blob, link_layer, unlink_layer
from .errors import GraphError
from .graph_check import Problem, graph_errors
from .layer_index import LayerIndex
from .layer_weights import LayerWeights
from .listeners import Listeners, Observable
from .ordering import PendingOrder, batched_order, stable_topo_order
from .params import ParamDict, ParamValue
from .splits import SplitBook
from .weights import Weight, weight_slots

__all__ = ["Blob", "Graph", "Layer", "Problem"]


class Layer(LayerWeights):
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

class Graph(Observable):
    """An ncnn network: ordered layers (no Split layers), blobs by name, and protected outputs.

    Every edit is announced to the graph's listeners (:mod:`ncnnpass.ir.listeners`), the Split book first."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []
        self.blobs: dict[str, Blob] = {}
        self._index = LayerIndex()  # layers by name and by type
        self._outputs: list[str] | None = None  # None: the blobs nothing consumes
        self.splits = SplitBook()  # the Splits of the loaded file (absorbed into multi-consumer blobs)
        self.source: tuple[str | None, str | None] = (None, None)
        self._counter = itertools.count()
        self.load_warnings: list[Problem] = []  # oddities of the loaded file that ncnn tolerates
        self._free_inputs: frozenset[str] = frozenset()  # blobs the loaded file reads but never produces
        self._loaded_dup_names: frozenset[str] = frozenset()  # names several layers of the loaded file shared
        self._batch: PendingOrder | None = None
        self._pos_cache: dict[Layer, int] | None = None  # layer -> index; dropped by every edit
        self._listeners = Listeners()

    # -- loading and saving: thin wrappers over ir/loader.py and ir/writer.py ---------------------
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
            return self._index.by_name[name]
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
            cands = [self._index.by_name[name]] if name in self._index.by_name else []
        elif type is not None:
            types = [type] if isinstance(type, str) else list(type)
            seen = set()
            for t in types:
                seen.update(self._index.by_type.get(t, ()))
            cands = [ly for ly in self.layers if ly in seen] if len(types) > 1 else self._index.of_type(types[0])
            cands.sort(key=self.position)
        else:
            cands = list(self.layers)
        if type is not None and name is not None:
            types = {type} if isinstance(type, str) else set(type)
            cands = [ly for ly in cands if ly.type in types]
        return [ly for ly in cands if where is None or where(ly)]

    def has_layer(self, name: str) -> bool:
        return name in self._index.by_name

    def layer_names(self) -> set[str]:
        """Every layer name in use (a shared name once)."""
        return set(self._index.by_name)

    def count_by_type(self, type: str) -> int:
        return self._index.count(type)

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
        out = [b for ly in self._index.by_type.get("Input", ()) for b in ly.outputs]
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

    @property
    def declared_outputs(self) -> list[str] | None:
        """The protected outputs as set (including names no longer in the graph); ``None`` when the
        graph was neither loaded nor given outputs (then :attr:`outputs` are the dangling blobs)."""
        return None if self._outputs is None else list(self._outputs)

    def dangling_blobs(self) -> list[str]:
        return [b.name for b in self.blobs.values() if b.producer is not None and not b.consumers]

    # -- facts of the loaded file -------------------------------------------------------------------
    @property
    def free_inputs(self) -> frozenset[str]:
        """Blobs the loaded file reads but never produces (ncnn feeds them as inputs)."""
        return self._free_inputs

    @property
    def loaded_shared_names(self) -> frozenset[str]:
        """Layer names several layers of the loaded file shared (a rewrite may reuse them)."""
        return self._loaded_dup_names

    def extend_loaded(self, layers: Iterable[Layer]) -> None:
        """Append detached layers in file order, in one pass (the loader's path). Names may repeat,
        as ncnn allows; a blob produced twice is refused. No :meth:`batch` may be open."""
        if self._batch is not None:
            raise GraphError("extend_loaded inside a batch")
        blobs, add = self.blobs, self._index.add
        for ly in layers:
            if ly.graph is not None:
                raise GraphError(f"layer {ly.name!r} already belongs to a graph")
            ly.graph = self
            self.layers.append(ly)
            add(ly)
            link_layer(blobs, ly)
            if self._listeners:
                self._emit("layer_added", ly)
        self._touch()

    def mark_loaded(self) -> None:
        """Record the graph as built so far as the loaded file (call before absorbing Splits): its
        protected outputs are what ncnn reports as outputs, its unproduced blobs are free inputs and
        the names its layers share stay allowed."""
        self._outputs = self.dangling_blobs()
        self._free_inputs = frozenset(b.name for b in self.blobs.values() if b.producer is None)
        self._loaded_dup_names = frozenset(self._index.shared)

    def inherit_file_facts(self, other: Graph) -> None:
        """Take over ``other``'s facts of the loaded file (source, warnings, free inputs, shared names,
        protected outputs); for a copy. Split records are copied apart (:meth:`SplitBook.remapped`)."""
        self.source = other.source
        self.load_warnings = list(other.load_warnings)
        self._free_inputs = other._free_inputs
        self._loaded_dup_names = other._loaded_dup_names
        self._outputs = None if other._outputs is None else list(other._outputs)

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
        return name in self._index.by_name or self.splits.layer_name_taken(name)

    def unique_blob_name(self, prefix: str) -> str:
        if prefix not in self.blobs and not self._split_name_taken(prefix):
            return prefix
        while True:
            cand = f"{prefix}_{next(self._counter)}"
            if cand not in self.blobs and not self._split_name_taken(cand):
                return cand

    def _split_name_taken(self, name: str) -> bool:
        return self.splits.top_name_taken(name)

    # -- wiring and names (called by the Layer setters) ------------------------------------------
    def _rewire(self, layer: Layer, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
        for n in outputs:
            b = self.blobs.get(n)
            if b is not None and b.producer is not None and b.producer is not layer:
                raise GraphError(f"blob {n!r} is already produced by layer {b.producer.name!r}")
        if len(set(outputs)) != len(outputs):
            raise GraphError(f"layer {layer.name!r} would produce the same blob twice")
        unlink_layer(self.blobs, layer)
        old = layer._inputs, layer._outputs
        layer._inputs, layer._outputs = inputs, outputs
        link_layer(self.blobs, layer)
        self._emit("layer_rewired", layer, *old)

    def _rename_layer(self, layer: Layer, new: str) -> None:
        if new == layer._name:
            return
        if new in self._index.by_name:
            raise GraphError(f"a layer named {new!r} already exists")
        self._index.forget_name(layer, layer._name, self._positions)
        old, layer._name = layer._name, new
        self._index.add_name(layer, new)
        self._emit("layer_renamed", layer, old)

    def duplicate_layer_names(self) -> dict[str, list[Layer]]:
        """Names several layers share (a loaded file may have them; ncnn only uses the first)."""
        return {k: list(v) for k, v in self._index.shared.items()}

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
            layer.order_weights()
        if index is None:
            if after is not None:
                index = self.position(after) + 1
            elif before is not None:
                index = self.position(before)
            else:
                index = len(self.layers)
        self.insert(layer, index)
        return layer

    def insert(self, layer: Layer, index: int | None = None, *, after: Layer | None = None) -> Layer:
        """Insert an existing detached :class:`Layer` at ``index`` (default: the end) or right
        ``after`` a layer. Inside :meth:`batch` an ``after`` placement costs O(1) (it is applied when
        the batch ends; ``after`` may be a layer removed in the same batch)."""
        batch = getattr(self, "_batch", None)
        if after is not None and index is not None:
            raise GraphError("give either index or after, not both")
        if layer.graph is not None:
            raise GraphError(f"layer {layer.name!r} already belongs to a graph")
        if layer.name in self._index.by_name and layer.name not in self._loaded_dup_names:
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
        self._index.add(layer)
        link_layer(self.blobs, layer)
        self._touch()
        self._emit("layer_added", layer)
        return layer

    def remove(self, layer: Layer, *, reconnect: bool = True) -> None:
        """Delete a layer. With ``reconnect`` (default) and one input/one output, consumers of its
        output read its input instead (and a protected output moves to that input's name)."""
        if layer.graph is not self:
            raise GraphError(f"layer {layer.name!r} is not in this graph")
        if reconnect and len(layer.inputs) == 1 and len(layer.outputs) == 1:
            src, dst = layer.inputs[0], layer.outputs[0]
            unlink_layer(self.blobs, layer)
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
        unlink_layer(self.blobs, layer)
        self._detach(layer)

    def _detach(self, layer: Layer) -> None:
        batch = getattr(self, "_batch", None)
        if batch is not None:
            batch.removed.add(layer)
        else:
            self.layers.remove(layer)
        self._index.remove(layer, self._positions)
        layer.graph = None
        self._touch()
        self._emit("layer_removed", layer)

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
        self.splits.rename_blob(old, new)  # first: the rewiring below then finds the record under its new name
        if b.producer is not None:
            p = b.producer
            p.outputs = tuple(new if n == old else n for n in p.outputs)
        self.replace_all_uses(old, new, _missing_ok=True)
        if self._outputs is not None:
            self._outputs = [new if n == old else n for n in self._outputs]
        for listener in self._listeners:
            listener.blob_renamed(old, new)

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
        self._batch = PendingOrder()
        try:
            yield self
        finally:
            batch, self._batch = self._batch, None
            self._flush_batch(batch)

    def _flush_batch(self, batch: PendingOrder) -> None:
        if not batch.removed and not batch.after:
            return
        self.layers = batched_order(self.layers, batch, lambda ly: ly.graph is self)
        self._touch()

    # -- whole-graph operations -------------------------------------------------------------------
    def toposort(self) -> Graph:
        """Stable topological order (Kahn; keeps the current order where it is already valid)."""
        self.layers = self.topo_order()
        self._touch()
        return self

    def topo_order(self) -> list[Layer]:
        """The layers in stable topological order (the graph is not changed)."""
        return stable_topo_order(self.layers, self.blobs)

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
            unlink_layer(self.blobs, ly)
            self._detach(ly)
        return dead

    def check(self, *, warnings: bool = False) -> list[Problem]:
        """Everything that would make ncnn reject or misread this graph; with ``warnings``, also the
        oddities ncnn accepts (:meth:`warnings`), after the errors."""
        problems = graph_errors(self)
        return problems + self.warnings() if warnings else problems

    def warnings(self) -> list[Problem]:
        """Oddities ncnn loads without complaint but a converter would not write: those of the loaded
        file (header counts, ignored lines, ...) and those of the graph now (shared layer names,
        blobs read but never produced, one-blob layers with several blobs)."""
        from .acceptance import graph_warnings

        return list(self.load_warnings) + graph_warnings(self)

    def validate(self) -> None:
        problems = self.check()
        if problems:
            raise GraphError("; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))

