"""Build a :class:`Graph` from parsed ``.param`` records and a memory-mapped ``.bin``."""

from __future__ import annotations

import mmap
import os

from . import schema as _schema
from .acceptance import MAX_BLOB_COUNT, blob_slots
from .errors import ParamSemanticError, WeightError
from .graph import Graph, Layer, Problem
from .params import ARRAY_KEY_BASE, MAX_PARAM_ID, ParamDict
from .parser import MAGIC, RawLayer, RawParam_File, columns_of, gc_paused, parse_param
from .splits import absorb_splits
from .weights import read_weight, weight_slots


def _col(text_lines: list[str], layer: RawLayer, token_index: int) -> int:
    cols = columns_of(text_lines[layer.line - 1])
    return cols[token_index] if token_index < len(cols) else 1


def check_semantics(pf: RawParam_File, text: str, file: str) -> list[Problem]:
    """Raise :class:`ParamSemanticError` for a network ncnn rejects (or loads as something ncnnpass
    cannot represent: two blobs with one name, see docs/guarantees.md); return the oddities ncnn
    accepts as warnings."""

    def col(layer: RawLayer, token_index: int) -> int:  # only on errors: split the text then
        return _col(text.replace("\r\n", "\n").split("\n"), layer, token_index)

    def where(line: int | None) -> str:
        return f"{file}:{line}: " if line is not None else ""

    warnings: list[Problem] = []
    if pf.magic != MAGIC:
        raise ParamSemanticError(f"wrong magic {pf.magic}: an ncnn text .param starts with {MAGIC}",
                                 file, pf.header_lines[0], pf.header_cols[0])
    if pf.layer_count <= 0 or pf.blob_count <= 0:  # ncnn: "invalid layer_count or blob_count"
        bad = 1 if pf.layer_count <= 0 else 2
        raise ParamSemanticError(f"the header's layer and blob counts must be positive, got "
                                 f"{pf.layer_count} {pf.blob_count}", file, pf.header_lines[1], pf.header_cols[bad])
    if pf.layer_count != len(pf.layers):  # (fewer: the parser cut the lines ncnn ignores)
        raise ParamSemanticError(f"header says {pf.layer_count} layers but the file has {len(pf.layers)}",
                                 file, pf.header_lines[1], pf.header_cols[1])
    if pf.blob_count > MAX_BLOB_COUNT:
        raise ParamSemanticError(f"header says {pf.blob_count} blobs; ncnn refuses more than {MAX_BLOB_COUNT}",
                                 file, pf.header_lines[1], pf.header_cols[2])
    if pf.bom:
        warnings.append(Problem("byte-order-mark", f"{file}:1:1: the file starts with a UTF-8 byte-order mark, which "
                                "ncnn refuses (\"parse magic failed\"); ncnnpass skips it and never writes one",
                                severity="warning"))
    if pf.ignored_lines:
        warnings.append(Problem("ignored-lines", f"{where(pf.ignored_from)}{pf.ignored_lines} line(s) after the "
                                f"{pf.layer_count} layers the header announces; ncnn (and ncnnpass) ignore them",
                                severity="warning"))
    produced: dict[str, RawLayer] = {}
    names: dict[str, RawLayer | None] = {}
    free: set[str] = set()
    for ly in pf.layers:
        if ly.name in names:
            first = names[ly.name]
            if first is not None:
                warnings.append(Problem("duplicate-layer-name", f"{where(ly.line)}layer name {ly.name!r} is also "
                                        f"used on line {first.line}", ly.name, "warning"))
                names[ly.name] = None  # once per name
        else:
            names[ly.name] = ly
        for tok in (ly.type, ly.name, *ly.inputs, *ly.outputs):
            # (a name of <= 63 characters has at most 252 bytes in UTF-8)
            if len(tok) > 63 and len(tok.encode("utf-8", "surrogateescape")) > 255:
                raise ParamSemanticError(f"name {tok[:40]!r}... is longer than ncnn's 255-byte limit", file, ly.line)
        for k, b in enumerate(ly.inputs):
            if b not in produced and b not in free:
                p = next((q for q in pf.layers if b in q.outputs), None)
                if p is not None:  # ncnn makes an input blob here and a second blob of that name there
                    raise ParamSemanticError(f"blob {b!r} is used by layer {ly.name!r} before layer {p.name!r} "
                                             f"(line {p.line}) produces it", file, ly.line, col(ly, 4 + k))
                free.add(b)
                warnings.append(Problem("unproduced-blob", f"{where(ly.line)}blob {b!r} used by layer {ly.name!r} "
                                        "is never produced: ncnn treats it as an input", ly.name, "warning"))
        for k, b in enumerate(ly.outputs):
            if b in produced:  # ncnn makes a second blob of that name, reachable by index only
                raise ParamSemanticError(f"blob {b!r} is produced twice: by {produced[b].name!r} "
                                         f"(line {produced[b].line}) and {ly.name!r}",
                                         file, ly.line, col(ly, 4 + len(ly.inputs) + k))
            produced[b] = ly
        for p in ly.params:
            k = p.key
            if k > MAX_PARAM_ID or k < 0 and not ARRAY_KEY_BASE - MAX_PARAM_ID <= k <= ARRAY_KEY_BASE:
                raise ParamSemanticError(f"param id {p.key} is out of range (0..{MAX_PARAM_ID}, or "
                                         f"{ARRAY_KEY_BASE}-id for arrays)", file, ly.line, p.column)
    slots = blob_slots(pf.layers)
    if pf.blob_count < slots:  # ncnn: "too many blobs at layer ..."
        raise ParamSemanticError(f"header says {pf.blob_count} blobs but the layers use {slots}",
                                 file, pf.header_lines[1], pf.header_cols[2])
    if pf.blob_count > slots:
        warnings.append(Problem("blob-count", f"{where(pf.header_lines[1])}header says {pf.blob_count} blobs but the "
                                f"layers use {slots}; ncnn leaves the others empty (ncnnpass writes {slots})",
                                severity="warning"))
    return warnings


def _make_layer(raw: RawLayer) -> Layer:
    values, spelling = {}, {}
    for p in raw.params:
        pid = p.key
        if pid <= ARRAY_KEY_BASE:
            pid = ARRAY_KEY_BASE - pid
        if pid in values:
            del values[pid]  # last one wins, as in ncnn; keep file order otherwise
        values[pid] = p.value
        spelling[pid] = p.text
    params = ParamDict._from_parsed(values, spelling, _schema.float_ids(raw.type))
    return Layer(raw.type, raw.name, raw.inputs, raw.outputs, params, line=raw.line)


def graph_from_records(pf: RawParam_File) -> Graph:
    """The graph of the parsed layers, with the loaded file's facts recorded and its Splits absorbed."""
    g = Graph()
    g.extend_loaded(_make_layer(raw) for raw in pf.layers)
    g.mark_loaded()  # protected outputs: what ncnn itself reports (no consumer), before Split absorption
    absorb_splits(g)
    return g


def load_weights(g: Graph, buf: memoryview, file: str, strict: bool = True) -> None:
    offset = 0
    last = None
    for ly in g.layers:
        slots = weight_slots(ly.type, ly.params, ly.name)
        ws = {}
        for s in slots:
            w, offset = read_weight(buf, offset, s, ly.name, file)
            ws[s.name] = w
            last = ly
        ly.weights = ws
    if strict and offset != len(buf):
        after = f" (of layer {last.name!r}, {last.type})" if last is not None else " (no layer reads weights)"
        raise WeightError(f"{file}: {len(buf) - offset} bytes left over after the last weight{after}; "
                          f"read {offset} of {len(buf)} bytes: the .bin does not belong to this .param")


_GRAPH_WARNING_KINDS = {"duplicate-layer-name", "unproduced-blob"}  # Graph.warnings() finds these on the graph


def graph_from_text(text: str, bin_data=None, *, file: str = "<string>", bin_file: str = "<bin>",
                    strict_bin: bool = True) -> Graph:
    with gc_paused():
        pf = parse_param(text, file)
        warnings = check_semantics(pf, text, file)
        g = graph_from_records(pf)
        g.load_warnings = [w for w in warnings if w.kind not in _GRAPH_WARNING_KINDS]
        if bin_data is not None:
            load_weights(g, memoryview(bin_data), bin_file, strict_bin)
    return g


def _read_text(path: str) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def map_file(path: str) -> memoryview:
    """A read-only memory map of ``path`` (empty files give an empty view)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return memoryview(b"")
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mm)


def load_graph(param: str, bin: str | None = None, *, strict_bin: bool = True) -> Graph:
    param, bin = os.fspath(param), (os.fspath(bin) if bin is not None else None)
    text = _read_text(param)
    buf = map_file(bin) if bin is not None else None
    g = graph_from_text(text, buf, file=param, bin_file=bin or "<bin>", strict_bin=strict_bin)
    g.source = (param, bin)
    return g


def copy_graph(g: Graph) -> Graph:
    """An independent copy of ``g``: new layers, params and blobs; weights share their bytes until edited."""
    new = Graph()
    mapping: dict[Layer, Layer] = {}
    for ly in g.layers:
        c = Layer(ly.type, ly.name, ly.inputs, ly.outputs, ly.params.copy(), line=ly.line)
        c.weights = {k: w.copy() for k, w in ly.weights.items()}
        mapping[ly] = c
    new.extend_loaded(mapping.values())
    for name, b in g.blobs.items():
        if b.shape is not None and name in new.blobs:
            new.blobs[name].shape = b.shape
    new.inherit_file_facts(g)
    new.splits = g.splits.remapped(mapping)
    return new
