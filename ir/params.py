"""Typed ncnn layer params that remember how they were spelled.

ncnn decides a value's type from its spelling (``ParamDict::load_param``): a token starting with a
letter or ``"`` is a string, one containing ``.``, ``e`` or ``E`` is a float, anything else an int.
An array's type is decided by its first element. Values read from a file keep their original text,
so an unedited param is written back exactly as it was read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, MutableMapping

import numpy as np

ParamValue = int | float | str | list

MAX_PARAM_ID = 31
ARRAY_KEY_BASE = -23300
FLOAT32_MAX = float(np.finfo(np.float32).max)

# float32 overflow threshold: a decimal at or above it rounds to infinity (ncnn then rejects it)
FLOAT32_OVERFLOW = float.fromhex("0x1.ffffffp+127")

INT_RE = re.compile(r"[+-]?[0-9]+\Z")
FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z|[+-]?[0-9]+[eE][+-]?[0-9]+\Z")
# ncnn: an unquoted string starts with an ASCII letter and runs to the next whitespace (commas included)
STRING_RE = re.compile(r'[A-Za-z][^ \t\n\v\f\r]*\Z|"[^"\r\n]*"\Z')


class ValueError_(ValueError):
    """Internal: a value token that ncnn would reject; ``offset`` is its position in the value text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def scalar_kind(token: str) -> str:
    """Classify a scalar token the way ncnn does: ``"int"``, ``"float"`` or ``"str"``."""
    if not token:
        raise ValueError_("empty value")
    c = token[0]
    if c.isascii() and c.isalpha() or c == '"':
        if not STRING_RE.match(token):
            raise ValueError_(f"malformed string value {token!r}")
        return "str"
    if "." in token or "e" in token or "E" in token:
        if not FLOAT_RE.match(token):
            raise ValueError_(f"malformed float value {token!r}")
        return "float"
    if not INT_RE.match(token):
        raise ValueError_(f"malformed number {token!r} (expected an int, a float with '.' or 'e', or a string)")
    return "int"


def parse_scalar(token: str) -> int | float | str:
    kind = scalar_kind(token)
    if kind == "int":
        v = int(token)
        if not -(2**31) <= v < 2**31:
            raise ValueError_(f"int value {token} does not fit in 32 bits")
        return v
    if kind == "float":
        v = float(token)
        if math.isinf(v) or abs(v) >= FLOAT32_OVERFLOW:  # 3.4028235e38 (FLT_MAX as printed) is fine
            raise ValueError_(f"float value {token} is out of float32 range")
        return v
    return token[1:-1] if token.startswith('"') else token


def split_elements(text: str) -> list[tuple[str, int]]:
    """Split ``a,b,"c d",`` into element tokens with their offsets (a trailing comma is allowed)."""
    out: list[tuple[str, int]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise ValueError_("unterminated string", i)
            j += 1
        else:
            j = text.find(",", i)
            if j < 0:
                j = n
        out.append((text[i:j], i))
        if j < n:
            if text[j] != ",":
                raise ValueError_("expected ',' between array elements", j)
            j += 1
            if j == n:  # trailing comma: one-element array marker
                out.append(("", j))
                break
        i = j
    return out


def parse_value(key: int, text: str) -> ParamValue:
    """Parse the text after ``key=`` with ncnn's typing rules. Raises :class:`ValueError_`."""
    if key > ARRAY_KEY_BASE and text[:1].isascii() and text[:1].isalpha():
        return parse_scalar(text)  # an unquoted string is one token up to whitespace, commas included
    elems = split_elements(text)
    if not elems:
        raise ValueError_("missing value")
    trailing = elems and elems[-1][0] == "" and len(elems) >= 2
    if trailing:
        elems = elems[:-1]
    if key <= ARRAY_KEY_BASE:  # old-style array: count, e1, e2, ...
        if trailing:
            raise ValueError_("an old-style array (-23300-id=count,...) cannot end with a comma", len(text) - 1)
        count_tok, _ = elems[0]
        if scalar_kind(count_tok) != "int":
            raise ValueError_("array length must be an int")
        count = int(count_tok)
        items = elems[1:]
        if count != len(items):
            raise ValueError_(f"array length mismatch: header says {count}, found {len(items)} elements")
        values = []
        for tok, off in items:
            try:
                values.append(parse_scalar(tok))
            except ValueError_ as exc:
                raise ValueError_(str(exc), off) from None
            if isinstance(values[-1], str):
                raise ValueError_("string elements are not allowed in arrays", off)
        if any(isinstance(v, float) for v in values):
            return [float(v) for v in values]
        return values
    if len(elems) == 1 and not trailing:
        tok, off = elems[0]
        try:
            return parse_scalar(tok)
        except ValueError_ as exc:
            raise ValueError_(str(exc), off) from None
    values = []
    first_kind = None
    for tok, off in elems:
        try:
            kind = scalar_kind(tok)
            v = parse_scalar(tok)
        except ValueError_ as exc:
            raise ValueError_(str(exc), off) from None
        if kind == "str":
            raise ValueError_("string elements are not allowed in arrays", off)
        if first_kind is None:
            first_kind = kind
        elif first_kind == "int" and kind == "float":
            raise ValueError_("invalid array element: a float in an array whose first element is an int", off)
        values.append(float(v) if first_kind == "float" else v)
    return values


def param_id(key: int) -> int:
    """The slot id of a key (old-style array keys ``-23300-id`` map to ``id``)."""
    return ARRAY_KEY_BASE - key if key <= ARRAY_KEY_BASE else key


def format_float(v: float) -> str:
    """Spell a float so both ncnn parsers read back the same float32 (<= 9 fraction digits, <= 15 chars)."""
    f = np.float32(v)
    if not np.isfinite(f):
        raise ValueError(f"ncnn params cannot hold {v!r}")
    return np.format_float_scientific(f, unique=True, exp_digits=2, min_digits=1)


def format_scalar(v: int | float | str) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_float(float(v))
    if isinstance(v, str):
        if not v or any(ch.isspace() for ch in v) or not (v[0].isascii() and v[0].isalpha()):
            if '"' in v or "\n" in v or "\r" in v:
                raise ValueError(f"string param {v!r} cannot be written")
            return f'"{v}"'
        return v
    raise TypeError(f"unsupported param value {v!r}")


def format_param(key: int, v: ParamValue) -> str:
    """``key=value`` text for a param id, arrays in ncnn's ``-23300-id=n,...`` form."""
    if isinstance(v, (list, tuple, np.ndarray)):
        items = ",".join(format_scalar(x) for x in v)
        return f"{ARRAY_KEY_BASE - key}={len(v)}" + ("," + items if len(v) else "")
    return f"{key}={format_scalar(v)}"


class ParamDict(MutableMapping):
    """Mapping of param id (0..31) to value; keeps each unedited value's original spelling."""

    __slots__ = ("_values", "_spelling", "_float_ids")

    def __init__(self, values: dict[int, ParamValue] | None = None, float_ids: frozenset[int] = frozenset()):
        self._values: dict[int, ParamValue] = {}
        self._spelling: dict[int, str] = {}
        self._float_ids = float_ids
        if values:
            for k, v in values.items():
                self[k] = v

    @classmethod
    def _from_parsed(cls, values: dict[int, ParamValue], spelling: dict[int, str],
                     float_ids: frozenset[int]) -> ParamDict:
        pd = cls.__new__(cls)
        pd._values = values
        pd._spelling = spelling
        pd._float_ids = float_ids
        return pd

    def __getitem__(self, key: int) -> ParamValue:
        return self._values[key]

    def __setitem__(self, key: int, value: ParamValue) -> None:
        if not isinstance(key, int) or not 0 <= key <= MAX_PARAM_ID:
            raise KeyError(f"param id must be an int in 0..{MAX_PARAM_ID}, got {key!r}")
        if isinstance(value, (tuple, np.ndarray)):
            value = [x.item() if isinstance(x, np.generic) else x for x in value]
        elif isinstance(value, np.generic):
            value = value.item()
        if key in self._float_ids:
            if isinstance(value, list):
                value = [float(x) for x in value]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
        if isinstance(value, float) or isinstance(value, list) and any(isinstance(x, float) for x in value):
            for x in value if isinstance(value, list) else [value]:
                format_float(float(x))  # validates finiteness now, not at write time
        self._values[key] = value
        self._spelling.pop(key, None)

    def __delitem__(self, key: int) -> None:
        del self._values[key]
        self._spelling.pop(key, None)

    def __iter__(self) -> Iterator[int]:
        return iter(self._values)

    def __contains__(self, key: object) -> bool:  # fast paths of the Mapping mixins (hot in matching)
        return key in self._values

    def get(self, key: int, default: ParamValue | None = None) -> ParamValue | None:
        return self._values.get(key, default)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return "ParamDict(" + " ".join(self.tokens()) + ")"

    def copy(self) -> ParamDict:
        return ParamDict._from_parsed(dict(self._values), dict(self._spelling), self._float_ids)

    def tokens(self) -> list[str]:
        """The ``key=value`` tokens to write: original spelling where unedited."""
        spelling = self._spelling
        return [spelling.get(k) or format_param(k, v) for k, v in self._values.items()]
