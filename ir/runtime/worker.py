"""The ncnn-calling core, used in-process and as a standalone worker process.

This file imports nothing from ncnnpass (only ``ncnn``, ``numpy`` and the standard library), so it also runs
as a script under an emulated aarch64 Python that has just the ncnn wheel and Debian's numpy:
``python3 worker.py`` serves requests on stdin/stdout until stdin closes.

Wire format (both directions): an 8-byte little-endian header length, a JSON header, then the raw bytes
of the arrays/blobs the header lists in ``"arrays"`` (name, dtype, shape, nbytes), in order. No pickle:
the two sides may run different numpy majors.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from collections import OrderedDict

import numpy as np


class NcnnCallError(Exception):
    """ncnn refused something (a one-line reason); the caller wraps it in its own exception."""


def make_option(ncnn, fields: dict, num_threads: int | None = None):
    """An ``ncnn.Option`` with ``fields`` set (unknown fields are an error)."""
    opt = ncnn.Option()
    for k, v in fields.items():
        if not hasattr(opt, k):
            raise NcnnCallError(f"ncnn.Option has no field {k!r}")
        setattr(opt, k, v)
    if num_threads is not None:
        opt.num_threads = int(num_threads)
    return opt


def load_net(ncnn, param_text: str, bin_bytes: bytes, fields: dict, num_threads: int | None = None):
    """An ``ncnn.Net`` with options set before loading (ncnn requires that order).

    With ``use_vulkan_compute`` a missing Vulkan device is an error (ncnn would fall back to the CPU)."""
    if fields.get("use_vulkan_compute") and ncnn.get_gpu_count() < 1:
        raise NcnnCallError("ncnn finds no Vulkan device (Mesa's lavapipe: Debian packages mesa-vulkan-drivers "
                            "libvulkan1; VK_ICD_FILENAMES must name its manifest)")
    net = ncnn.Net()
    net.opt = make_option(ncnn, fields, num_threads)
    if net.load_param_mem(param_text) != 0:
        raise NcnnCallError("ncnn rejected the .param text (see ncnn's log above)")
    if bin_bytes:
        net.load_model_mem(bin_bytes)
    else:
        net.load_model(ncnn.DataReaderFromEmpty())
    return net


def cpu_layers(net) -> list[list[str]]:
    """[name, type] of the layers a Vulkan net runs on the CPU: ncnn found no Vulkan implementation for the
    type or its params, or featmask bit 4 (``31=16``) sent it there (``Layer.support_vulkan`` is then false)."""
    return [[ly.name, ly.type] for ly in net.layers() if not ly.support_vulkan]


def output_names(net, outputs, graph_outputs: list[str]) -> list[str]:
    """Resolve ``outputs``: None (the graph's outputs), ``"all"`` produced blobs, a name or a list."""
    if outputs == "all":
        return [b.name for b in net.blobs() if b.name and b.producer != -1]
    if outputs is None:
        return list(graph_outputs)
    return [outputs] if isinstance(outputs, str) else list(outputs)


def run_net(ncnn, net, inputs: dict, names: list[str], light_mode: bool | None = None, pools: list = ()) -> dict:
    """Feed ``inputs`` (name -> array) and extract ``names``; returns name -> float32/int32 array.

    ``pools``: [blob, workspace] ``ncnn.PoolAllocator`` for this run instead of the net's own (the worker's)."""
    extract_all = light_mode is False or len(names) > 1
    with net.create_extractor() as ex:
        if pools:  # indexed, not unpacked: a traceback keeping this frame must not keep the allocators
            ex.set_blob_allocator(pools[0])
            ex.set_workspace_allocator(pools[1])
        if light_mode is not None or extract_all:
            ex.set_light_mode(bool(light_mode) if light_mode is not None else False)
        for name, arr in inputs.items():
            # int32 stays int32 (ncnn reads int bits: Embed token ids, Dequantize/Requantize input);
            # everything else becomes float32
            arr = np.asarray(arr)
            a = np.ascontiguousarray(arr, dtype=np.int32 if arr.dtype == np.int32 else np.float32)
            if a.ndim == 4 and a.shape[0] == 1:
                a = a[0]
            # cloned: a non-owning Mat fed to an in-place first layer crashes ncnn in light mode
            if ex.input(name, ncnn.Mat(a).clone()) != 0:
                raise NcnnCallError(f"ncnn refused input blob {name!r}")
        result = {}
        for name in names:
            ret, mat = ex.extract(name)
            if ret != 0:
                raise NcnnCallError(f"ncnn could not extract blob {name!r} (error {ret})")
            if min(mat.w, mat.h, mat.d, mat.c) < 0:  # e.g. Reshape 0=-5: ncnn returns 0 and a bogus Mat
                raise NcnnCallError(f"ncnn gave blob {name!r} the invalid shape w={mat.w} h={mat.h} "
                                    f"d={mat.d} c={mat.c} (a layer param out of range?)")
            result[name] = np.array(mat, copy=True)
    return result


# ----------------------------------------------------------------------------------------------- wire


def write_message(stream, header: dict, arrays: list[tuple[str, np.ndarray | bytes]] = ()) -> None:
    """Send ``header`` plus named arrays (or raw bytes) on a binary stream."""
    meta, payloads = [], []
    for name, a in arrays:
        if isinstance(a, (bytes, bytearray)):
            meta.append({"name": name, "dtype": "bytes", "shape": [len(a)], "nbytes": len(a)})
            payloads.append(bytes(a))
        else:
            a = np.ascontiguousarray(a)
            meta.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "nbytes": a.nbytes})
            payloads.append(a.tobytes())
    head = json.dumps(dict(header, arrays=meta)).encode()
    stream.write(struct.pack("<Q", len(head)) + head)
    for p in payloads:
        stream.write(p)
    stream.flush()


def read_exact(stream, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        c = stream.read(n - got)
        if not c:
            raise EOFError("stream closed")
        chunks.append(c)
        got += len(c)
    return b"".join(chunks)


def read_message(stream, read=read_exact) -> tuple[dict, dict]:
    """Receive one message: (header, name -> array or bytes)."""
    (n,) = struct.unpack("<Q", read(stream, 8))
    header = json.loads(read(stream, n).decode())
    arrays = {}
    for m in header.pop("arrays", []):
        raw = read(stream, int(m["nbytes"]))
        if m["dtype"] == "bytes":
            arrays[m["name"]] = raw
        else:
            arrays[m["name"]] = np.frombuffer(raw, dtype=np.dtype(m["dtype"])).reshape(m["shape"]).copy()
    return header, arrays


# --------------------------------------------------------------------------------------------- server

MAX_CACHED_NETS = 4

_NULL_REPORT = (b"FATAL ERROR! pool allocator destroyed too early\n", b"(nil) still in use\n")


def _release_pools(pools: list) -> None:
    """Destroy a run's pools (``pools`` emptied). ncnn reports each buffer not given back on stderr ("pool
    allocator destroyed too early", "<address> still in use"), which the client takes for memory corruption: a
    layer wrote past a blob over the refcount ncnn keeps after its data (seen: a Concat of inputs of different
    widths, from Reshapes sized for another input width). A report of null pointers only is dropped: a failed
    allocation leaves one in the pool's list (the run already failed with -100)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            pools.clear()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    rest = text
    for line in _NULL_REPORT:
        rest = rest.replace(line, b"")
    if rest:
        os.write(2, text)


def _keep_freed_memory() -> None:
    """glibc: no trimming, no mmap below 32 MiB, so the memory of each run's pools stays in the process
    (returning it to the OS after every run made PP-OCRv3 det at 640x640 ~20% slower)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    except (ImportError, OSError, AttributeError):
        pass


def _handle(ncnn, nets: OrderedDict, header: dict, arrays: dict) -> tuple[dict, list]:
    op = header.get("op")
    if op == "ping":
        return {"ok": True, "ncnn": getattr(ncnn, "__version__", "?")}, []
    if op == "load":
        key = header["key"]
        fields = header.get("fields", {})
        if key not in nets:
            net = load_net(ncnn, arrays["param"].decode(), arrays.get("bin", b""), fields, header.get("num_threads"))
            nets[key] = (net, header.get("graph_outputs", []))
            while len(nets) > MAX_CACHED_NETS:
                _, (old, _) = nets.popitem(last=False)
                old.clear()  # its own pools are empty: every run brings and destroys its own (``run``)
        nets.move_to_end(key)
        reply = {"ok": True}
        if fields.get("use_vulkan_compute"):
            reply["cpu_layers"] = cpu_layers(nets[key][0])
        return reply, []
    if op == "run":
        entry = nets.get(header["key"])
        if entry is None:  # evicted: the client loads it again
            return {"ok": False, "error": "the worker has no such net loaded", "not_loaded": True}, []
        nets.move_to_end(header["key"])
        net, graph_outputs = entry
        names = output_names(net, header.get("outputs"), graph_outputs)
        # pools for this run only, destroyed before the reply: a buffer a run does not give back is reported in
        # that run's request, not when the net's pools go on a later eviction (another net's load)
        pools = [ncnn.PoolAllocator(), ncnn.PoolAllocator()]
        try:
            result = run_net(ncnn, net, arrays, names, header.get("light_mode"), pools)
        finally:
            _release_pools(pools)
        return {"ok": True, "names": names}, list(result.items())
    raise NcnnCallError(f"unknown worker request {op!r}")


def serve(stdin, stdout) -> None:
    """Answer requests until stdin closes. A Python-level error becomes ``{"ok": false, "error": ...}``."""
    import ncnn

    _keep_freed_memory()
    nets: OrderedDict = OrderedDict()
    gpu = False
    while True:
        try:
            header, arrays = read_message(stdin)
        except EOFError:
            break
        gpu = gpu or bool(header.get("op") == "load" and header.get("fields", {}).get("use_vulkan_compute"))
        try:
            reply, out = _handle(ncnn, nets, header, arrays)
        except NcnnCallError as exc:
            reply, out = {"ok": False, "error": str(exc)}, []
        except Exception as exc:  # noqa: BLE001 - reported to the client, the worker stays up
            reply, out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, []
        write_message(stdout, reply, out)
    # release the nets before the Vulkan instance (a live pipeline at exit can crash the driver)
    for net, _ in nets.values():
        net.clear()
    nets.clear()
    if gpu and hasattr(ncnn, "destroy_gpu_instance"):
        ncnn.destroy_gpu_instance()


def main() -> None:
    import os
    import resource

    # a crashing ncnn must not litter core files (qemu-user honours the limit its guest sets)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # keep the protocol stream private: anything ncnn or numpy prints to fd 1 goes to stderr instead

    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, proto_out)


if __name__ == "__main__":
    import os

    # this file's folder holds ncnnpass modules that must not shadow anything (PYTHONSAFEPATH=1 also avoids it)
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == here:
        sys.path.pop(0)
    main()
