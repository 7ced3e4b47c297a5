"""Simplify an ONNX model with onnxsim (checked, written atomically)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from ncnnpass.ir.errors import ToolError
from ncnnpass.ir.fileio import atomic_write

from . import log


def simplify_onnx(in_path: str | os.PathLike, out_path: str | os.PathLike,
                  input_shape: Sequence[int] | None = None) -> Path:
    """Run onnxsim on ``in_path`` and write the checked result to ``out_path`` atomically.

    ``input_shape`` fixes the shape of the model's single graph input (dynamic dims otherwise stay).
    """
    try:
        import onnx
        import onnxsim
    except ImportError as exc:
        raise ToolError(f"onnxsim is not installed: pip install onnxsim ({exc})") from exc
    src = Path(in_path)
    if not src.is_file():
        raise ToolError(f"ONNX model not found: {src}")
    model = onnx.load(str(src))
    kwargs = {}
    if input_shape is not None:
        inits = {i.name for i in model.graph.initializer}
        inputs = [i.name for i in model.graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise ToolError(f"input_shape given but {src} has {len(inputs)} inputs: {inputs}")
        kwargs["overwrite_input_shapes"] = {inputs[0]: [int(d) for d in input_shape]}
    log.info("onnxsim %s -> %s %s", src, out_path, kwargs or "")
    start = time.perf_counter()
    try:
        simplified, ok = onnxsim.simplify(model, **kwargs)
    except Exception as exc:  # onnxsim raises bare RuntimeError/ValueError from C++
        raise ToolError(f"onnxsim failed on {src}: {exc}") from exc
    if not ok:
        raise ToolError(f"onnxsim could not validate the simplified model of {src}")
    atomic_write(out_path, simplified.SerializeToString())
    log.info("onnxsim finished in %.2fs (%d -> %d nodes)", time.perf_counter() - start,
             len(model.graph.node), len(simplified.graph.node))
    return Path(out_path)
