"""Layers by name and by type, kept by :class:`~ncnnpass.ir.graph.Graph` as every edit happens.

ncnn allows several layers to share a name (a lookup finds the first one in file order); the index
keeps the first under the name and the full list of a shared name apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .graph import Layer


class LayerIndex:
    """``by_name`` (first layer of each name), ``by_type`` (insertion-ordered set per type) and
    ``shared`` (the layers of each name several layers use)."""

    __slots__ = ("by_name", "by_type", "shared")

    def __init__(self) -> None:
        self.by_name: dict[str, Layer] = {}
        self.by_type: dict[str, dict[Layer, None]] = {}
        self.shared: dict[str, list[Layer]] = {}

    def add(self, layer: Layer) -> None:
        """Index ``layer``; a name already taken becomes a shared name."""
        self.add_name(layer, layer.name)
        t = self.by_type.get(layer.type)
        if t is None:
            t = self.by_type[layer.type] = {}
        t[layer] = None

    def add_name(self, layer: Layer, name: str) -> None:
        first = self.by_name.setdefault(name, layer)
        if first is not layer:
            self.shared.setdefault(name, [first]).append(layer)

    def remove(self, layer: Layer, positions: Callable[[], dict[Layer, int]]) -> None:
        self.forget_name(layer, layer.name, positions)
        of_type = self.by_type[layer.type]
        del of_type[layer]
        if not of_type:
            del self.by_type[layer.type]

    def forget_name(self, layer: Layer, name: str, positions: Callable[[], dict[Layer, int]]) -> None:
        """Drop ``layer`` under ``name``; a shared name then points at its first remaining layer
        (``positions`` is asked for the layer order only then)."""
        shared = self.shared.get(name)
        if shared is None:
            del self.by_name[name]
            return
        shared.remove(layer)
        pos = positions()
        self.by_name[name] = min(shared, key=lambda ly: pos.get(ly, len(pos)))
        if len(shared) == 1:
            del self.shared[name]

    def of_type(self, type: str) -> list[Layer]:
        return list(self.by_type.get(type, ()))

    def count(self, type: str) -> int:
        return len(self.by_type.get(type, ()))
