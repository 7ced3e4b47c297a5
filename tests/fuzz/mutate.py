"""Mutation operators for ``.param`` text, ``.bin`` bytes and pattern text (all seeded, deterministic).

Each operator takes a :class:`random.Random` and the input bytes and returns new bytes. ``mutate``
applies one to four of them. The operators aim at the classic parser killers: flipped bits,
truncation, duplicated/deleted/swapped lines, huge and negative numbers, NaN/inf floats, non-UTF-8
bytes, very long names, lying counts, odd whitespace (CR, VT, NBSP, BOM) and deep nesting.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

Mutator = Callable[[random.Random, bytes], bytes]

HUGE_INTS = [b"0", b"-1", b"-2", b"1", b"255", b"256", b"65536", b"1000000000", b"2147483647", b"2147483648",
             b"-2147483648", b"-2147483649", b"4294967296", b"9223372036854775807", b"18446744073709551616",
             b"1" + b"0" * 400, b"-" + b"9" * 80, b"+7", b"007", b"1" * 4300]
ODD_FLOATS = [b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e39", b"-1e39", b"3.4028235e38", b"3.4028236e38",
              b"1e-50", b"1e-400", b"1e400", b"0.0", b"-0.0", b".5", b"5.", b"1e", b"1e+", b"1.2.3", b"1e5e5",
              b"0x1p3", b"1_000.0", b"\xd9\xa1.5", b"1." + b"9" * 500]
WEIRD_BYTES = [b"\x00", b"\x80", b"\xff", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\r",
               b"\r\n", b"\x0b", b"\x0c", b"\t", b"\xc2\xa0", b"\xe3\x80\x80", b"\xef\xbb\xbf", b"\x1c",
               b"\xc2\x85", b"\"", b"=", b",", b" ", b"\n", b"\n\n", b"\\", b"#", b"%", b"\x7f"]
PARAM_TOKENS = [b"0=", b"1=", b"31=", b"32=", b"-1=", b"-23300=", b"-23301=0", b"-23310=1000000000,1",
                b"-23310=3,1,2,3", b"-23310=2,1.0,2", b"-23310=1,a", b"-23331=", b"-23332=1,", b"0=1,",
                b"0=1,,2", b"0=,", b"0=\"a b\"", b"0=\"", b"0=abc,def", b"6=1000000000", b"2=1000000000",
                b"0=1000000000", b"1=1000000000", b"21=0", b"21=1", b"5=1", b"8=1", b"8=101", b"18=100",
                b"19=1", b"10=-1", b"10=7", b"7=0", b"2=2", b"9=3", b"4=1", b"11=1000", b"3=1000000000",
                b"Input", b"Split", b"MemoryData", b"Convolution", b"InnerProduct", b"LSTM", b"GRU", b"RNN",
                b"Gemm", b"MultiHeadAttention", b"Embed", b"BatchNorm", b"CustomOp", b"Noop", b"7767517",
                b"1000000000 1000000000", b"0 0", b"1000000000 1", b"-1 1"]
PATTERN_TOKENS = [b"rule", b"match:", b"where:", b"replace:", b"weights:", b"doc", b"benefit", b"...", b"!",
                  b"*", b"**", b"%x", b"%", b"@a", b"@", b"~0", b"~", b":=", b"|", b"{", b"}", b"(", b")", b"[",
                  b"]", b"\"", b"#", b".", b",", b"=", b"!=", b"<=", b">=", b"==", b"<", b">", b"not", b"in",
                  b"and", b"or", b"if", b"else", b"true", b"false", b"none", b"-", b"+", b"//", b"/",
                  b"99999999999999999999", b"1e400", b"nan", b"ReLU", b"Convolution", b"Nope", b"num_output",
                  b"0=%s", b"0=*", b"0={1/0}", b"0={2**2**2}", b"1=1,2,", b"0=1|2", b"shape(x)", b"x.shape",
                  b"conv.weight", b"a.b.c", b"len(", b"\t", b"\r", b"\x00", b"\xff"]
NESTERS = [(b"(", b")"), (b"[", b"]"), (b"-", b""), (b"not ", b""), (b"{", b"}")]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def flip_bits(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def set_bytes(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    buf = bytearray(data)
    for _ in range(rng.choice((1, 2, 3))):
        buf[rng.randrange(len(buf))] = rng.choice((0, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x3D, 0x2C, rng.randrange(256)))
    return bytes(buf)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:_pos(rng, data)]


def cut_chunk(rng: random.Random, data: bytes) -> bytes:
    a = _pos(rng, data)
    b = min(len(data), a + rng.choice((1, 2, 8, 64, 512)))
    return data[:a] + data[b:]


def splice(rng: random.Random, data: bytes) -> bytes:
    """Copy a chunk of the input somewhere else in it."""
    if not data:
        return data
    a = rng.randrange(len(data))
    chunk = data[a:a + rng.choice((1, 4, 16, 200))]
    p = _pos(rng, data)
    return data[:p] + chunk + data[p:]


def duplicate_line(rng: random.Random, data: bytes) -> bytes:
    ls = _lines(data)
    i = rng.randrange(len(ls))
    ls[i:i] = [ls[i]] * rng.choice((1, 1, 2, 50))
    return b"\n".join(ls)


def delete_line(rng: random.Random, data: bytes) -> bytes:
    ls = _lines(data)
    del ls[rng.randrange(len(ls))]
    return b"\n".join(ls)


def swap_lines(rng: random.Random, data: bytes) -> bytes:
    ls = _lines(data)
    i, j = rng.randrange(len(ls)), rng.randrange(len(ls))
    ls[i], ls[j] = ls[j], ls[i]
    return b"\n".join(ls)


_TOKEN_RE = re.compile(rb"[^ \t\r\n]+")
_NUMBER_RE = re.compile(rb"(?<![A-Za-z_])[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_FLOAT_RE = re.compile(rb"(?<![A-Za-z_])[+-]?[0-9]*\.[0-9]+(?:[eE][+-]?[0-9]+)?")


def _replace_match(rng: random.Random, data: bytes, pattern: re.Pattern, choices: list[bytes]) -> bytes:
    found = list(pattern.finditer(data))
    if not found:
        return data
    m = rng.choice(found)
    return data[:m.start()] + rng.choice(choices) + data[m.end():]


def huge_number(rng: random.Random, data: bytes) -> bytes:
    return _replace_match(rng, data, _NUMBER_RE, HUGE_INTS)


def odd_float(rng: random.Random, data: bytes) -> bytes:
    return _replace_match(rng, data, _FLOAT_RE if rng.random() < 0.7 else _NUMBER_RE, ODD_FLOATS)


def long_name(rng: random.Random, data: bytes) -> bytes:
    n = rng.choice((255, 256, 300, 4096, 100_000))
    filler = rng.choice((b"A", b"\xe4\xb8\x80", b"\xff", b"_"))
    return _replace_match(rng, data, _TOKEN_RE, [(filler * n)[:n * len(filler)]])


def weird_bytes(rng: random.Random, data: bytes) -> bytes:
    p = _pos(rng, data)
    return data[:p] + rng.choice(WEIRD_BYTES) * rng.choice((1, 1, 3)) + data[p:]


def insert_token(rng: random.Random, data: bytes, vocabulary: list[bytes]) -> bytes:
    tokens = list(_TOKEN_RE.finditer(data))
    if tokens and rng.random() < 0.7:  # at a token boundary: keeps the rest of the line well-formed
        m = rng.choice(tokens)
        p = m.end() if rng.random() < 0.5 else m.start()
    else:
        p = _pos(rng, data)
    tok = rng.choice(vocabulary)
    return data[:p] + b" " + tok + b" " + data[p:]


def replace_token(rng: random.Random, data: bytes, vocabulary: list[bytes]) -> bytes:
    return _replace_match(rng, data, _TOKEN_RE, vocabulary)


def header_lie(rng: random.Random, data: bytes) -> bytes:
    """Make the layer/blob counts (second non-blank line) huge, negative or off by one."""
    ls = _lines(data)
    idx = [i for i, ln in enumerate(ls) if ln.strip()]
    if len(idx) < 2:
        return data
    i = idx[1]
    parts = ls[i].split()
    if len(parts) != 2:
        return data
    k = rng.randrange(2)
    parts[k] = rng.choice((b"1000000000", b"999999999999", b"-1", b"0", str(int(parts[k] or 0) + 1).encode()
                           if parts[k].isdigit() else b"1"))
    ls[i] = b" ".join(parts)
    return b"\n".join(ls)


def line_endings(rng: random.Random, data: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return data.replace(b"\n", b"\r\n")
    if choice == 1:
        return data.replace(b"\n", b"\r")
    if choice == 2:
        return b"\xef\xbb\xbf" + data
    return data.replace(b" ", rng.choice((b"\t", b"\x0b", b"\x0c", b"\xc2\xa0", b"  ")), rng.choice((1, 5, -1)))


def nest(rng: random.Random, data: bytes) -> bytes:
    """Deep nesting at a random point (pattern expressions)."""
    opener, closer = rng.choice(NESTERS)
    depth = rng.choice((10, 200, 1000, 5000))
    p = _pos(rng, data)
    return data[:p] + opener * depth + b"1" + closer * depth + data[p:]


PARAM_MUTATORS: list[Mutator] = [
    flip_bits, set_bytes, truncate, cut_chunk, splice, duplicate_line, delete_line, swap_lines, huge_number,
    huge_number, odd_float, odd_float, long_name, weird_bytes, header_lie, line_endings,
    lambda r, d: insert_token(r, d, PARAM_TOKENS), lambda r, d: insert_token(r, d, PARAM_TOKENS),
    lambda r, d: replace_token(r, d, PARAM_TOKENS),
]

PATTERN_MUTATORS: list[Mutator] = [
    flip_bits, set_bytes, truncate, cut_chunk, splice, duplicate_line, delete_line, swap_lines, huge_number,
    odd_float, long_name, weird_bytes, line_endings, nest,
    lambda r, d: insert_token(r, d, PATTERN_TOKENS), lambda r, d: insert_token(r, d, PATTERN_TOKENS),
    lambda r, d: replace_token(r, d, PATTERN_TOKENS),
]


def mutate(rng: random.Random, data: bytes, mutators: list[Mutator]) -> bytes:
    """Apply one to four randomly chosen mutators (mostly one)."""
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        data = rng.choice(mutators)(rng, data)
    return data


# -- .bin ---------------------------------------------------------------------------------------------

TAGS = [0x00000000, 0x01306B47, 0x01348B83, 0x000D4B38, 0x0002C056, 0x12345678, 0xFFFFFFFF]


def mutate_bin(rng: random.Random, data: bytes, array_starts: list[int]) -> bytes:
    """Truncate, extend, flip bytes anywhere or rewrite a storage flag (``array_starts``: tagged arrays)."""
    choice = rng.randrange(7)
    if choice == 0:
        return data[:_pos(rng, data)]
    if choice == 1:
        return data[:max(0, len(data) - rng.choice((1, 2, 3, 4, 5, 8, 1024)))]
    if choice == 2:
        return data + bytes(rng.choice((1, 3, 4, 1024)))
    if choice == 3 and array_starts:
        p = rng.choice(array_starts)
        tag = rng.choice(TAGS).to_bytes(4, "little")
        return data[:p] + tag + data[p + 4:]
    if choice == 4:
        return b""
    if choice == 5 and data:
        p = rng.randrange(len(data))
        return data[:p] + bytes([data[p] ^ (1 << rng.randrange(8))]) + data[p + 1:]
    return flip_bits(rng, data)


# -- export-center --shard files (.npz) ---------------------------------------------------------------

SHARD_MUTATORS: list[Mutator] = [flip_bits, set_bytes, truncate, cut_chunk, splice, huge_number, odd_float,
                                 weird_bytes]
_JSON_VALUES = [None, True, 0, -1, 1.5, "x", [], {}, [0], [0, 1], [1, 0], [[1, 2]], ["a", "b"], {"a": 1},
                10**30, float("nan"), "\udcff"]


def mutate_shard(rng: random.Random, data: bytes) -> bytes:
    """Rewrite a shard with its metadata (JSON) or its arrays changed: valid zip and .npy, wrong content."""
    import copy
    import io
    import json

    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    for _ in range(rng.randint(1, 3)):
        target = meta
        while isinstance(target, dict) and target and rng.random() < 0.6:
            value = target[rng.choice(list(target))]
            if not isinstance(value, dict):
                break
            target = value
        if isinstance(target, dict):
            key = rng.choice([*target, "extra"])
            if rng.random() < 0.2:
                target.pop(key, None)
            else:
                target[key] = copy.deepcopy(rng.choice(_JSON_VALUES))
    if rng.random() < 0.1:
        meta = copy.deepcopy(rng.choice(_JSON_VALUES))
    r = rng.random()
    if r < 0.15:
        shape = rng.choice([(5,), (5, 4), (0, 3), (5, 3, 1), (6, 3), ()])
        arrays["sums"] = np.zeros(shape, rng.choice([np.float64, np.float32, np.int64]))
    elif r < 0.3:
        arrays["counts"] = np.array(rng.choice([[1, 2], [-1, 0, 0, 0, 0], [1.5] * 5, ["a"] * 5, 3]))
    elif r < 0.35:
        arrays.pop(rng.choice(list(arrays)))
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=True))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
