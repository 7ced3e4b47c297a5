"""Check an ONNX made by paddle2onnx against the Paddle model it came from.

Paddle inference runs through :class:`ncnnpass.passes.measure.paddle_runner.PaddleRunner` (a subprocess
of whichever python has paddle), onnxruntime through :class:`~ncnnpass.passes.measure.onnx_runner.OnnxRunner`.
The input is the measurement core's seeded uniform [-1, 1] noise of a shape the model was exported for
(see :func:`verification_shape`).
"""

from __future__ import annotations

import os
from typing import Any

from ncnnpass.ir.errors import ToolError, VerificationError
from ncnnpass.ir.runtime.external import log
from ncnnpass.passes.measure.paddle_runner import LEGACY_ENV_NAME, PaddleRunner, paddle_python

__all__ = ["DEFAULT_ATOL", "DEFAULT_SHAPE", "LEGACY_ENV_NAME", "paddle_python", "verification_shape",
           "verify_conversion"]

DEFAULT_ATOL = 1e-4  # measured on PP-OCR rec softmax outputs: 1e-6 .. 1e-5
DEFAULT_SHAPE = (2, 3, 48, 320)


def verification_shape(model_dir: str | os.PathLike, input_name: str) -> tuple[int, ...] | None:
    """The input shape the export declares, with a batch of 2 where allowed; None when it says nothing.

    PaddleOCR 3.x writes ``Hpi.backend_configs.paddle_infer.trt_dynamic_shapes`` (min, opt, max per
    input) into ``inference.yml``: the opt shape is used. Otherwise ``RecResizeImg.image_shape`` from the
    PreProcess ops (see :mod:`ncnnpass.passes.measure.export_config`).
    """
    from ncnnpass.passes.measure.dictionary import rec_image_shape
    from ncnnpass.passes.measure.export_config import first_fact

    found = first_fact(model_dir, lambda config: config.trt_dynamic_shapes(input_name), ("inference.yml",))
    if found is not None:
        lo, opt, hi = found[0]
        if len(opt) == 4 and len(lo) >= 1 and len(hi) >= 1:
            return (max(lo[0], min(2, hi[0])), *opt[1:])
    shape = rec_image_shape(model_dir)
    return (2, *shape) if shape else None


def _concrete_input(model: Any, input_shape: tuple[int, ...]) -> tuple[str, list[int]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ToolError(f"expected one graph input, found {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ToolError(f"input {inputs[0].name} has rank {len(dims)}, the verification shape "
                        f"{input_shape} has {len(input_shape)}")
    shape = [d.dim_value if d.dim_value > 0 else input_shape[k] for k, d in enumerate(dims)]
    return inputs[0].name, shape


def verify_conversion(model_dir: str | os.PathLike, onnx_path: str | os.PathLike,
                      input_shape: tuple[int, ...] | None = None, atol: float = DEFAULT_ATOL,
                      seed: int = 0, cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check an ONNX made from ``model_dir`` numerically; raise :class:`VerificationError` on mismatch.

    With paddle available (see :func:`paddle_python`), the onnxruntime output on a seeded uniform [-1, 1]
    input must match Paddle inference within ``atol`` (absolute). Without paddle the output must be
    finite and, when the graph ends in Softmax, every row must sum to 1 (within 1e-3). ``input_shape``
    fills the dynamic dims (default: :func:`verification_shape`, else 2×3×48×320).
    Returns ``{"reference": "paddle"|"none", "max_abs_err": float|None, "output_shape": tuple,
    "input_shape": tuple}``.
    """
    import numpy as np
    import onnx

    from ncnnpass.passes.measure.inputs import seeded_array
    from ncnnpass.passes.measure.onnx_runner import OnnxRunner
    from ncnnpass.passes.measure.tolerance import diff_arrays

    from .paddle2onnx import find_paddle_model

    pm = find_paddle_model(model_dir)
    model = onnx.load(str(onnx_path))
    if input_shape is None:
        first = next((i.name for i in model.graph.input), "")
        input_shape = verification_shape(model_dir, first) or DEFAULT_SHAPE
    name, shape = _concrete_input(model, input_shape)
    x = seeded_array(shape, seed)
    runner = OnnxRunner(model)
    y = runner.run({name: x})[runner.outputs[0]]
    if not np.all(np.isfinite(y)):
        raise VerificationError(f"{onnx_path}: onnxruntime output has non-finite values")
    result: dict[str, Any] = {"reference": "none", "max_abs_err": None, "output_shape": tuple(y.shape),
                              "input_shape": tuple(shape)}
    python = paddle_python(cache_dir, pm.kind)
    if python is not None:
        ref = PaddleRunner(python, pm.model_file, pm.params_file).run(x)["output"]
        if ref.shape != y.shape:
            raise VerificationError(f"{onnx_path}: output shape {y.shape} != paddle's {ref.shape}")
        err = diff_arrays("output", ref, y).max_abs
        result.update(reference="paddle", max_abs_err=err)
        log.info("verify %s against paddle (%s) on %s: max abs err %.3g (atol %.1g)",
                 onnx_path, python, shape, err, atol)
        if err > atol:
            raise VerificationError(f"{onnx_path}: max |onnx - paddle| = {err:.3g} > {atol:g}")
        return result
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    if producers.get(runner.outputs[0]) == "Softmax":
        worst = float(np.max(np.abs(y.sum(axis=-1) - 1.0)))
        result["max_abs_err"] = worst
        if worst > 1e-3:
            raise VerificationError(f"{onnx_path}: softmax rows sum to 1 ± {worst:.3g}")
    log.info("verify %s without paddle: output %s finite%s", onnx_path, y.shape,
             "" if result["max_abs_err"] is None else f", softmax rows sum to 1 ± {result['max_abs_err']:.2g}")
    return result
