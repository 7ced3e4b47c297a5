"""The ncnn side: load a :class:`Graph` under an option set and extract every blob, or run one layer
fed with given tensors (``Extractor.input`` accepts any blob name).

Options are set before loading; light mode is off so that every blob survives and in-place layers run
out of place; fed tensors are cloned into ncnn-owned Mats.

``target`` (:mod:`ncnnpass.ir.runtime.targets`) picks where ncnn runs: ``x86`` in this process, or a worker
(``isolated``, ``arm`` = the emulated phone). On a worker one load serves every run of an option set, and
the isolated per-layer runs are split over ``workers`` parallel workers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import RuntimeBridgeError
from ncnnpass.ir.runtime import OPTION_PRESETS, PRESET_DESCRIPTIONS, make_options
from ncnnpass.ir.runtime.targets import Target, VulkanTarget, normalize_target, open_target

__all__ = ["OptionSet", "parse_option_sets", "DEFAULT_SWEEP", "PHONE_SWEEP", "VULKAN_SWEEP", "sweep_for", "NcnnModel",
           "NcnnRunError"]

# The sweep of issue 4: ncnn's defaults, then one family of reduced-precision or layout paths at a time.
DEFAULT_SWEEP = ("default", "fp32", "no-packing", "no-sgemm-winograd", "bf16")
# On the emulated phone one fp16 inference of a PP-OCR recognizer costs ~13 s: the sweep there is the
# three sets that split the fp16 loss into storage and arithmetic (default - fp16-storage = arithmetic,
# fp16-storage - fp32 = storage); the layout sets can still be asked for by name.
PHONE_SWEEP = ("default", "fp16-storage", "fp32")
# On the GPU (lavapipe: ~1 s an inference) the same split, with fp16 packed alone as well: storage of packed
# (4-wide) blobs as half pairs. fp16 uniform cannot be told apart: the Python binding has no
# use_fp16_uniform, and ncnn turns it off with fp16 arithmetic (docs/gpu.md).
VULKAN_SWEEP = ("default", "fp16-storage", "fp16-packed", "fp32")

PRESETS = OPTION_PRESETS  # the runtime's one table
DESCRIPTIONS = PRESET_DESCRIPTIONS
#: isolated single-layer runs that may crash a worker (it restarts) before the comparison gives up
MAX_WORKER_CRASHES = 3


def sweep_for(target: str | None) -> tuple[str, ...]:
    """The option sets ``all`` means on ``target``: :data:`PHONE_SWEEP` on ARM, :data:`VULKAN_SWEEP` on the GPU,
    :data:`DEFAULT_SWEEP` on x86."""
    name = normalize_target(target or "x86")
    return PHONE_SWEEP if name.startswith("arm") else VULKAN_SWEEP if name == "vulkan" else DEFAULT_SWEEP


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
        if self.name in DESCRIPTIONS and self.dict == PRESETS.get(self.name):
            return DESCRIPTIONS[self.name]
        return ", ".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in self.fields) or "ncnn defaults"

    @classmethod
    def preset(cls, name: str) -> OptionSet:
        if name not in PRESETS:
            raise RuntimeBridgeError(f"unknown option set {name!r} (one of {', '.join(PRESETS)}, "
                                     "or NAME:field=value,... for your own)")
        return cls(name, tuple(PRESETS[name].items()))


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


def parse_option_sets(specs: Iterable[str] | None, target: str | None = None) -> list[OptionSet]:
    """``["default", "fp32", "mine:use_fp16_storage=0,use_winograd_convolution=0", "all"]`` -> option sets.

    ``all`` (also what no spec means) expands to the sweep of ``target`` (:func:`sweep_for`); ``default``
    is always included (first), since every attribution is relative to it.
    """
    out: list[OptionSet] = []
    for spec in specs or ["all"]:
        for item in _split_specs(spec):
            if item == "all":
                out.extend(OptionSet.preset(n) for n in sweep_for(target))
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


class _Frozen:
    """A graph serialized once, duck-typed for :meth:`Target.run_many` (no re-serializing per run)."""

    def __init__(self, graph: Graph, param_text: str, bin_bytes: bytes | None) -> None:
        self.inputs, self.outputs = list(graph.inputs), list(graph.outputs)
        self._param, self._bin = param_text, bin_bytes or b""

    def to_param_text(self) -> str:
        return self._param

    def to_bin_bytes(self) -> bytes:
        return self._bin


@dataclass(frozen=True)
class RemoteNet:
    """The handle :meth:`NcnnModel.load` returns on a worker target: the option fields to run under."""

    fields: tuple[tuple[str, object], ...]


class NcnnModel:
    """A :class:`Graph` serialized once and loadable under many option sets, on ``target``
    (``None``/``x86``: this process; else worker sessions, ``workers`` of them for isolated runs)."""

    def __init__(self, graph: Graph, num_threads: int | None = None, target: str | None = None,
                 workers: int = 2) -> None:
        self.graph = graph
        self.param_text = graph.to_param_text()
        self.bin_bytes = graph.to_bin_bytes()
        self.num_threads = num_threads
        self.target = normalize_target(target or "x86")
        self.workers = max(1, int(workers))
        self._sessions: list[Target] = []
        self._frozen = _Frozen(graph, self.param_text, self.bin_bytes)
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

    @property
    def remote(self) -> bool:
        return self.target != "x86"

    def session(self, k: int = 0) -> Target:
        """The ``k``-th worker session (opened on first use; closed by :meth:`close`)."""
        while len(self._sessions) <= k:
            # on the GPU the report names the layers that fall back to the CPU (no progress line per session)
            quiet = {"progress": None} if self.target == "vulkan" else {}
            self._sessions.append(open_target(self.target, **quiet))
        return self._sessions[k]

    def preflight(self) -> None:
        """On a worker target: start the first worker and run a one-layer net there, so that a missing runtime or
        Vulkan device is reported as such (one line) before the model is blamed for a failed run."""
        if not self.remote:
            return
        probe = Graph.from_text("7767517\n2 2\nInput in0 0 1 in0 0=1 1=1 2=1\nReLU r 1 1 in0 out0\n")
        self.session(0).run(probe, {"in0": np.zeros((1, 1, 1), np.float32)}, ["out0"], None, 1)

    def cpu_fallback(self, options: OptionSet | Mapping[str, object] | None = None) -> list[tuple[str, str]]:
        """On the Vulkan target: (name, type) of the layers ncnn runs on the CPU for want of a Vulkan
        implementation of their type or params (layers sent there by featmask bit 4 are not listed); [] elsewhere."""
        session = self.session(0) if self.target == "vulkan" else None
        if not isinstance(session, VulkanTarget):
            return []
        fields = options.dict if isinstance(options, OptionSet) else dict(options or {})
        return session.fallback_layers(self._frozen, fields, self.num_threads)  # type: ignore[arg-type]

    def share_sessions(self, other: NcnnModel) -> None:
        """Reuse ``other``'s workers (same target): a probe or fixed graph need not start new emulators."""
        if other.target == self.target:
            self._sessions = other._sessions

    def close(self) -> None:
        for s in self._sessions:
            s.close()
        self._sessions = []

    def load(self, options: OptionSet | Mapping[str, object] | None = None):
        fields = options.dict if isinstance(options, OptionSet) else dict(options or {})
        if self.remote:
            return RemoteNet(tuple(fields.items()))
        ncnn = ncnn_module()
        net = ncnn.Net()
        net.opt = make_options(fields, self.num_threads)
        if net.load_param_mem(self.param_text) != 0:
            raise NcnnpassRejected("ncnn rejected the .param text")
        if self.bin_bytes:
            net.load_model_mem(self.bin_bytes)
        else:
            net.load_model(ncnn.DataReaderFromEmpty())
        return net

    def _remote_run(self, net: RemoteNet, feeds: Mapping[str, np.ndarray], outputs: list[str], k: int = 0
                    ) -> dict[str, np.ndarray]:
        return self.session(k).run(self._frozen, dict(feeds), outputs, dict(net.fields),  # type: ignore[arg-type]
                                   self.num_threads, light_mode=False)

    def run_all(self, net, feeds: Mapping[str, np.ndarray], blobs: Iterable[str] | None = None
                ) -> dict[str, np.ndarray]:
        """Every blob (or the given ones) after one forward pass with light mode off."""
        names = list(blobs) if blobs is not None else self.blob_order
        if isinstance(net, RemoteNet):
            wanted = [n for n in names if n not in feeds]
            try:
                got = self._remote_run(net, feeds, wanted)
            except RuntimeBridgeError as exc:
                raise NcnnRunError(f"ncnn on {self.target} failed: {exc}") from None
            out = {n: np.array(feeds[n], dtype=np.float32, copy=True) for n in names if n in feeds}
            out.update(got)
            return {n: out[n] for n in names}
        ncnn = ncnn_module()
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
        if isinstance(net, RemoteNet):
            return self.run_layers(net, [(layer_inputs, list(outputs))])[0]
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

    def run_layers(self, net, jobs: Sequence[tuple[Mapping[str, np.ndarray], Sequence[str]]]
                   ) -> list[dict[str, np.ndarray] | None]:
        """Many single-layer runs ``(inputs, outputs)``; on a worker target one load per worker serves them
        all and the jobs are dealt round-robin to :attr:`workers` workers running in parallel."""
        if not isinstance(net, RemoteNet):
            return [self.run_layer(net, feeds, outs) for feeds, outs in jobs]
        results: list[dict[str, np.ndarray] | None] = [None] * len(jobs)
        errors: list[BaseException] = []
        n = min(self.workers, max(1, len(jobs)))

        def work(k: int) -> None:
            crashes = 0
            for i in range(k, len(jobs), n):
                feeds, outs = jobs[i]
                try:
                    results[i] = self._remote_run(net, feeds, list(outs), k)
                except RuntimeBridgeError as exc:
                    # ncnn refused this layer alone (a shape it cannot take), or the worker died on it
                    # (it restarts on the next request); a worker that keeps dying stops the comparison
                    results[i] = None
                    if str(exc).startswith("ncnn worker ("):
                        crashes += 1
                        if crashes > MAX_WORKER_CRASHES:
                            errors.append(exc)
                            return

        for k in range(n):  # start the sessions here, one after the other (provisioning is not parallel)
            self.session(k)
        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise NcnnRunError(f"isolated runs on {self.target}: {errors[0]}")
        return results


class NcnnpassRejected(NcnnRunError):
    """ncnn rejected the model text."""


def _mat(ncnn, arr: np.ndarray):
    a = np.ascontiguousarray(arr, dtype=np.float32)
    if a.ndim > 4:
        raise NcnnRunError(f"cannot feed a {a.ndim}-D tensor to ncnn (at most c,d,h,w)")
    return ncnn.Mat(a).clone()
