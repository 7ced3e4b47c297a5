"""The weight methods of :class:`~ncnnpass.ir.graph.Layer`: read, set (with the layout its params
call for) and check a layer's ``.bin`` arrays."""

from __future__ import annotations

import numpy as np

from .errors import GraphError, WeightError
from .weights import Weight, weight_slots


class LayerWeights:
    """Mixin of :class:`Layer`: expects ``type``, ``name``, ``params`` and ``weights``."""

    __slots__ = ()

    def weight(self, name: str) -> np.ndarray:
        """A weight as float32 numpy (a view of the file when stored fp32 and unedited)."""
        try:
            return self.weights[name].float32()
        except KeyError:
            raise GraphError(f"layer {self.name!r} ({self.type}) has no weight {name!r}; "
                             f"it has {', '.join(self.weights) or 'none'}") from None

    def set_weight(self, name: str, values: np.ndarray, storage: str | None = None) -> None:
        """Set a weight's values; creates it when the layer's params call for it, and recreates it with
        the new size when the params changed its size (same storage unless ``storage`` is given)."""
        w = self.weights.get(name)
        if w is not None:
            try:
                slot = next((sl for sl in weight_slots(self.type, self.params, self.name) if sl.name == name), None)
            except WeightError:  # a custom type without a registered layout: keep the array's own size
                slot = None
            if slot is not None and (slot.count != w.count or slot.tagged != w.tagged):
                if storage is None and slot.tagged and w.tagged and w.storage in ("fp32", "fp16", "bf16", "int8"):
                    storage = w.storage
                self.weights[name] = Weight.from_array(slot, values, storage)
                return
        if w is None:
            for slot in weight_slots(self.type, self.params, self.name):
                if slot.name == name:
                    self.weights[name] = Weight.from_array(slot, values, storage)
                    self.order_weights()
                    return
            raise GraphError(f"layer {self.name!r} ({self.type}) with these params reads no weight {name!r}")
        w.set(values, storage)

    def order_weights(self) -> None:
        """Put the weights in the order ncnn reads them (unknown ones last)."""
        order = [s.name for s in weight_slots(self.type, self.params, self.name)]
        self.weights = {n: self.weights[n] for n in order if n in self.weights} | {
            n: w for n, w in self.weights.items() if n not in order}

    def check_weights(self) -> None:
        """Raise :class:`WeightError` unless the weights match what the params make ncnn read."""
        slots = weight_slots(self.type, self.params, self.name)
        names = [s.name for s in slots]
        if list(self.weights) != names:
            raise WeightError(f"layer {self.name!r} ({self.type}): params call for weights "
                              f"[{', '.join(names)}] but it holds [{', '.join(self.weights)}]")
        for s in slots:
            w = self.weights[s.name]
            if w.count != s.count or w.tagged != s.tagged:
                raise WeightError(f"layer {self.name!r} ({self.type}): weight {s.name!r} has {w.count} values, "
                                  f"params call for {s.count}")
