"""Where ncnn runs: execution targets of the run bridge.

- ``x86``: the installed ncnn, in this process (fast; a crash in ncnn kills the caller).
- ``isolated``: the same ncnn in a worker subprocess; a crash, abort or hang becomes a one-line
  :class:`RuntimeBridgeError` and the worker restarts on next use.
- ``arm`` (= ``arm-a76``) / ``arm-a57``: the aarch64 ncnn wheel of the same version in a worker run under
  qemu-user as a Cortex-A76 (fp16 arithmetic + storage, like phones since 2018) or a Cortex-A57 (no
  asimdhp, older phones). Provisioned on first use (:mod:`ncnnpass.ir.runtime.arm_env`).
- ``vulkan``: the same ncnn's Vulkan path (``use_vulkan_compute``) in a worker, on Mesa's lavapipe (a Vulkan
  device on the CPU that supports fp16 packed/storage/uniform/arithmetic, as phone GPUs do). Layers ncnn
  cannot run on the GPU (no Vulkan implementation, or featmask bit 4) run on the CPU and are reported
  (:meth:`VulkanTarget.cpu_layers`). Provisioned on first use (:mod:`ncnnpass.ir.runtime.vulkan_env`).

>>> with open_target("arm") as t:
...     outs = t.run(graph, {"in0": x}, options="default")
...     many = t.run_many(graph, [feeds0, feeds1], outputs="all")
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import hashlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RuntimeBridgeError
from ..graph import Graph
from . import worker as wire

#: Target names; ``arm`` is ``arm-a76``.
TARGETS = ("x86", "isolated", "arm", "arm-a76", "arm-a57", "vulkan")
ARM_CPUS = {"arm": "cortex-a76", "arm-a76": "cortex-a76", "arm-a57": "cortex-a57"}
#: Seconds a worker may take for one request (an emulated fp16 PP-OCR rec inference takes ~13 s).
DEFAULT_TIMEOUT = {"isolated": 600.0, "arm": 3600.0, "vulkan": 900.0}
STARTUP_TIMEOUT = 300.0

Inputs = Mapping[str, np.ndarray] | np.ndarray
Options = str | Mapping[str, object] | None


_DEFAULT: contextvars.ContextVar[str] = contextvars.ContextVar("ncnnpass_default_target", default="x86")


def get_default_target() -> str:
    """The target used where none is given (``x86`` for the library; the CLI sets its ``--target``)."""
    return _DEFAULT.get()


def set_default_target(name: str | None) -> None:
    """Make ``name`` the target of every run that names none (shape inference included)."""
    _DEFAULT.set(normalize_target(name or "x86"))


@contextlib.contextmanager
def default_target(name: str | None) -> Iterator[str]:
    """``with default_target("isolated"): ...`` - :func:`set_default_target` for a block."""
    token = _DEFAULT.set(normalize_target(name or "x86"))
    try:
        yield token.var.get()
    finally:
        _DEFAULT.reset(token)


def normalize_target(name: str | None) -> str:
    """The canonical target name (``None`` -> the default target, ``arm-a76`` -> ``arm``); unknown names raise."""
    name = (name or get_default_target()).strip().lower()
    if name not in TARGETS:
        raise RuntimeBridgeError(f"unknown ncnn target {name!r} (one of {', '.join(TARGETS)})")
    return "arm" if name == "arm-a76" else name


def describe_target(name: str) -> str:
    """A short human label: ``x86``, ``x86 (isolated worker)``, ``arm cortex-a76 (emulated)``."""
    name = normalize_target(name)
    if name in ARM_CPUS:
        return f"{name} {ARM_CPUS[name]} (emulated)"
    if name == "vulkan":
        return "vulkan (lavapipe)"
    return "x86 (isolated worker)" if name == "isolated" else "x86"


def _feeds(graph: Graph, inputs: Inputs) -> dict[str, np.ndarray]:
    if isinstance(inputs, np.ndarray):
        if len(graph.inputs) != 1:
            raise RuntimeBridgeError(f"the model has inputs {graph.inputs}; pass a dict")
        return {graph.inputs[0]: inputs}
    return dict(inputs)


class Target:
    """A place to run ncnn; use as a context manager to release workers."""

    name = "x86"

    def run(self, graph: Graph, inputs: Inputs, outputs: Iterable[str] | str | None = None,
            options: Options = None, num_threads: int | None = None,
            light_mode: bool | None = None) -> dict[str, np.ndarray]:
        """Run once: ``outputs`` = None (protected outputs), a name, a list, or ``"all"`` blobs."""
        return self.run_many(graph, [inputs], outputs, options, num_threads, light_mode)[0]

    def run_many(self, graph: Graph, inputs: Sequence[Inputs], outputs: Iterable[str] | str | None = None,
                 options: Options = None, num_threads: int | None = None,
                 light_mode: bool | None = None) -> list[dict[str, np.ndarray]]:
        """Load ``graph`` once and run each of ``inputs``; one result dict per input."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (workers); the target can still be used afterwards (it restarts)."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessTarget(Target):
    """ncnn in this process (target ``x86``)."""

    def run_many(self, graph, inputs, outputs=None, options=None, num_threads=None, light_mode=None):
        from .bridge import load

        net = load(graph, options, num_threads)
        return [net.run(x, outputs, light_mode) for x in inputs]


def _one_line(text: str, limit: int = 400) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out = " | ".join(lines[-4:])
    return out if len(out) <= limit else "..." + out[-limit:]


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class _NotLoaded(RuntimeBridgeError):
    """The worker dropped a net from its cache (internal: the client loads it again)."""


class WorkerTarget(Target):
    """ncnn in a long-lived subprocess speaking the :mod:`ncnnpass.ir.runtime.worker` protocol.

    ``launcher`` returns the argv and environment of the worker (called on each (re)start, so a
    provisioning step can run lazily). Nets are cached in the worker by content hash."""

    def __init__(self, name: str, launcher: Callable[[], tuple[list[str], dict[str, str]]],
                 timeout: float | None = None, label: str | None = None):
        self.name = name
        self.label = label or name
        self.timeout = timeout
        self._launcher = launcher
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._loaded: set[str] = set()
        self._lock = threading.RLock()
        #: ncnn.Option fields this target always sets (the Vulkan target: ``use_vulkan_compute``).
        self.fixed_fields: dict[str, object] = {}
        #: the worker's reply to loading each net (by content key), e.g. its ``cpu_layers`` on Vulkan.
        self.load_replies: dict[str, dict] = {}
        self.startup_seconds: float | None = None

    # -- process management
    def _start(self) -> None:
        argv, env = self._launcher()
        self._stderr = tempfile.TemporaryFile()
        t0 = time.perf_counter()
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=self._stderr, env=env, cwd=tempfile.gettempdir())
        except OSError as exc:
            raise RuntimeBridgeError(f"cannot start the ncnn worker ({self.label}): {exc}") from None
        self._loaded.clear()
        self._request({"op": "ping"}, [], STARTUP_TIMEOUT)
        self.startup_seconds = time.perf_counter() - t0

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            self._loaded.clear()
            if proc is not None:
                try:
                    proc.stdin.close()
                    proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None

    def _stderr_text(self, since: int = 0) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(since)
        return self._stderr.read().decode(errors="replace")

    def _fail(self, what: str, since: int = 0) -> RuntimeBridgeError:
        """Kill the worker and describe why it is gone (exit reason + stderr tail) in one line."""
        proc = self._proc
        code = None
        if proc is not None:
            try:  # a dying worker may still be writing its last words
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        err = _one_line(self._stderr_text(since))
        msg = f"ncnn worker ({self.label}) {what} ({_exit_reason(code)})"
        if err:
            msg += f"; stderr: {err}"
        self._proc = None
        self._loaded.clear()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        return RuntimeBridgeError(msg)

    def _request(self, header: dict, arrays: list, timeout: float | None) -> tuple[dict, dict]:
        proc = self._proc
        assert proc is not None
        self._stderr.seek(0, os.SEEK_END)
        since = self._stderr.tell()
        try:
            wire.write_message(proc.stdin, header, arrays)
        except (BrokenPipeError, OSError):
            raise self._fail("crashed", since) from None
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)

        def read(_stream, n: int) -> bytes:
            buf = bytearray()
            while len(buf) < n:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                if not sel.select(left):
                    raise TimeoutError
                chunk = os.read(fd, min(n - len(buf), 1 << 22))
                if not chunk:
                    raise EOFError
                buf += chunk
            return bytes(buf)

        try:
            reply, out = wire.read_message(proc.stdout, read)
        except EOFError:
            raise self._fail("crashed", since) from None
        except TimeoutError:
            raise self._fail(f"timed out after {timeout:.0f}s and was stopped", since) from None
        finally:
            sel.close()
        # ncnn reports some heap corruption without dying ("FATAL ERROR! pool allocator get wild"):
        # the process is no longer trustworthy
        err = self._stderr_text(since)
        if "FATAL ERROR" in err or "corrupted" in err or "double free" in err:
            raise self._fail("reported memory corruption", since)
        if not reply.get("ok"):
            cls = _NotLoaded if reply.get("not_loaded") else RuntimeBridgeError
            raise cls(f"ncnn ({self.label}): {reply.get('error', 'unknown error')}")
        return reply, out

    def _net_key(self, graph: Graph, options: Options, num_threads: int | None) -> tuple[str, dict, bytes, bytes]:
        from .options import option_fields

        fields = {**option_fields(options), **self.fixed_fields}
        param = graph.to_param_text().encode()
        data = graph.to_bin_bytes() or b""
        key = hashlib.sha256(param + b"\0" + data + json.dumps([fields, num_threads], sort_keys=True,
                                                               default=str).encode()).hexdigest()
        return key, fields, param, data

    # -- API
    def ensure_started(self) -> float:
        """Start the worker now (it starts lazily otherwise); returns its startup time in seconds. A worker
        that died since its last request is reported once (an error, whenever it died) and restarts on the
        next use."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                raise self._fail("crashed")
            if self._proc is None:
                self._start()
            return self.startup_seconds or 0.0

    def run_many(self, graph, inputs, outputs=None, options=None, num_threads=None, light_mode=None):
        key, fields, param, data = self._net_key(graph, options, num_threads)
        default_timeout = DEFAULT_TIMEOUT["arm" if self.name in ARM_CPUS else self.name
                                          if self.name in DEFAULT_TIMEOUT else "isolated"]
        timeout = self.timeout if self.timeout is not None else default_timeout
        results = []
        def load() -> None:
            reply, _ = self._request({"op": "load", "key": key, "fields": fields, "num_threads": num_threads,
                                      "graph_outputs": list(graph.outputs)}, [("param", param), ("bin", data)],
                                     timeout)
            self._loaded.add(key)
            self.load_replies[key] = reply

        with self._lock:
            self.ensure_started()
            if key not in self._loaded:
                load()
            for x in inputs:
                feeds = _feeds(graph, x)
                sent = []
                for k, v in feeds.items():
                    a = np.asarray(v)
                    sent.append((k, np.ascontiguousarray(a, dtype=np.int32 if a.dtype == np.int32 else np.float32)))
                out_spec = outputs if outputs is None or isinstance(outputs, str) else list(outputs)
                request = {"op": "run", "key": key, "outputs": out_spec, "light_mode": light_mode}
                try:
                    reply, arrays = self._request(request, sent, timeout)
                except _NotLoaded:  # the worker keeps a few nets only
                    load()
                    reply, arrays = self._request(request, sent, timeout)
                results.append({n: arrays[n] for n in reply["names"]})
        return results


class VulkanTarget(WorkerTarget):
    """ncnn's Vulkan path on lavapipe in a worker (target ``vulkan``): every net loads with
    ``use_vulkan_compute``; a missing device is a one-line error, a driver crash a :class:`RuntimeBridgeError`."""

    def __init__(self, launcher: Callable[[], tuple[list[str], dict[str, str]]], timeout: float | None = None,
                 progress: Callable[[str], None] | None = None):
        super().__init__("vulkan", launcher, timeout, describe_target("vulkan"))
        self.fixed_fields = {"use_vulkan_compute": True}
        self._progress = progress
        self._reported: set = set()  # net keys, and the fallback lists said

    def run_many(self, graph, inputs, outputs=None, options=None, num_threads=None, light_mode=None):
        results = super().run_many(graph, inputs, outputs, options, num_threads, light_mode)
        key = self._net_key(graph, options, num_threads)[0]
        if self._progress is not None and key not in self._reported and key in self.load_replies:
            self._reported.add(key)
            fallback = [f"{t} {n}" for n, t in self._fallback(graph, key)]
            if fallback and tuple(fallback) not in self._reported:  # once per session for the same layers
                self._reported.add(tuple(fallback))
                self._progress(f"vulkan: {len(fallback)} layer(s) have no Vulkan implementation and run on the CPU: "
                               + ", ".join(fallback[:8]) + (" ..." if len(fallback) > 8 else ""))
        return results

    def _fallback(self, graph: Graph, key: str) -> list[tuple[str, str]]:
        off_gpu = layers_off_gpu(graph.to_param_text())
        return [(n, t) for n, t in self.load_replies[key].get("cpu_layers", []) if t != "Input" and n not in off_gpu]

    def fallback_layers(self, graph: Graph, options: Options = None, num_threads: int | None = None
                        ) -> list[tuple[str, str]]:
        """(name, type) of the layers ncnn runs on the CPU because it has no Vulkan implementation for their type
        or params (:meth:`cpu_layers` without those sent there by featmask bit 4)."""
        self.cpu_layers(graph, options, num_threads)
        return self._fallback(graph, self._net_key(graph, options, num_threads)[0])

    def _request(self, header: dict, arrays: list, timeout: float | None) -> tuple[dict, dict]:
        # ncnn logs a shader that does not compile and goes on (the net then crashes or returns garbage):
        # e.g. featmask 31=2 on a GPU layer (fp32 storage with fp16 arithmetic/uniform still on)
        since = 0
        if self._stderr is not None:
            self._stderr.seek(0, os.SEEK_END)
            since = self._stderr.tell()
        reply, out = super()._request(header, arrays, timeout)
        err = self._stderr_text(since)
        if "compile spir-v module failed" in err:
            first = next((ln.strip() for ln in err.splitlines() if ln.strip().startswith("ERROR:")), "")
            self.close()
            raise RuntimeBridgeError(f"ncnn ({self.label}) could not compile a Vulkan shader"
                                     + (f": {first[:200]}" if first else "")
                                     + " (a featmask with bit 1 but not bit 0 on a GPU layer? give it 31=16 too)")
        return reply, out

    def cpu_layers(self, graph: Graph, options: Options = None, num_threads: int | None = None) -> list[tuple[str, str]]:
        """(name, type) of the layers of ``graph`` that ncnn runs on the CPU under ``options``: types or params
        with no Vulkan implementation, and layers with featmask bit 4 (``31=16``). Loads the net if needed."""
        key = self._net_key(graph, options, num_threads)[0]
        if key not in self._loaded or key not in self.load_replies:
            self.run_many(graph, [], None, options, num_threads)  # loads it, runs nothing
        return [(n, t) for n, t in self.load_replies[key].get("cpu_layers", []) if t != "Input"]


def layers_off_gpu(param_text: str) -> set[str]:
    """Names of the layers whose featmask (``31=``) has bit 4 (on the CPU under Vulkan), read from ``.param`` text
    (any object that serializes to a .param can be run, so this does not need a :class:`Graph`)."""
    names = set()
    for line in param_text.splitlines()[2:]:
        tokens = line.split()
        mask = next((t[3:] for t in tokens[4:] if t.startswith("31=")), None)
        if len(tokens) > 1 and mask is not None:
            try:
                if int(mask, 0) & 16:
                    names.add(tokens[1])
            except ValueError:
                continue
    return names


def _isolated_launcher() -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONSAFEPATH="1")
    return [sys.executable, "-u", str(Path(wire.__file__).resolve())], env


def _arm_launcher(cpu: str, progress: Callable[[str], None] | None) -> Callable[[], tuple[list[str], dict[str, str]]]:
    def launch() -> tuple[list[str], dict[str, str]]:
        from .arm_env import ensure_arm_runtime

        rt = ensure_arm_runtime(progress=progress)
        return rt.worker_command(cpu, Path(wire.__file__).resolve())
    return launch


def _vulkan_launcher(progress: Callable[[str], None] | None) -> Callable[[], tuple[list[str], dict[str, str]]]:
    def launch() -> tuple[list[str], dict[str, str]]:
        from ncnnpass.ir.runtime.vulkan_env import ensure_vulkan_runtime

        rt = ensure_vulkan_runtime(progress=progress)
        return rt.worker_command(Path(wire.__file__).resolve())
    return launch


def _stderr_progress(msg: str) -> None:
    print(f"ncnnpass: {msg}", file=sys.stderr, flush=True)


def open_target(name: str | None = "x86", *, timeout: float | None = None,
                progress: Callable[[str], None] | None = _stderr_progress) -> Target:
    """A new session on target ``name`` (see the module docstring); close it (or use ``with``) when done.

    ``timeout`` bounds one worker request in seconds; ``progress`` receives provisioning messages (ARM, Vulkan)."""
    name = normalize_target(name)
    if name == "x86":
        return InProcessTarget()
    if name == "isolated":
        return WorkerTarget("isolated", _isolated_launcher, timeout, describe_target(name))
    if name == "vulkan":
        return VulkanTarget(_vulkan_launcher(progress), timeout, progress)
    return WorkerTarget(name, _arm_launcher(ARM_CPUS[name], progress), timeout, describe_target(name))


@dataclass
class Job:
    """One net run on one or more input samples (one result dict per sample), for :meth:`TargetPool.run`."""

    graph: Graph
    samples: Sequence[Inputs]
    outputs: Iterable[str] | str | None = None  # None: the graph's outputs; a list; "all" blobs
    options: Options = "default"
    num_threads: int | None = 1
    light_mode: bool | None = False


@dataclass
class JobResult:
    """The outputs of a :class:`Job` per sample, or the one-line error of a crash or ncnn failure."""

    outputs: list[dict[str, np.ndarray]]
    error: RuntimeBridgeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class TargetPool:
    """``workers`` sessions on one target running jobs in parallel (emulated ARM runs take seconds each); the
    one pool of ncnnpass. It counts the jobs it ran (:attr:`runs`) and the wall time they took (:attr:`seconds`).

    >>> with TargetPool("arm", workers=2) as pool:
    ...     results = pool.run([Job(g1, [x]), Job(g2, [x, x2], options="fp32")])
    A job that crashes ncnn comes back with ``error`` set (``errors="return"``, the default) or raises
    (``errors="raise"``); its worker restarts for the next job."""

    def __init__(self, name: str | None, workers: int = 2, *, timeout: float | None = None,
                 progress: Callable[[str], None] | None = _stderr_progress):
        self.name = normalize_target(name)
        self.workers = max(1, workers)
        self.sessions = [open_target(self.name, timeout=timeout, progress=progress) for _ in range(self.workers)]
        self.runs = 0
        self.seconds = 0.0

    def run(self, jobs: Sequence[Job], progress: Callable[[str], None] | None = None, *,
            errors: str = "return") -> list[JobResult]:
        """Run every job (results in job order); ``progress`` hears one line per batch."""
        jobs = list(jobs)
        if not jobs:
            return []
        start = time.perf_counter()

        def one(t: Target, job: Job) -> JobResult:
            try:
                return JobResult(t.run_many(job.graph, list(job.samples), job.outputs, job.options, job.num_threads,
                                            job.light_mode))
            except RuntimeBridgeError as exc:
                if errors == "raise":
                    raise
                return JobResult([], exc)

        results = self.spread(jobs, one)
        took = time.perf_counter() - start
        self.seconds += took
        self.runs += len(jobs)
        if progress:
            progress(f"{len(jobs)} job(s) on {self.name} in {took:.1f} s")
        return results

    def spread(self, jobs: Sequence[Any], call: Callable[[Target, Any], Any]) -> list[Any]:
        """``call(session, job)`` for every job, each on a free session, in parallel; results in job order."""
        import queue
        from concurrent.futures import ThreadPoolExecutor

        free: queue.Queue[Target] = queue.Queue()
        for t in self.sessions:
            free.put(t)

        def one(job: Any) -> Any:
            t = free.get()
            try:
                return call(t, job)
            finally:
                free.put(t)

        with ThreadPoolExecutor(len(self.sessions)) as ex:
            return list(ex.map(one, jobs))

    def close(self) -> None:
        for t in self.sessions:
            t.close()

    def __enter__(self) -> TargetPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def using_target(target: str | Target | None) -> Iterator[Target]:
    """Yield ``target`` if it is a session, else the process-wide warm session of that name (both stay open)."""
    yield target if isinstance(target, Target) else shared_target(target)


_SHARED: dict[str, Target] = {}
_SHARED_LOCK = threading.Lock()


def shared_target(name: str | None) -> Target:
    """A process-wide session per target (workers kept warm between calls, closed at exit)."""
    name = normalize_target(name)
    with _SHARED_LOCK:
        t = _SHARED.get(name)
        if t is None:
            t = _SHARED[name] = open_target(name)
        return t


@atexit.register
def close_shared_targets() -> None:
    """Stop the shared workers (runs at interpreter exit)."""
    with _SHARED_LOCK:
        for t in _SHARED.values():
            t.close()
        _SHARED.clear()
