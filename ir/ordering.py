"""Layer order: the stable topological sort and the order a :meth:`Graph.batch` rebuilds.

Pure functions over layer lists and blob producers; :class:`~ncnnpass.ir.graph.Graph` owns the
order and calls them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import GraphError

if TYPE_CHECKING:
    from .graph import Blob, Layer


@dataclass
class PendingOrder:
    """Order changes collected inside :meth:`Graph.batch`: removed layers, and layers placed after another."""

    removed: set[Layer] = field(default_factory=set)
    after: dict[Layer, list[Layer]] = field(default_factory=dict)
    placed: set[Layer] = field(default_factory=set)


def stable_topo_order(layers: list[Layer], blobs: Mapping[str, Blob]) -> list[Layer]:
    """``layers`` in stable topological order (Kahn; keeps the given order where it is already valid)."""
    pos = {ly: i for i, ly in enumerate(layers)}
    indeg = {ly: 0 for ly in layers}
    users: dict[Layer, list[Layer]] = {ly: [] for ly in layers}
    for ly in layers:
        for n in set(ly.inputs):
            p = blobs[n].producer
            if p is not None and p is not ly:
                indeg[ly] += 1
                users[p].append(ly)
    heap = [pos[ly] for ly, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    order: list[Layer] = []
    while heap:
        ly = layers[heapq.heappop(heap)]
        order.append(ly)
        for u in users[ly]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, pos[u])
    if len(order) != len(layers):
        stuck = [ly.name for ly in layers if indeg[ly] > 0][:5]
        raise GraphError(f"the graph has a cycle through layers {', '.join(stuck)}")
    return order


def batched_order(layers: list[Layer], pending: PendingOrder, alive: Callable[[Layer], bool]) -> list[Layer]:
    """The order after a batch: ``layers`` without the removed ones, each layer placed ``after`` an
    anchor right behind it (pre-order, so chains keep their order); ``alive`` tells whether a layer is
    still in the graph."""
    order: list[Layer] = []
    emitted: set[Layer] = set()

    def emit(ly: Layer) -> None:
        if alive(ly) and ly not in pending.removed and ly not in emitted:
            emitted.add(ly)
            order.append(ly)

    def emit_after(anchor: Layer) -> None:
        # pre-order: each placed layer, then the layers placed after it, then its next sibling
        stack = [iter(pending.after.pop(anchor, ()))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            emit(child)
            stack.append(iter(pending.after.pop(child, ())))

    for ly in layers:
        if ly not in pending.placed:
            emit(ly)
        emit_after(ly)
    for anchor in list(pending.after):  # anchors that are not in the list: keep their layers
        emit_after(anchor)
    for ly in layers:
        emit(ly)
    return order
