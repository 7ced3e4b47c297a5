"""Parse ncnn's text ``.param`` into :class:`RawLayer` records.

The language is defined by ``grammar/ncnn_param.lark`` and parsed with lark (LALR, contextual
lexer). Because lark's per-token cost caps it near 3k layers/s, well-formed lines first take a
fast path (``str.split`` plus the same token regexes); whenever the fast path meets anything it
does not accept, the whole text is re-parsed by lark, which either accepts it or reports the
error with line, column and the expected tokens. Tests check that both paths agree.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ncnnpass import grammar

from .errors import ParamSyntaxError
from .params import INT_RE, ParamValue, ValueError_, parse_value

MAGIC = 7767517
MAX_NUMBER_DIGITS = 600  # no value ncnn reads has more; Python's int() fails beyond 640..4300 digits
_LONG_NUMBER_RE = re.compile(rf"(?<![0-9])[0-9]{{{MAX_NUMBER_DIGITS + 1}}}")
_KEY_RE = re.compile(r"([+-]?[0-9]+)=")
# ncnn splits on C isspace() (ASCII). Python's str.split() and \s also split on U+001C..U+001F, U+0085,
# U+00A0, U+3000, ..., which are ordinary name characters for ncnn.
_WS_RE = re.compile(r"[^ \t\n\v\f\r]+")
_NON_ASCII_WS_RE = re.compile(r"[^\S \t\n\v\f\r]")
_ASCII_WS = " \t\n\v\f\r"


@dataclass
class RawParam:
    key: int
    value: ParamValue
    text: str  # "key=value" as written
    column: int


@dataclass
class RawLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: list[RawParam]
    line: int
    columns: list[int] = field(default_factory=list)  # column of each whitespace token on the line


@dataclass
class RawParam_File:
    magic: int
    layer_count: int
    blob_count: int
    layers: list[RawLayer]
    header_lines: tuple[int, int]
    header_cols: tuple[int, int, int]
    ignored_lines: int = 0  # non-blank lines after the header's layer count (ncnn never reads them)
    ignored_from: int | None = None  # the first of them
    bom: bool = False  # the text started with a UTF-8 byte-order mark (ncnn refuses it; it is skipped here)


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar.load("ncnn_param.lark"), parser="lalr", lexer="contextual",
                propagate_positions=False, maybe_placeholders=False)


def columns_of(line_text: str) -> list[int]:
    """1-based columns of each whitespace-separated token on a line."""
    return [m.start() + 1 for m in _WS_RE.finditer(line_text)]


class _FastPathMiss(Exception):
    """The fast path cannot take this text; args: (line it stopped at, last header line) when known."""


def _make_param(tok: str, col: int, file: str, lineno: int) -> RawParam:
    m = _KEY_RE.match(tok)
    if m is None:
        raise _FastPathMiss
    key = int(m.group(1))
    vtext = tok[m.end():]
    try:
        value = parse_value(key, vtext)
    except ValueError_ as exc:
        raise ParamSyntaxError(str(exc), file, lineno, col + m.end() + exc.offset) from None
    return RawParam(key, value, tok, col)


# One param token of a line with quotes: key=, then an unquoted string (a letter, then anything up to
# whitespace, as the grammar's STRING) or any mix of quoted strings and non-space, non-quote characters.
_QUOTED_PARAM_RE = re.compile(
    r'[ \t\v\f]*([+-]?[0-9]+=(?:[A-Za-z][^ \t\n\v\f\r]*|(?:"[^"\r\n]*"|[^ \t\n\v\f\r"])*))(?=[ \t\v\f]|\Z)')


def _quoted_param_tokens(ln: str, pos: int) -> list[str]:
    """The param tokens of ``ln`` from ``pos`` when a quoted string may contain spaces; anything
    else (an unterminated quote, a token that is not key=value) is left to lark."""
    out = []
    m = _QUOTED_PARAM_RE.match(ln, pos)
    while m is not None:
        out.append(m.group(1))
        pos = m.end()
        m = _QUOTED_PARAM_RE.match(ln, pos)
    if ln[pos:].strip(_ASCII_WS):
        raise _FastPathMiss
    return out


def _fast(text: str, file: str) -> RawParam_File:
    if "\r" in text:
        raise _FastPathMiss  # a lone CR (CRLF is normalized before): lark reports it
    # str.split() is fastest but also splits on non-ASCII whitespace; use the ASCII regex when present
    split = _WS_RE.findall if _NON_ASCII_WS_RE.search(text) else str.split
    lines = text.split("\n")
    it = ((i + 1, ln) for i, ln in enumerate(lines) if ln.strip(_ASCII_WS))
    try:
        l1, magic_line = next(it)
        l2, count_line = next(it)
    except StopIteration:
        raise _FastPathMiss from None
    mt, ct = split(magic_line), split(count_line)
    if len(mt) != 1 or len(ct) != 2 or not all(INT_RE.match(t) for t in (*mt, *ct)):
        raise _FastPathMiss
    layers = []
    int_match = INT_RE.match
    raw_param, raw_layer = RawParam, RawLayer
    # Converters repeat the same few hundred param tokens ("0=64", "1=3", ...): parse each text once.
    # Lists are copied on every use so that no two layers share a mutable value.
    cache: dict[str, tuple[int, ParamValue]] = {}
    cache_get = cache.get
    lineno = l2
    try:
        for lineno in range(l2 + 1, len(lines) + 1):
            ln = lines[lineno - 1]
            toks = split(ln)
            if not toks:
                continue  # blank line
            quoted = '"' in ln  # a quoted string value may contain spaces: its params are re-tokenized
            ntok = len(toks)
            if ntok < 4:
                raise _FastPathMiss
            t2, t3 = toks[2], toks[3]  # (ASCII digits: a cheaper test than the regex for the usual case)
            if not (t2.isdigit() and t2.isascii() or int_match(t2)) or not (t3.isdigit() and t3.isascii() or int_match(t3)):
                raise _FastPathMiss
            nin, nout = int(t2), int(t3)
            nb = 4 + nin + nout
            if nin < 0 or nout < 0 or ntok < nb:
                raise _FastPathMiss
            # ncnn reads the names by the counts, so a name may look like a param ("1=2"); only the grammar
            # (the error path) cannot tell them apart
            names_with_eq = "=" in "".join(toks[:nb])
            params = []
            if ntok > nb:
                # columns: params are found in order; the first one directly unless a name contains '='
                pos = 0
                if names_with_eq or quoted:
                    for k in range(nb):
                        pos = ln.find(toks[k], pos) + len(toks[k])
                find, append = ln.find, params.append
                for tok in _quoted_param_tokens(ln, pos) if quoted else toks[nb:]:
                    pos = find(tok, pos)
                    hit = cache_get(tok)
                    if hit is None:
                        p = _make_param(tok, pos + 1, file, lineno)
                        cache[tok] = (p.key, p.value)
                        append(p)
                    else:
                        value = hit[1]
                        append(raw_param(hit[0], value[:] if value.__class__ is list else value, tok, pos + 1))
                    pos += len(tok)
            layers.append(raw_layer(toks[0], toks[1], toks[4:4 + nin], toks[4 + nin:nb], params, lineno))
    except _FastPathMiss:
        raise _FastPathMiss(lineno, l2) from None
    c1 = columns_of(magic_line)
    c2 = columns_of(count_line)
    return RawParam_File(int(mt[0]), int(ct[0]), int(ct[1]), layers, (l1, l2), (c1[0], c2[0], c2[1]))


class _Build(Transformer):
    def __init__(self, text: str, file: str) -> None:
        super().__init__()
        self.lines = text.split("\n")
        self.file = file

    def header(self, items: list[Token]):
        return items

    def layers(self, items):
        return [x for x in items if isinstance(x, RawLayer)]

    def value(self, items):
        return items

    def param(self, items):
        key_tok: Token = items[0]
        values: list[Token] = items[1]
        last = values[-1]
        line = self.lines[key_tok.line - 1]
        start = key_tok.column - 1
        if start > 0 and line[start - 1] not in " \t\v\f":  # '0=1.5-2=3' is one (bad) token for ncnn
            raise ParamSyntaxError("params must be separated by whitespace", self.file, key_tok.line,
                                   key_tok.column)
        end = last.end_column - 1 if last.line == key_tok.line else len(line)
        return _make_param(line[start:end], key_tok.column, self.file, key_tok.line)

    def layer(self, items):
        type_tok, name_tok, nin_tok, nout_tok = items[:4]
        blobs = [t for t in items[4:] if isinstance(t, Token)]
        params = [p for p in items[4:] if isinstance(p, RawParam)]
        nin, nout = int(nin_tok), int(nout_tok)
        if nin < 0 or nout < 0:
            bad = nin_tok if nin < 0 else nout_tok
            raise ParamSyntaxError("blob counts must not be negative", self.file, bad.line, bad.column)
        if len(blobs) != nin + nout:
            where = blobs[nin + nout] if len(blobs) > nin + nout else (params[0] if params else None)
            col = where.column if where is not None else len(self.lines[type_tok.line - 1]) + 1
            raise ParamSyntaxError(
                f"layer {str(name_tok)!r} declares {nin} inputs + {nout} outputs but lists {len(blobs)} blob names",
                self.file, type_tok.line, col)
        return RawLayer(str(type_tok), str(name_tok), [str(b) for b in blobs[:nin]],
                        [str(b) for b in blobs[nin:]], params, type_tok.line)

    def start(self, items):
        header, layers = items
        magic, lc, bc = header
        return RawParam_File(int(magic), int(lc), int(bc), layers, (magic.line, lc.line),
                             (magic.column, lc.column, bc.column))


_TOKEN_NAMES = {
    "INT": "an integer", "FLOAT": "a float", "STRING": "a string", "NAME": "a name", "KEY": "a param key",
    "_NL": "end of line", "EQUAL": "'='", "COMMA": "','", "$END": "end of file", "TRAILING_COMMA": "','",
}


def _expected(names) -> str:
    return ", ".join(sorted({_TOKEN_NAMES.get(n, n) for n in names}))


def parse_lark(text: str, file: str = "<string>") -> RawParam_File:
    """Parse with the lark grammar only (the reference path; slower)."""
    try:
        tree = _lark().parse(text)
    except UnexpectedToken as exc:
        tok = exc.token
        what = "end of file" if tok.type == "$END" else f"{str(tok)!r}"
        raise ParamSyntaxError(f"unexpected {what}; expected {_expected(exc.accepts or exc.expected)}",
                               file, exc.line if exc.line > 0 else None, exc.column if exc.column > 0 else None) from None
    except UnexpectedCharacters as exc:
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        raise ParamSyntaxError(f"unexpected character {ch!r}; expected {_expected(exc.allowed or [])}",
                               file, exc.line, exc.column) from None
    except UnexpectedEOF as exc:
        raise ParamSyntaxError(f"unexpected end of file; expected {_expected(exc.expected)}", file) from None
    except UnexpectedInput as exc:  # pragma: no cover - other lark errors
        raise ParamSyntaxError(str(exc).splitlines()[0], file, getattr(exc, "line", None),
                               getattr(exc, "column", None)) from None
    try:
        return _Build(text, file).transform(tree)
    except VisitError as exc:  # lark wraps errors raised in the transformer
        if isinstance(exc.orig_exc, ParamSyntaxError):
            raise exc.orig_exc from None
        raise


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects (nothing here makes
    cycles); a 20k-layer file otherwise spends about half its load time in collections."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _lark_on_line(text: str, file: str, lineno: int, header_end: int) -> None:
    """Run the grammar on the header and line ``lineno`` alone (the other lines blanked, so positions
    stay): lark's cost grows with the offset of the error, and every line before ``lineno`` passed the
    fast path. Raises that line's error; returns when the grammar accepts it (then the whole text is
    parsed by lark)."""
    lines = text.split("\n")
    window = [*lines[:header_end], *[""] * (lineno - 1 - header_end), lines[lineno - 1]]
    parse_lark("\n".join(window) + "\n", file)


def _cut_after_layer_count(text: str) -> tuple[str, int, int | None]:
    """``text`` up to its ``layer_count``-th layer line, the number of non-blank lines cut, and the
    line number of the first: ncnn stops reading after the layers the header announces, so what
    follows (even garbage) is ignored. Files with a malformed header are returned whole."""
    lines = text.split("\n")
    nonblank = [i for i, ln in enumerate(lines) if ln.strip(_ASCII_WS)]
    if len(nonblank) < 3:
        return text, 0, None
    counts = _WS_RE.findall(lines[nonblank[1]])
    if (len(_WS_RE.findall(lines[nonblank[0]])) != 1 or len(counts) != 2 or len(counts[0]) > 18
            or not INT_RE.fullmatch(counts[0])):
        return text, 0, None
    n = int(counts[0])
    if n <= 0 or len(nonblank) - 2 <= n:
        return text, 0, None
    last = nonblank[1 + n]
    return "\n".join(lines[:last + 1]) + "\n", len(nonblank) - 2 - n, nonblank[2 + n] + 1


def parse_param(text: str, file: str = "<string>", *, engine: str = "auto") -> RawParam_File:
    """Parse ``.param`` text. ``engine``: ``auto`` (fast path, lark on anything unusual) or ``lark``."""
    if engine not in ("auto", "lark"):
        raise ValueError(f"unknown engine {engine!r}")
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    text = text.replace("\r\n", "\n")
    nul = text.find("\x00")
    if nul >= 0:  # ncnn's C strings end at a NUL: it would read other tokens than the file holds
        raise ParamSyntaxError("NUL byte: ncnn would read the text around it differently (docs/guarantees.md, "
                               "nul-byte)", file, text.count("\n", 0, nul) + 1, nul - text.rfind("\n", 0, nul))
    text, ignored, ignored_from = _cut_after_layer_count(text)
    try:
        with gc_paused():
            pf = None
            if engine == "auto":
                try:
                    pf = _fast(text, file)
                except _FastPathMiss as miss:
                    if miss.args:
                        _lark_on_line(text, file, *miss.args)  # raises the error of that line, if it has one
            if pf is None:
                pf = parse_lark(text, file)
            pf.ignored_lines, pf.ignored_from, pf.bom = ignored, ignored_from, bom
            return pf
    except (ValueError, VisitError):
        # int() refuses more than sys.get_int_max_str_digits() digits (4300 by default, 640 at the least)
        long_number = _LONG_NUMBER_RE.search(text)
        if long_number is None:
            raise
        at = long_number.start()
        raise ParamSyntaxError(f"number with more than {MAX_NUMBER_DIGITS} digits", file,
                               text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)) from None
