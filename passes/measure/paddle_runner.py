"""Paddle inference as a runner, in a subprocess of whichever python has paddle.

That is this python when paddle is importable, else the paddle2onnx 1.3.1 side env made with paddle
(legacy ``inference.pdmodel``), else the paddle 3.0.0 side env (:data:`.paddle_env.PADDLE3`; it reads
``inference.json`` and ``.pdmodel``). Each run is one subprocess: Paddle is the reference of a
conversion check, run a few times per model.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ncnnpass.ir.runtime.external import default_cache_dir, run_tool

from .paddle_env import PADDLE3, ready_python

__all__ = ["LEGACY_ENV_NAME", "PaddleRunner", "paddle_python"]

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


class PaddleRunner:
    """Paddle inference of ``model_file`` + ``params_file`` with ``python``; one input, the first output
    (named ``output``)."""

    name = "paddle inference"

    def __init__(self, python: str, model_file: str | os.PathLike, params_file: str | os.PathLike) -> None:
        self.python = python
        self.model_file, self.params_file = Path(model_file), Path(params_file)
        self.outputs = ["output"]

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray, outputs: Sequence[str] | None = None
            ) -> dict[str, np.ndarray]:
        x = inputs if isinstance(inputs, np.ndarray) else next(iter(inputs.values()))
        with tempfile.TemporaryDirectory(prefix="ncnnpass-paddle-") as tmp:
            xin, yout = Path(tmp) / "x.npy", Path(tmp) / "y.npy"
            np.save(xin, np.asarray(x, np.float32))
            run_tool([self.python, "-c", _PADDLE_INFER, self.model_file, self.params_file, xin, yout],
                     what="paddle inference", env={**os.environ, "GLOG_minloglevel": "2"})
            return {"output": np.load(yout)}
