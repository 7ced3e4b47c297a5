"""Run a :class:`Graph` in the real ncnn runtime (the ``ncnn`` pip package).

Options are applied before loading (ncnn requires it). Inputs are cloned into ncnn-owned Mats
(a non-owning Mat fed to an in-place first layer crashes ncnn in light mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .errors import RuntimeBridgeError
from .graph import Graph

# Named option sets. "default" is ncnn's own defaults; "fp32" turns every reduced-precision path off.
OPTION_PRESETS: dict[str, dict[str, bool]] = {
    "default": {},
    "fp32": {"use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False,
             "use_bf16_storage": False, "use_bf16_packed": False},
    "no-packing": {"use_packing_layout": False},
    "no-sgemm-winograd": {"use_sgemm_convolution": False, "use_winograd_convolution": False},
    "bf16": {"use_bf16_storage": True, "use_bf16_packed": True},
}


# Inputs are allocated from shapes a .param declares (Input 0=w 1=h 2=c) or a user gives: a lying
# header must not make us allocate gigabytes (PP-OCR rec inputs are 3x48x320 = 46k values).
MAX_INPUT_VALUES = 1 << 26  # 256 MiB of float32 over all inputs


def check_input_shapes(shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Raise :class:`RuntimeBridgeError` for non-positive dims or more than :data:`MAX_INPUT_VALUES` values."""
    total = 0
    for name, shape in shapes.items():
        if not shape or any(int(d) <= 0 for d in shape):
            raise RuntimeBridgeError(f"input {name!r}: shape {tuple(shape)} must have positive dimensions")
        n = 1
        for d in shape:
            n *= int(d)
        total += n
    if total > MAX_INPUT_VALUES:
        desc = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in shapes.items())
        raise RuntimeBridgeError(f"input shapes {desc} hold {total} values, more than the {MAX_INPUT_VALUES} "
                                 "ncnnpass allocates to run a model (give a smaller shape)")


def _ncnn():
    try:
        import ncnn
    except ImportError as exc:  # pragma: no cover - ncnn is a hard dependency
        raise RuntimeBridgeError(f"the ncnn Python package is not importable: {exc} (pip install ncnn)") from None
    return ncnn


def make_options(options: str | Mapping[str, object] | None = None, num_threads: int | None = None):
    """An ``ncnn.Option`` from a preset name or a dict of field overrides."""
    ncnn = _ncnn()
    opt = ncnn.Option()
    if isinstance(options, str) and options not in OPTION_PRESETS:
        raise RuntimeBridgeError(f"unknown option preset {options!r} (one of {', '.join(OPTION_PRESETS)})")
    fields = OPTION_PRESETS[options] if isinstance(options, str) else dict(options or {})
    for k, v in fields.items():
        if not hasattr(opt, k):
            raise RuntimeBridgeError(f"ncnn.Option has no field {k!r}")
        setattr(opt, k, v)
    if num_threads is not None:
        opt.num_threads = num_threads
    return opt


@dataclass
class LoadedNet:
    """A Graph loaded into ncnn; keep it around to run many inputs."""

    net: object
    graph_inputs: list[str]
    graph_outputs: list[str]

    def run(self, inputs: Mapping[str, np.ndarray] | np.ndarray, outputs: Iterable[str] | str | None = None,
            light_mode: bool | None = None) -> dict[str, np.ndarray]:
        ncnn = _ncnn()
        if isinstance(inputs, np.ndarray):
            if len(self.graph_inputs) != 1:
                raise RuntimeBridgeError(f"the model has inputs {self.graph_inputs}; pass a dict")
            inputs = {self.graph_inputs[0]: inputs}
        if outputs == "all":
            names = [b.name for b in self.net.blobs() if b.name and b.producer != -1]
        elif outputs is None:
            names = list(self.graph_outputs)
        else:
            names = [outputs] if isinstance(outputs, str) else list(outputs)
        extract_all = light_mode is False or len(names) > 1
        with self.net.create_extractor() as ex:
            if light_mode is not None or extract_all:
                ex.set_light_mode(bool(light_mode) if light_mode is not None else False)
            for name, arr in inputs.items():
                # int32 stays int32 (ncnn reads int bits: Embed token ids, Dequantize/Requantize input);
                # everything else becomes float32
                arr = np.asarray(arr)
                a = np.ascontiguousarray(arr, dtype=np.int32 if arr.dtype == np.int32 else np.float32)
                if a.ndim == 4 and a.shape[0] == 1:
                    a = a[0]
                if ex.input(name, ncnn.Mat(a).clone()) != 0:
                    raise RuntimeBridgeError(f"ncnn refused input blob {name!r}")
            result = {}
            for name in names:
                ret, mat = ex.extract(name)
                if ret != 0:
                    raise RuntimeBridgeError(f"ncnn could not extract blob {name!r} (error {ret})")
                if min(mat.w, mat.h, mat.d, mat.c) < 0:  # e.g. Reshape 0=-5: ncnn returns 0 and a bogus Mat
                    raise RuntimeBridgeError(f"ncnn gave blob {name!r} the invalid shape w={mat.w} h={mat.h} "
                                             f"d={mat.d} c={mat.c} (a layer param out of range?)")
                result[name] = np.array(mat, copy=True)
        return result


def load(graph: Graph, options: str | Mapping[str, object] | None = None,
         num_threads: int | None = None) -> LoadedNet:
    """Load ``graph`` into an ``ncnn.Net`` with the given options (set before loading)."""
    ncnn = _ncnn()
    net = ncnn.Net()
    net.opt = make_options(options, num_threads)
    text = graph.to_param_text()
    if net.load_param_mem(text) != 0:
        raise RuntimeBridgeError("ncnn rejected the .param text (see ncnn's log above)")
    data = graph.to_bin_bytes()
    if data:
        net.load_model_mem(data)
    else:
        net.load_model(ncnn.DataReaderFromEmpty())
    return LoadedNet(net, graph.inputs, graph.outputs)


def run(graph: Graph, inputs: Mapping[str, np.ndarray] | np.ndarray, outputs: Iterable[str] | str | None = None,
        options: str | Mapping[str, object] | None = None, num_threads: int | None = None,
        light_mode: bool | None = None) -> dict[str, np.ndarray]:
    """Run once: ``outputs`` = None (protected outputs), a name, a list, or ``"all"`` blobs."""
    return load(graph, options, num_threads).run(inputs, outputs, light_mode)


def infer_shapes(graph: Graph, input_shapes: Mapping[str, tuple[int, ...]] | tuple[int, ...],
                 options: str | Mapping[str, object] | None = "fp32") -> dict[str, tuple[int, ...]]:
    """Run zeros of the given input shapes (numpy order, e.g. (c, h, w)) and record every blob's shape."""
    if not isinstance(input_shapes, Mapping):
        ins = graph.inputs
        if len(ins) != 1:
            raise RuntimeBridgeError(f"the model has inputs {ins}; give a shape per input")
        input_shapes = {ins[0]: tuple(input_shapes)}
    check_input_shapes(input_shapes)
    feeds = {k: np.zeros(v, np.float32) for k, v in input_shapes.items()}
    names = list(graph.blobs)
    result = run(graph, feeds, names, options, light_mode=False)
    shapes = {}
    for name, arr in result.items():
        shapes[name] = tuple(arr.shape)
        graph.blobs[name].shape = tuple(arr.shape)
    return shapes
