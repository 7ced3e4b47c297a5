"""Run ``.param``/``.bin`` files in the real ncnn wheel, independently of ``ncnnpass.ir.runtime``.

Tests use this to check what ncnnpass *writes*: the files are loaded with ``ncnn.Net().load_param`` /
``load_model`` from disk, light mode stays on (the default, which is what breaks a graph without Split
layers), and each requested output gets a fresh extractor so light mode never has to be turned off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import ncnn
import numpy as np

# ncnn.Option fields per named preset; "fp32" turns every reduced-precision storage path off.
PRESETS: dict[str, dict[str, bool]] = {
    "default": {},
    "fp32": {"use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False,
             "use_bf16_storage": False, "use_bf16_packed": False},
}


class NcnnLoadError(AssertionError):
    """ncnn refused the files (a test failure, not a skip)."""


def options(preset: str | Mapping[str, object] = "default", num_threads: int = 1) -> ncnn.Option:
    opt = ncnn.Option()
    for k, v in (PRESETS[preset] if isinstance(preset, str) else preset).items():
        setattr(opt, k, v)
    opt.num_threads = num_threads
    return opt


def load_files(param: str | Path, bin: str | Path | None, preset: str | Mapping[str, object] = "default",
               num_threads: int = 1) -> ncnn.Net:
    net = ncnn.Net()
    net.opt = options(preset, num_threads)
    if net.load_param(str(param)) != 0:
        raise NcnnLoadError(f"ncnn load_param({param}) failed")
    if bin is None:
        ret = net.load_model(ncnn.DataReaderFromEmpty())
    else:
        ret = net.load_model(str(bin))
    if ret != 0:
        raise NcnnLoadError(f"ncnn load_model({bin}) failed ({ret})")
    return net


def _mat(arr: np.ndarray) -> ncnn.Mat:
    a = np.ascontiguousarray(arr)
    if a.dtype not in (np.float32, np.int32):
        a = a.astype(np.float32)
    return ncnn.Mat(a).clone()  # ncnn-owned: a non-owning Mat crashes in-place first layers in light mode


def run_net(net: ncnn.Net, inputs: Mapping[str, np.ndarray], outputs: Iterable[str],
            light_mode: bool = True) -> dict[str, np.ndarray]:
    """Extract each output with its own extractor (light mode stays as given)."""
    result = {}
    for name in outputs:
        with net.create_extractor() as ex:
            ex.set_light_mode(light_mode)
            for k, v in inputs.items():
                if ex.input(k, _mat(v)) != 0:
                    raise NcnnLoadError(f"ncnn refused input {k!r}")
            ret, mat = ex.extract(name)
            if ret != 0:
                raise NcnnLoadError(f"ncnn could not extract {name!r} ({ret})")
            result[name] = np.array(mat, copy=True)
    return result


def run_files(param: str | Path, bin: str | Path | None, inputs: Mapping[str, np.ndarray],
              outputs: Iterable[str], preset: str | Mapping[str, object] = "default",
              light_mode: bool = True, num_threads: int = 1) -> dict[str, np.ndarray]:
    """Load the files in ncnn and extract ``outputs`` (light mode on by default)."""
    net = load_files(param, bin, preset, num_threads)
    try:
        return run_net(net, inputs, list(outputs), light_mode)
    finally:
        net.clear()


def param_text_accepted(text: str) -> bool:
    """Whether ncnn's own ``load_param_mem`` accepts this ``.param`` text."""
    net = ncnn.Net()
    try:
        return net.load_param_mem(text) == 0
    finally:
        net.clear()


def model_file_accepted(param: str | Path, bin: str | Path) -> bool:
    """Whether ncnn's ``load_model`` accepts the file ``bin`` as the weights of ``param``."""
    net = ncnn.Net()
    net.opt = options("fp32")
    try:
        if net.load_param(str(param)) != 0:
            raise NcnnLoadError(f"ncnn load_param({param}) failed")
        return net.load_model(str(bin)) == 0
    finally:
        net.clear()
