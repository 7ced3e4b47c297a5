""":class:`Blob` and the producer/consumer links a layer's wiring makes in a graph's blob table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import GraphError

if TYPE_CHECKING:
    from .graph import Layer


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


def link_layer(blobs: dict[str, Blob], layer: Layer) -> None:
    """Record ``layer`` as a consumer of its inputs and the producer of its outputs (blobs are
    created on first use); a blob another layer produces is refused."""
    for n in layer.inputs:
        b = blobs.get(n)
        if b is None:
            b = blobs[n] = Blob(n)
        b.consumers.append(layer)
    for n in layer.outputs:
        b = blobs.get(n)
        if b is None:
            b = blobs[n] = Blob(n)
        elif b.producer is not None and b.producer is not layer:
            raise GraphError(f"blob {n!r} would be produced twice: by {b.producer.name!r} and {layer.name!r}")
        b.producer = layer


def unlink_layer(blobs: dict[str, Blob], layer: Layer) -> None:
    """Undo :func:`link_layer`; blobs left without producer and consumers are dropped."""
    for n in layer.inputs:
        b = blobs[n]
        b.consumers.remove(layer)
        if b.producer is None and not b.consumers:
            del blobs[n]
    for n in layer.outputs:
        b = blobs.get(n)
        if b is None:  # (an output the layer also reads, dropped above)
            continue
        if b.producer is layer:
            b.producer = None
        if b.producer is None and not b.consumers:
            del blobs[n]
