"""Drop the unused ``roi`` of ONNX ``Resize`` nodes before pnnx sees the model.

paddle2onnx writes every ``Resize`` (PP-OCR DB detectors' FPN upsampling) with a constant 8-value
``roi`` input. ONNX uses ``roi`` only with ``coordinate_transformation_mode="tf_crop_and_resize"``;
for every other mode it is ignored. pnnx does not know that: it keeps such a node as an unknown
``Resize`` layer that ncnn cannot run. Replacing the roi by an empty tensor (the spec's "not given",
valid for opset 11+, where the input is not optional) changes no result and lets pnnx write ``Interp``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ncnnpass.ir.fileio import atomic_write

__all__ = ["clear_unused_resize_roi"]

_EMPTY = "ncnnpass_empty_roi"


def _mode(node) -> str:
    for a in node.attribute:
        if a.name == "coordinate_transformation_mode":
            return a.s.decode()
    return "half_pixel"


def clear_unused_resize_roi(model) -> int:
    """Point the roi of each ``Resize`` that ignores it at an empty tensor; returns how many changed."""
    import numpy as np
    from onnx import numpy_helper

    changed = 0
    for node in model.graph.node:
        if (node.op_type == "Resize" and len(node.input) > 1 and node.input[1] not in ("", _EMPTY)
                and _mode(node) != "tf_crop_and_resize"):
            node.input[1] = _EMPTY
            changed += 1
    if changed and all(i.name != _EMPTY for i in model.graph.initializer):
        model.graph.initializer.append(numpy_helper.from_array(np.zeros((0,), np.float32), _EMPTY))
    return changed


def prepare_for_pnnx(src: str | os.PathLike, out: str | os.PathLike) -> tuple[Path, int]:
    """``src`` with unused Resize rois cleared, written to ``out`` when anything changed (else ``src``)."""
    import onnx

    model = onnx.load(str(src))
    n = clear_unused_resize_roi(model)
    if not n:
        return Path(src), 0
    atomic_write(out, model.SerializeToString())
    return Path(out), n
