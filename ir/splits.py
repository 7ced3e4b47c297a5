"""Absorb converter-inserted ``Split`` layers on load; regenerate them on write.

ncnn needs a ``Split`` wherever a blob feeds more than one input slot. The graph hides them: a
blob just has several consumers. On write a Split is generated after the producer for every blob
with two or more consumer slots, reusing the original layer and top names when the set of
consumers is the one that was loaded, and ``<blob>_splitncnn_<k>`` names otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import GraphError
from .listeners import GraphListener

if TYPE_CHECKING:
    from .graph import Blob, Graph, Layer


@dataclass
class SplitRecord:
    """How a blob's Split looked when loaded: layer name and, per top, the consumer slot it fed."""

    layer_name: str
    top_names: list[str]
    slots: list[tuple[Layer, int] | None]  # (consumer layer, input index) per top; None if unused
    params: list[str]


class SplitBook(MutableMapping, GraphListener):
    """The one owner of Split bookkeeping: blob name -> :class:`SplitRecord` of the Split loaded for
    it, plus the names of loaded Splits that were retired (their consumers changed). The loader fills
    it, passes read and edit it like a dict, and the writer plans the Splits to write from it.

    It listens to its graph: a consumer slot whose layer leaves the graph, or stops reading the blob, is
    forgotten (``None``: the Split is then written with fresh names), so a record never holds a dead layer.
    """

    def __init__(self, records: Mapping[str, SplitRecord] | None = None) -> None:
        self._records: dict[str, SplitRecord] = {}
        self._readers: dict[Layer, set[str]] = {}  # consumer layer -> blobs whose record names it
        self.retired: set[str] = set()
        for blob, rec in (records or {}).items():
            self[blob] = rec

    # -- the mapping ---------------------------------------------------------------------------------
    def __getitem__(self, blob: str) -> SplitRecord:
        return self._records[blob]

    def __setitem__(self, blob: str, rec: SplitRecord) -> None:
        if blob in self._records:
            del self[blob]
        self._records[blob] = rec
        for slot in rec.slots:
            if slot is not None:
                self._readers.setdefault(slot[0], set()).add(blob)

    def __delitem__(self, blob: str) -> None:
        rec = self._records.pop(blob)
        for slot in rec.slots:
            if slot is not None:
                blobs = self._readers.get(slot[0])
                if blobs is not None:
                    blobs.discard(blob)
                    if not blobs:
                        del self._readers[slot[0]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"SplitBook({self._records!r}, retired={sorted(self.retired)!r})"

    # -- names ---------------------------------------------------------------------------------------
    def retire(self, layer_name: str) -> None:
        """Remember a loaded Split name that will not be written again (a new layer must not take it)."""
        self.retired.add(layer_name)

    def layer_names(self) -> set[str]:
        """Names of the recorded Split layers."""
        return {rec.layer_name for rec in self._records.values()}

    def top_names(self) -> set[str]:
        """Names of the recorded Split tops."""
        return {t for rec in self._records.values() for t in rec.top_names}

    def layer_name_taken(self, name: str) -> bool:
        return name in self.retired or any(rec.layer_name == name for rec in self._records.values())

    def top_name_taken(self, name: str) -> bool:
        return any(name in rec.top_names for rec in self._records.values())

    def readers(self) -> set[Layer]:
        """Every layer some record names as a consumer (for the verifier: all must be in the graph)."""
        return set(self._readers)

    # -- graph events (GraphListener) ------------------------------------------------------------------
    def rename_blob(self, old: str, new: str) -> None:
        if old in self._records:
            self[new] = self.pop(old)

    def blob_renamed(self, old: str, new: str) -> None:
        self.rename_blob(old, new)

    def layer_removed(self, layer: Layer) -> None:
        self._forget_slots(layer, lambda _i, _blob: True)

    def layer_rewired(self, layer: Layer, old_inputs: tuple[str, ...], old_outputs: tuple[str, ...]) -> None:
        ins = layer.inputs
        self._forget_slots(layer, lambda i, blob: i >= len(ins) or ins[i] != blob)

    def _forget_slots(self, layer: Layer, stale: Callable[[int, str], bool]) -> None:
        for blob in list(self._readers.get(layer, ())):
            rec = self._records[blob]
            slots = [None if s is not None and s[0] is layer and stale(s[1], blob) else s for s in rec.slots]
            if slots != rec.slots:
                self[blob] = SplitRecord(rec.layer_name, list(rec.top_names), slots, list(rec.params))

    # -- copies ----------------------------------------------------------------------------------------
    def remapped(self, layers: Mapping[Layer, Layer]) -> SplitBook:
        """A copy whose consumer slots point at ``layers[old]`` (for a copied graph)."""
        dead = [ly for ly in self._readers if ly not in layers]
        if dead:  # the listener keeps this from happening; a bug if it does
            raise GraphError(f"the Split book refers to layer {dead[0].name!r}, which is not in the graph")
        book = SplitBook({blob: SplitRecord(rec.layer_name, list(rec.top_names),
                                            [(layers[s[0]], s[1]) if s else None for s in rec.slots],
                                            list(rec.params))
                          for blob, rec in self._records.items()})
        book.retired = set(self.retired)
        return book


def absorb_splits(graph: Graph) -> None:
    """Remove every Split, rewiring the consumers of its tops to the Split's input.

    A Split with a top nobody reads (onnx2ncnn leaves one where a consumer was fused away) stays a
    layer: ncnn reports that top as an output, so it is kept as one.
    """
    with graph.batch():  # O(1) removals: list.remove per Split made loading quadratic
        _absorb(graph)


def _absorb(graph: Graph) -> None:
    splits = [ly for ly in graph.layers if ly.type == "Split"]
    # Splits that stay layers (a top nobody reads): a slot feeding one of them is as stable as any other
    staying = {s for s in splits if any(not graph.blobs[t].consumers for t in s.outputs)}
    for split in splits:
        if len(split.inputs) != 1 or not split.outputs:
            continue
        src = split.inputs[0]
        tops = split.outputs
        if any(not graph.blobs[t].consumers for t in tops):
            continue
        slots: list[tuple[Layer, int] | None] = []
        clean = True
        for t in tops:
            consumers = graph.blobs[t].consumers
            if (len(consumers) != 1 or consumers[0].inputs.count(t) != 1
                    or (consumers[0].type == "Split" and consumers[0] not in staying)):
                clean = False
                slots.append(None)
            else:
                c = consumers[0]
                slots.append((c, c.inputs.index(t)))
        graph.remove(split, reconnect=False)
        for t in tops:
            if t in graph.blobs:
                graph.replace_all_uses(t, src)
        if clean and src not in graph.splits:
            graph.splits[src] = SplitRecord(split.name, list(tops), slots, split.params.tokens())
        else:
            graph.splits.pop(src, None)
            graph.splits.retire(split.name)


def consumer_slots(graph: Graph, blob: str) -> list[tuple[Layer, int]]:
    """Every (layer, input index) reading ``blob``, in graph order."""
    out = []
    for layer in sorted(set(graph.blobs[blob].consumers), key=graph.position):
        for i, n in enumerate(layer.inputs):
            if n == blob:
                out.append((layer, i))
    return out


@dataclass
class PlannedSplit:
    name: str
    blob: str
    tops: list[str]
    params: list[str]
    after: Layer | None


def _same_slots(rec: SplitRecord, slots: list[tuple[Layer, int]]) -> bool:
    return (None not in rec.slots and len(rec.slots) == len(slots)
            and {(id(c), i) for c, i in rec.slots} == {(id(c), i) for c, i in slots})


def _blobs_in_layer_order(graph: Graph) -> list[Blob]:
    """Blobs in the order the layers first mention them (not the dict's insertion order, which depends on the
    edit history): fresh Split names then follow the file, and a copy of the graph writes the same names."""
    order: dict[str, None] = {}
    for ly in graph.layers:
        order.update(dict.fromkeys(ly.inputs))
        order.update(dict.fromkeys(ly.outputs))
    return [graph.blobs[n] for n in order if n in graph.blobs]


def plan_splits(graph: Graph) -> tuple[list[PlannedSplit], dict[tuple[int, int], str]]:
    """Splits to write and the renamed input for each (id(layer), slot) that reads a split top.

    First every Split whose consumers are unchanged reserves its original layer and top names (unless a
    layer or blob of the graph took one of them since); then the other Splits get fresh
    ``splitncnn_<n>`` / ``<blob>_splitncnn_<k>`` names that avoid all of those.
    """
    multi: list[tuple[Blob, list[tuple[Layer, int]], SplitRecord | None]] = []
    shared = graph.loaded_shared_names
    reserved_layers: set[str] = set()
    reserved_tops: set[str] = set()
    for blob in _blobs_in_layer_order(graph):
        if len(blob.consumers) < 2:
            continue
        slots = consumer_slots(graph, blob.name)
        rec = graph.splits.get(blob.name)
        name_free = rec is not None and (rec.layer_name in shared  # shared in the file
                                         or not graph.has_layer(rec.layer_name) and rec.layer_name not in reserved_layers)
        if (rec is not None and _same_slots(rec, slots) and name_free
                and not any(t in graph.blobs or t in reserved_tops for t in rec.top_names)):
            reserved_layers.add(rec.layer_name)
            reserved_tops.update(rec.top_names)
        else:
            rec = None
        multi.append((blob, slots, rec))

    planned: list[PlannedSplit] = []
    rename: dict[tuple[int, int], str] = {}
    used_layer_names = graph.layer_names() | reserved_layers | graph.splits.retired
    used_blob_names = set(graph.blobs) | reserved_tops
    counter = 0
    for blob, slots, rec in multi:
        if rec is not None:
            name, tops, params = rec.layer_name, list(rec.top_names), rec.params
            for (c, i), t in zip(rec.slots, tops, strict=True):
                rename[(id(c), i)] = t
        else:
            while f"splitncnn_{counter}" in used_layer_names:
                counter += 1
            name = f"splitncnn_{counter}"
            counter += 1
            tops = []
            for k, (c, i) in enumerate(slots):
                t = f"{blob.name}_splitncnn_{k}"
                while t in used_blob_names:
                    t += "_"
                tops.append(t)
                rename[(id(c), i)] = t
            params = []
        used_layer_names.add(name)
        used_blob_names.update(tops)
        planned.append(PlannedSplit(name, blob.name, tops, params, blob.producer))
    return planned, rename
