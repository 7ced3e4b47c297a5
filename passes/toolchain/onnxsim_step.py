"""Simplify an ONNX model with onnxsim (checked, written atomically).

onnxsim is C++ underneath and can crash or hang on models it does not expect (torch-exported
attention models, huge constant folds), so it runs in a child Python process with a timeout: any
failure, a crash included, becomes a :class:`ToolError` the caller can fall back from.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ncnnpass.ir.errors import ToolError
from ncnnpass.ir.fileio import atomic_write
from ncnnpass.ir.runtime.external import log, run_tool

DEFAULT_TIMEOUT = 600.0

# Runs in a child process. argv: input, output, input-shape JSON (or "null"). Exit 3: check failed.
_SIMPLIFY = r"""
import json, sys, time
import onnx, onnxsim
src, dst, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model = onnx.load(src)
kwargs = {}
if shape is not None:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        sys.exit(f"input_shape given but the model has {len(inputs)} inputs: {inputs}")
    kwargs["overwrite_input_shapes"] = {inputs[0]: shape}
start = time.perf_counter()
simplified, ok = onnxsim.simplify(model, **kwargs)
if not ok:
    sys.exit(3)
onnx.save(simplified, dst)
print(json.dumps({"nodes": [len(model.graph.node), len(simplified.graph.node)],
                  "seconds": time.perf_counter() - start}))
"""


def simplify_onnx(in_path: str | os.PathLike, out_path: str | os.PathLike,
                  input_shape: Sequence[int] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Run onnxsim on ``in_path`` and write the checked result to ``out_path`` atomically.

    ``input_shape`` fixes the shape of the model's single graph input (dynamic dims otherwise stay).
    Raises :class:`ToolError` when onnxsim is missing, fails, crashes, or runs longer than ``timeout``.
    """
    import importlib.util

    if importlib.util.find_spec("onnxsim") is None:
        raise ToolError("onnxsim is not installed: pip install onnxsim")
    src = Path(in_path)
    if not src.is_file():
        raise ToolError(f"ONNX model not found: {src}")
    shape = json.dumps([int(d) for d in input_shape] if input_shape is not None else None)
    log.info("onnxsim %s -> %s (input shape %s)", src, out_path, shape)
    out = Path(out_path)
    with tempfile.TemporaryDirectory(prefix=".onnxsim-", dir=out.parent if out.parent.is_dir() else None) as tmp:
        staged = Path(tmp) / "simplified.onnx"
        try:
            proc = run_tool([sys.executable, "-c", _SIMPLIFY, src, staged, shape], timeout=timeout, what="onnxsim")
        except ToolError as exc:
            if "exit code 3" in str(exc):
                raise ToolError(f"onnxsim could not validate the simplified model of {src}") from None
            raise ToolError(f"onnxsim failed on {src}: {str(exc).strip().splitlines()[-1][:300]}") from None
        atomic_write(out, staged.read_bytes())
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        log.info("onnxsim finished in %.2fs (%d -> %d nodes)", info["seconds"], *info["nodes"])
    except (ValueError, IndexError, KeyError):
        pass
    return out
