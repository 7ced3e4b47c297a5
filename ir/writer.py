"""Write a :class:`Graph` as ncnn ``.param`` text and ``.bin`` weights (atomically)."""

from __future__ import annotations

import os
import re

from .errors import GraphError, NcnnpassError
from .fileio import atomic_files, fault_point, refuse_overwrite
from .graph import Graph, Layer
from .parser import MAGIC
from .splits import plan_splits


def _line(type: str, name: str, inputs, outputs, params: list[str]) -> str:
    head = f"{type:<24} {name:<24} {len(inputs)} {len(outputs)}"
    rest = " ".join((*inputs, *outputs, *params))
    return f"{head} {rest}" if rest else head


def write_order(g: Graph) -> list[Layer]:
    """``g.layers`` when every layer comes after the producers of its inputs, else a stable topological
    order (without changing the graph): an edit that appends a producer after its consumer must not
    give a file that ncnn reads with an empty blob. The .param and the .bin use the same order."""
    produced: set[str] = set()
    blobs = g.blobs
    for ly in g.layers:
        for n in ly.inputs:
            if n not in produced and blobs[n].producer is not None:
                return g.topo_order()
        produced.update(ly.outputs)
    return g.layers


def param_lines(g: Graph) -> list[str]:
    """Layer lines in order, with Split layers regenerated after each multi-consumer producer."""
    planned, rename = plan_splits(g)
    after: dict[int, list] = {}
    leading = []
    for sp in planned:
        if sp.after is None:
            leading.append(sp)
        else:
            after.setdefault(id(sp.after), []).append(sp)
    lines = []
    blobs: set[str] = set()

    def emit_split(sp) -> None:
        lines.append(_line("Split", sp.name, [sp.blob], sp.tops, sp.params))
        blobs.update(sp.tops)

    for sp in leading:
        emit_split(sp)
    readers = {key[0] for key in rename}  # id() of the layers reading a Split top
    for ly in write_order(g):
        ins = ly.inputs
        if id(ly) in readers:
            ins = [rename.get((id(ly), i), n) for i, n in enumerate(ins)]
        lines.append(_line(ly.type, ly.name, ins, ly.outputs, ly.params.tokens()))
        blobs.update(ly.inputs, ly.outputs)
        if id(ly) in after:
            for sp in after[id(ly)]:
                emit_split(sp)
    return [str(MAGIC), f"{len(lines)} {len(blobs)}", *lines]


_NCNN_WS = re.compile(r"[ \t\n\v\f\r]")  # C isspace(): what ends a name for ncnn


def param_text(g: Graph) -> str:
    names = [n for ly in g.layers for n in (ly.type, ly.name, *ly.inputs, *ly.outputs)]
    if not all(names) or _NCNN_WS.search("".join(names)):  # one scan; find the culprit only on failure
        for ly in g.layers:
            if any(not n or _NCNN_WS.search(n) for n in (ly.type, ly.name, *ly.inputs, *ly.outputs)):
                raise GraphError(f"layer {ly.name!r}: names must be non-empty and contain no whitespace")
    return "\n".join(param_lines(g)) + "\n"


def _weighted(g: Graph) -> list[Layer]:
    return [ly for ly in g.layers if ly.weights]


def check_weights_present(g: Graph) -> None:
    for ly in g.layers:
        ly.check_weights()


def write_bin(g: Graph, fh) -> int:
    """Stream every layer's weights in order; returns the byte count."""
    check_weights_present(g)
    n = 0
    for ly in write_order(g):
        for w in ly.weights.values():
            data = w.file_bytes()
            fh.write(data)
            n += len(data)
    return n


def bin_bytes(g: Graph) -> bytes:
    import io

    buf = io.BytesIO()
    write_bin(g, buf)
    return buf.getvalue()


def save_graph(g: Graph, param: str, bin: str | None = None, *, overwrite: bool = False) -> None:
    """Write ``param`` (and ``bin``) atomically, never over the loaded files unless ``overwrite``."""
    param = os.fspath(param)
    sources = [s for s in g.source if s]
    refuse_overwrite(param, sources, overwrite)
    if bin is not None:
        bin = os.fspath(bin)
        refuse_overwrite(bin, sources, overwrite)
        if os.path.abspath(bin) == os.path.abspath(param):
            raise NcnnpassError("the .param and .bin outputs must be different files")
    data = param_text(g).encode("utf-8", "surrogateescape")
    # Both files are complete on disk before either is renamed, and the two renames (the .bin first) are
    # one step against SIGINT and SIGTERM (fileio.rename_together): an interrupted save leaves the previous
    # pair or the new one. Only SIGKILL or a power cut between the renames can pair a new .bin with the
    # previous .param.
    targets = [param] if bin is None else [bin, param]
    with atomic_files(targets, "wb") as files:
        fp = files[-1]
        fp.write(data)
        fault_point("param-written", targets, fp)
        if bin is not None:
            write_bin(g, files[0])
            fault_point("bin-written", targets, files[0])
