"""Mutation notifications of a :class:`~ncnnpass.ir.graph.Graph` (MLIR's ``RewriterBase::Listener``).

Every edit goes through the graph, and the graph tells its listeners what changed, so a table kept
beside the graph (the Split book, a pass's positions, a tool's cache) never holds a layer that left it.

>>> class Removed(GraphListener):
...     def __init__(self): self.gone = []
...     def layer_removed(self, layer): self.gone.append(layer.name)
>>> with graph.listening(Removed()) as seen:
...     apply_passes(graph, "repair")
>>> seen.gone
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar

L = TypeVar("L", bound="GraphListener")

if TYPE_CHECKING:
    from .graph import Layer


class GraphListener:
    """Override the events you need; the graph calls them after the change is made."""

    def layer_added(self, layer: Layer) -> None:
        """``layer`` joined the graph (insert, add_layer, loading)."""

    def layer_removed(self, layer: Layer) -> None:
        """``layer`` left the graph (remove, replace, cleanup); it must not be referenced any more."""

    def layer_rewired(self, layer: Layer, old_inputs: tuple[str, ...], old_outputs: tuple[str, ...]) -> None:
        """``layer``'s inputs or outputs changed (blob names before the change are given)."""

    def layer_renamed(self, layer: Layer, old_name: str) -> None:
        """``layer`` was renamed from ``old_name``."""

    def blob_renamed(self, old: str, new: str) -> None:
        """Blob ``old`` is now called ``new`` (its producer and consumers are rewired as well)."""


class EditCounter(GraphListener):
    """Counts every edit of a graph (``n``): how a driver knows whether anything at all changed, also the
    edits a pass makes without reporting them."""

    def __init__(self) -> None:
        self.n = 0

    def layer_added(self, layer: Layer) -> None:
        self.n += 1

    def layer_removed(self, layer: Layer) -> None:
        self.n += 1

    def layer_rewired(self, layer: Layer, old_inputs: tuple[str, ...], old_outputs: tuple[str, ...]) -> None:
        self.n += 1

    def layer_renamed(self, layer: Layer, old_name: str) -> None:
        self.n += 1

    def blob_renamed(self, old: str, new: str) -> None:
        self.n += 1


class Listeners:
    """The listeners of one graph, called in the order they were added."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[GraphListener] = []

    def add(self, listener: GraphListener) -> None:
        if listener not in self._items:
            self._items.append(listener)

    def discard(self, listener: GraphListener) -> None:
        if listener in self._items:
            self._items.remove(listener)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self):
        return iter(list(self._items))


class Observable:
    """Mixin of :class:`~ncnnpass.ir.graph.Graph`: listener registration and event dispatch. The Split
    book (``self.splits``) always hears first, then the listeners in the order they were added."""

    _listeners: Listeners
    splits: GraphListener

    def add_listener(self, listener: GraphListener) -> None:
        """Call ``listener`` on every later edit of this graph (until :meth:`remove_listener`)."""
        self._listeners.add(listener)

    def remove_listener(self, listener: GraphListener) -> None:
        self._listeners.discard(listener)

    @contextlib.contextmanager
    def listening(self, listener: L) -> Iterator[L]:
        """``with graph.listening(obj) as obj:`` - :meth:`add_listener` for a block."""
        self.add_listener(listener)
        try:
            yield listener
        finally:
            self.remove_listener(listener)

    def _emit(self, event: str, *args) -> None:
        getattr(self.splits, event)(*args)
        if self._listeners:
            for listener in self._listeners:
                getattr(listener, event)(*args)
