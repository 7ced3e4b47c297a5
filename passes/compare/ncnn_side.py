"""The ncnn side: load a :class:`Graph` under an option set and extract every blob, or run one layer
fed with given tensors (``Extractor.input`` accepts any blob name).

Options are set before loading; light mode is off so that every blob survives and in-place layers run
out of place; fed tensors are cloned into ncnn-owned Mats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import RuntimeBridgeError
from ncnnpass.ir.runtime import OPTION_PRESETS, make_options

__all__ = ["OptionSet", "parse_option_sets", "DEFAULT_SWEEP", "NcnnModel", "NcnnRunError"]

# The sweep of issue 4: ncnn's defaults, then one family of reduced-precision or layout paths at a time.
DEFAULT_SWEEP = ("default", "fp32", "no-packing", "no-sgemm-winograd", "bf16")

DESCRIPTIONS = {
    "default": "ncnn defaults",
    "fp32": "fp16 storage/packed/arithmetic off",
    "no-packing": "packing layout off",
    "no-sgemm-winograd": "sgemm and winograd convolution off",
    "bf16": "bf16 storage/packed on",
}


class NcnnRunError(RuntimeBridgeError):
    """ncnn could not run the model on this input."""


@dataclass(frozen=True)
class OptionSet:
    """A named set of ``ncnn.Option`` field overrides (relative to ncnn's defaults)."""

    name: str
    fields: tuple[tuple[str, bool | int], ...] = ()

    @property
    def dict(self) -> dict[str, bool | int]:
        return dict(self.fields)

    @property
    def description(self) -> str:
        if self.name in DESCRIPTIONS and self.dict == OPTION_PRESETS.get(self.name):
            return DESCRIPTIONS[self.name]
        return ", ".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in self.fields) or "ncnn defaults"

    @classmethod
    def preset(cls, name: str) -> OptionSet:
        if name not in OPTION_PRESETS:
            raise RuntimeBridgeError(f"unknown option set {name!r} (one of {', '.join(OPTION_PRESETS)}, "
                                     "or NAME:field=value,... for your own)")
        return cls(name, tuple(OPTION_PRESETS[name].items()))


def _parse_value(text: str) -> bool | int:
    t = text.strip().lower()
    if t in ("1", "true", "on", "yes"):
        return True
    if t in ("0", "false", "off", "no"):
        return False
    try:
        return int(t)
    except ValueError:
        raise RuntimeBridgeError(f"bad option value {text!r}: use 0/1, true/false or an integer") from None


def parse_option_sets(specs: Iterable[str] | None) -> list[OptionSet]:
    """``["default", "fp32", "mine:use_fp16_storage=0,use_winograd_convolution=0", "all"]`` -> option sets.

    ``all`` expands to the standard sweep; ``default`` is always included (first), since every
    attribution is relative to it.
    """
    out: list[OptionSet] = []
    for spec in specs or ["all"]:
        for item in _split_specs(spec):
            if item == "all":
                out.extend(OptionSet.preset(n) for n in DEFAULT_SWEEP)
                continue
            if ":" in item:
                name, _, body = item.partition(":")
                fields = []
                for kv in body.split(","):
                    if not kv.strip():
                        continue
                    k, eq, v = kv.partition("=")
                    if not eq:
                        raise RuntimeBridgeError(f"bad option set {item!r}: expected NAME:field=value,...")
                    fields.append((k.strip(), _parse_value(v)))
                opt = make_options()
                for k, _ in fields:
                    if not hasattr(opt, k):
                        raise RuntimeBridgeError(f"bad option set {item!r}: ncnn.Option has no field {k!r}")
                out.append(OptionSet(name.strip() or "custom", tuple(fields)))
            else:
                out.append(OptionSet.preset(item))
    seen: dict[str, OptionSet] = {}
    for o in out:
        seen.setdefault(o.name, o)
    if "default" not in seen:
        seen = {"default": OptionSet.preset("default"), **seen}
    else:
        seen = {"default": seen.pop("default"), **seen}
    return list(seen.values())


def _split_specs(spec: str) -> list[str]:
    """Split ``"default,fp32,mine:a=0,b=1"`` on commas that start a new set (custom sets keep theirs)."""
    items: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if items and ":" in items[-1] and "=" in part and ":" not in part:
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def ncnn_module():
    try:
        import ncnn
    except ImportError as exc:  # pragma: no cover - hard dependency
        raise RuntimeBridgeError(f"the ncnn Python package is not importable: {exc}") from None
    return ncnn


class NcnnModel:
    """A :class:`Graph` serialized once and loadable under many option sets."""

    def __init__(self, graph: Graph, num_threads: int | None = None) -> None:
        self.graph = graph
        self.param_text = graph.to_param_text()
        self.bin_bytes = graph.to_bin_bytes()
        self.num_threads = num_threads
        self.input_blobs = list(graph.inputs)
        # blobs in topological order: inputs first, then each layer's outputs
        order: list[str] = list(self.input_blobs)
        seen = set(order)
        for ly in graph.layers:
            for b in ly.outputs:
                if b not in seen:
                    order.append(b)
                    seen.add(b)
        self.blob_order = order

    def load(self, options: OptionSet | Mapping[str, object] | None = None):
        ncnn = ncnn_module()
        net = ncnn.Net()
        fields = options.dict if isinstance(options, OptionSet) else dict(options or {})
        net.opt = make_options(fields, self.num_threads)
        if net.load_param_mem(self.param_text) != 0:
            raise NcnnpassRejected("ncnn rejected the .param text")
        if self.bin_bytes:
            net.load_model_mem(self.bin_bytes)
        else:
            net.load_model(ncnn.DataReaderFromEmpty())
        return net

    def run_all(self, net, feeds: Mapping[str, np.ndarray], blobs: Iterable[str] | None = None
                ) -> dict[str, np.ndarray]:
        """Every blob (or the given ones) after one forward pass with light mode off."""
        ncnn = ncnn_module()
        names = list(blobs) if blobs is not None else self.blob_order
        out: dict[str, np.ndarray] = {}
        with net.create_extractor() as ex:
            ex.set_light_mode(False)
            for name, arr in feeds.items():
                if ex.input(name, _mat(ncnn, arr)) != 0:
                    raise NcnnRunError(f"ncnn refused input blob {name!r}")
            for name in names:
                if name in feeds:
                    out[name] = np.array(feeds[name], dtype=np.float32, copy=True)
                    continue
                ret, mat = ex.extract(name)
                if ret != 0 or mat.dims == 0:
                    ly = self.graph.blobs[name].producer if name in self.graph.blobs else None
                    where = f" (layer {ly.name}, {ly.type})" if ly is not None else ""
                    raise NcnnRunError(f"ncnn failed to compute blob {name!r}{where} (error {ret})")
                out[name] = np.array(mat, copy=True)
        return out

    def run_layer(self, net, layer_inputs: Mapping[str, np.ndarray], outputs: Iterable[str]
                  ) -> dict[str, np.ndarray] | None:
        """One layer fed the given input blobs; ``None`` if ncnn refuses (e.g. a shape it cannot take)."""
        ncnn = ncnn_module()
        out: dict[str, np.ndarray] = {}
        with net.create_extractor() as ex:
            ex.set_light_mode(False)
            for name, arr in layer_inputs.items():
                if ex.input(name, _mat(ncnn, arr)) != 0:
                    return None
            for name in outputs:
                ret, mat = ex.extract(name)
                if ret != 0 or mat.dims == 0:
                    return None
                out[name] = np.array(mat, copy=True)
        return out


class NcnnpassRejected(NcnnRunError):
    """ncnn rejected the model text."""


def _mat(ncnn, arr: np.ndarray):
    a = np.ascontiguousarray(arr, dtype=np.float32)
    if a.ndim > 4:
        raise NcnnRunError(f"cannot feed a {a.ndim}-D tensor to ncnn (at most c,d,h,w)")
    return ncnn.Mat(a).clone()
