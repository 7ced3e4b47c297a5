"""Check an ONNX made by paddle2onnx against the Paddle model it came from.

Paddle inference runs in a subprocess of whichever python has paddle: this one, the paddle2onnx 1.3.1
side env made with ``with_paddle=True`` (legacy ``.pdmodel``), or the paddle 3.0.0 side env of
:data:`side_env.PADDLE3` (``inference.json``; paddle 3 also reads ``.pdmodel``). The input is seeded
uniform [-1, 1] noise of a shape the model was exported for (see :func:`verification_shape`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ncnnpass.ir.errors import ToolError, VerificationError
from ncnnpass.ir.runtime.external import default_cache_dir, log, run_tool
from ncnnpass.passes.measure.paddle_env import PADDLE3, ready_python

DEFAULT_ATOL = 1e-4  # measured on PP-OCR rec softmax outputs: 1e-6 .. 1e-5
DEFAULT_SHAPE = (2, 3, 48, 320)
LEGACY_ENV_NAME = "paddle2onnx-1.3.1-env"

# Runs in a subprocess with paddle: argv: model, params, x.npy, y.npy. Paddle 3 reads both the legacy
# program (.pdmodel) and the PIR program (.json) through the same Config(model, params).
_PADDLE_INFER = r"""
import sys
import numpy as np
import paddle.inference as pi
model, params, xin, yout = sys.argv[1:5]
cfg = pi.Config(model, params)
cfg.disable_gpu()
cfg.switch_ir_optim(False)
try:
    cfg.disable_mkldnn()
except Exception:
    pass
cfg.disable_glog_info()
pred = pi.create_predictor(cfg)
x = np.load(xin)
h = pred.get_input_handle(pred.get_input_names()[0])
h.reshape(list(x.shape))
h.copy_from_cpu(x)
pred.run()
np.save(yout, pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu())
"""


def _has_paddle() -> bool:
    try:
        return importlib.util.find_spec("paddle") is not None
    except (ImportError, ValueError):
        return False


def paddle_python(cache_dir: str | os.PathLike | None, kind: str) -> str | None:
    """A python that can run Paddle inference on a model of ``kind`` (``pdmodel``/``json``), or None."""
    if _has_paddle():
        return sys.executable
    legacy = Path(cache_dir or default_cache_dir()) / LEGACY_ENV_NAME
    if kind == "pdmodel" and (legacy / ".ncnnpass-with-paddle").is_file() and (legacy / "bin/python").is_file():
        return str(legacy / "bin" / "python")
    paddle3 = ready_python(PADDLE3, cache_dir)
    return str(paddle3) if paddle3 is not None else None


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


def paddle_reference(python: str, model_file: Path, params_file: Path, x: Any) -> Any:
    """Run Paddle inference on ``x`` in ``python``; return the first output."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="ncnnpass-verify-") as tmp:
        xin, yout = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
        np.save(xin, x)
        run_tool([python, "-c", _PADDLE_INFER, model_file, params_file, xin, yout],
                 what="paddle inference", env={**os.environ, "GLOG_minloglevel": "2"})
        return np.load(yout)


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
    import onnxruntime as ort

    from .paddle2onnx import find_paddle_model

    pm = find_paddle_model(model_dir)
    model = onnx.load(str(onnx_path))
    if input_shape is None:
        first = next((i.name for i in model.graph.input), "")
        input_shape = verification_shape(model_dir, first) or DEFAULT_SHAPE
    name, shape = _concrete_input(model, input_shape)
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    y = sess.run(None, {name: x})[0]
    if not np.all(np.isfinite(y)):
        raise VerificationError(f"{onnx_path}: onnxruntime output has non-finite values")
    result: dict[str, Any] = {"reference": "none", "max_abs_err": None, "output_shape": tuple(y.shape),
                              "input_shape": tuple(shape)}
    python = paddle_python(cache_dir, pm.kind)
    if python is not None:
        ref = paddle_reference(python, pm.model_file, pm.params_file, x)
        if ref.shape != y.shape:
            raise VerificationError(f"{onnx_path}: output shape {y.shape} != paddle's {ref.shape}")
        err = float(np.max(np.abs(ref.astype(np.float64) - y)))
        result.update(reference="paddle", max_abs_err=err)
        log.info("verify %s against paddle (%s) on %s: max abs err %.3g (atol %.1g)",
                 onnx_path, python, shape, err, atol)
        if err > atol:
            raise VerificationError(f"{onnx_path}: max |onnx - paddle| = {err:.3g} > {atol:g}")
        return result
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    if producers.get(sess.get_outputs()[0].name) == "Softmax":
        worst = float(np.max(np.abs(y.sum(axis=-1) - 1.0)))
        result["max_abs_err"] = worst
        if worst > 1e-3:
            raise VerificationError(f"{onnx_path}: softmax rows sum to 1 ± {worst:.3g}")
    log.info("verify %s without paddle: output %s finite%s", onnx_path, y.shape,
             "" if result["max_abs_err"] is None else f", softmax rows sum to 1 ± {result['max_abs_err']:.2g}")
    return result
