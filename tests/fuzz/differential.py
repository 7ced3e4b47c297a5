"""Differential loader test: mutated real ``.param``/``.bin`` files judged by ncnn and by ncnnpass.

Each case comes from ``random.Random(f"{seed}:{i}")``: a structural mutation of the real pnnx file
(shared layer names, ``key=value``-looking names, header counts, lines after the layers, unproduced or
twice-produced blobs, unused Split tops, blob counts on a line, unknown types, params on the next line,
...) or a byte-level one from :mod:`tests.fuzz.mutate`; some cases carry a (mutated) ``.bin``. ncnn
judges in :class:`~tests.fuzz.ncnn_oracle.NcnnOracle`, ncnnpass in-process. A model ncnnpass accepts is
written back and the written text must load in ncnn too.

A case where ncnn accepts and ncnnpass refuses is allowed only when ncnnpass's message matches one of
:data:`DOCUMENTED` (each listed in ``docs/guarantees.md`` with its reason).
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.loader import graph_from_text

from .corpus import Model
from .mutate import PARAM_MUTATORS, mutate, mutate_bin
from .ncnn_oracle import NcnnOracle

# divergence id -> what ncnnpass says; docs/guarantees.md explains each id
DOCUMENTED: dict[str, re.Pattern] = {
    "two-blobs-one-name": re.compile(r"is produced twice|before layer .* produces it"),
    "lone-cr": re.compile(r"unexpected character '\\r'"),
    "trailing-bin-bytes": re.compile(r"bytes left over after the last weight"),
    "names-on-next-line": re.compile(r"declares \d+ inputs \+ \d+ outputs but lists"
                                    r"|unexpected '\\n'; expected (a name|an integer)"
                                    r"|unexpected end of file; expected .*(a name|an integer)"),
    "nul-byte": re.compile(r"NUL byte: ncnn would read"),
}


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


# -- structural mutations ---------------------------------------------------------------------------

def _split(param: bytes) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in _decode(param).split("\n") if ln.strip()]
    return lines[:2], [ln.split() for ln in lines[2:]]


def _blobs(toks: list[str]) -> tuple[int, int]:
    nin, nout = int(toks[2]), int(toks[3])
    return 4, 4 + nin + nout


def _join(head: list[str], layers: list[list[str]], fix_counts: bool) -> bytes:
    if fix_counts:
        seen: set[str] = set()
        slots = 0
        for t in layers:
            try:
                a, b = _blobs(t)
                nin = int(t[2])
            except (ValueError, IndexError):
                continue
            for n in t[a:a + nin]:
                if n not in seen:
                    seen.add(n)
                    slots += 1
            slots += b - a - nin
            seen.update(t[a + nin:b])
        head = [head[0], f"{len(layers)} {slots}"]
    return ("\n".join([*head, *(" ".join(t) for t in layers)]) + "\n").encode("utf-8", "surrogateescape")


def _all_blob_names(layers: list[list[str]]) -> list[str]:
    out = []
    for t in layers:
        a, b = _blobs(t)
        out += t[a:b]
    return out


def _rename_blob(layers, old: str, new: str) -> None:
    for t in layers:
        a, b = _blobs(t)
        t[a:b] = [new if n == old else n for n in t[a:b]]


def structural(rng: random.Random, param: bytes) -> bytes:
    """One structural mutation; a file too broken to take it (an earlier mutation) gets a byte-level one."""
    try:
        return _structural(rng, param)
    except (ValueError, IndexError):
        return mutate(rng, param, PARAM_MUTATORS)


def _structural(rng: random.Random, param: bytes) -> bytes:
    head, layers = _split(param)
    n = len(layers)
    i, j = rng.randrange(1, n), rng.randrange(n)
    ly = layers[i]
    a, b = _blobs(ly)
    kind = rng.randrange(16)
    fix = rng.random() < 0.6
    if kind == 0:  # a shared layer name (pnnx: two Splits named splitncnn_0)
        splits = [t for t in layers if t[0] == "Split"]
        if len(splits) >= 2 and rng.random() < 0.5:
            s1, s2 = rng.sample(splits, 2)
            s2[1] = s1[1]
        else:
            ly[1] = layers[j][1]
    elif kind == 1:  # a blob name that looks like a param
        names = _all_blob_names(layers)
        old = rng.choice(names)
        _rename_blob(layers, old, rng.choice([f"{rng.randrange(32)}={old}", f"{old}=1", "1=2", "-23300=1,2", "0="]))
    elif kind == 2:  # a layer name or type that looks like a param
        ly[1 if rng.random() < 0.8 else 0] = rng.choice(["0=1", "1=2", "31=x", f"{ly[1]}=0"])
    elif kind == 3:  # header layer count
        head[1] = f"{max(0, n + rng.choice((-5, -2, -1, 1, 2)))} {head[1].split()[1]}"
        return _join(head, layers, False)
    elif kind == 4:  # header blob count
        bc = int(head[1].split()[1])
        big = rng.random() < 0.05  # ncnn's limit is 10**6 blobs; a net that size takes ~0.1 s to build
        delta = rng.choice((10**6 - bc, 10**6 + 1 - bc)) if big else rng.choice((-3, -1, 1, 2, 100))
        head[1] = f"{head[1].split()[0]} {max(0, bc + delta)}"
        return _join(head, layers, False)
    elif kind == 5:  # lines after the announced layers
        extra = rng.choice([["garbage", "!!"], ["ReLU", "x", "1", "1", "a", "b"], ["\u00a0"], ["7767517"]])
        out = _join(head, layers, True)
        return out + (" ".join(extra) + "\n").encode()
    elif kind == 6:  # drop a layer: its outputs are never produced
        del layers[i]
    elif kind == 7 and b > a + int(ly[2]) - 0 and int(ly[2]) > 0:  # an input nobody produces
        ly[a + rng.randrange(int(ly[2]))] = f"free_{rng.randrange(3)}"
    elif kind == 8 and int(ly[3]) > 0:  # a top that an earlier layer also produces
        prev = [n for t in layers[:i] for n in t[_blobs(t)[0] + int(t[2]):_blobs(t)[1]]]
        if prev:
            ly[a + int(ly[2]) + rng.randrange(int(ly[3]))] = rng.choice(prev)
    elif kind == 9:  # swap two layers
        layers[i], layers[j] = layers[j], layers[i]
    elif kind == 10:  # a Split top nobody reads, or one consumer fewer
        splits = [t for t in layers if t[0] == "Split"]
        if splits:
            s = rng.choice(splits)
            sa, sb = _blobs(s)
            s.insert(sb, f"{s[sa]}_unused")
            s[3] = str(int(s[3]) + 1)
    elif kind == 11:  # unknown or mis-cased type
        ly[0] = rng.choice([ly[0].lower(), ly[0].upper(), "Foo", "Custom.Layer", "Noop", "Split"])
    elif kind == 12:  # a blob count on the line that does not match the names
        k = rng.choice((2, 3))
        ly[k] = str(int(ly[k]) + rng.choice((-1, 1)))
    elif kind == 13:  # params continued on the next line
        if len(ly) > b:
            cut = rng.randrange(b, len(ly))
            layers.insert(i + 1, ly[cut:])
            del ly[cut:]
    elif kind == 14:  # one-blob layer with two outputs, or Input with an input
        ly.insert(b, f"{ly[1]}_extra")
        ly[3] = str(int(ly[3]) + 1)
    else:  # a param token replaced or added
        tok = rng.choice(["0=1", "30=1", "31=2", "-23330=1,3", "-23330=1,4,48,320,1,3", "32=1", "0=inf", "0=1,",
                          "1=\"a b\"", "-23300=2,1", "6=", "=1"])
        if len(ly) > b and rng.random() < 0.5:
            ly[rng.randrange(b, len(ly))] = tok
        else:
            ly.append(tok)
    return _join(head, layers, fix)


def make_case(rng: random.Random, param: bytes, windows: list[Model],
              bin_share: float = 0.03) -> tuple[bytes, bytes | None]:
    """One case: mostly the full ``.param`` mutated; in ``bin_share`` of the cases a window of the real
    model (its exact lines and weight bytes; ncnn needs ~2 s to build the whole net from a .bin) with
    its param and/or .bin mutated."""
    if windows and rng.random() < bin_share:
        m = rng.choice(windows)
        p, b = m.param, m.bin
        r = rng.random()
        if r < 0.4:
            p = mutate(rng, p, PARAM_MUTATORS) if rng.random() < 0.5 or len(p.split(b"\n")) < 5 else structural(rng, p)
        if r > 0.3:
            b = mutate_bin(rng, b, m.array_starts)
        return p, b
    r = rng.random()
    if r < 0.6:
        p = structural(rng, param)
        if rng.random() < 0.2:
            p = structural(rng, p) if rng.random() < 0.5 else mutate(rng, p, PARAM_MUTATORS)
    else:
        p = mutate(rng, param, PARAM_MUTATORS)
    return p, None


# -- judging --------------------------------------------------------------------------------------

@dataclass
class Report:
    cases: int = 0
    seconds: float = 0.0
    counts: Counter = field(default_factory=Counter)  # (ncnn accepted, ncnnpass accepted) -> n
    documented: Counter = field(default_factory=Counter)  # divergence id -> n
    undocumented: list[tuple[int, str, str]] = field(default_factory=list)  # ncnn yes, ncnnpass no
    stricter_ncnn: Counter = field(default_factory=Counter)  # ncnn's reason -> n (ncnnpass accepted)
    warned_when_ncnn_refused: int = 0
    written_refused: list[tuple[int, str]] = field(default_factory=list)  # written text ncnn refuses
    ncnn_crashes: int = 0
    slowest: tuple[float, int] = (0.0, -1)
    warning_kinds: Counter = field(default_factory=Counter)  # warnings of the cases both accept
    token_identical: int = 0  # accepted files that ncnnpass writes back token for token

    def summary(self) -> str:
        agree = self.counts[(True, True)] + self.counts[(False, False)]
        lines = [f"{self.cases} cases in {self.seconds:.1f}s ({self.cases / max(self.seconds, 1e-9):.0f}/s); "
                 f"agree {agree} (both accept {self.counts[(True, True)]}, both refuse {self.counts[(False, False)]}); "
                 f"ncnn only {self.counts[(True, False)]} (documented {sum(self.documented.values())}: "
                 f"{dict(self.documented)}; undocumented {len(self.undocumented)}); "
                 f"ncnnpass only {self.counts[(False, True)]} (with a warning {self.warned_when_ncnn_refused}); "
                 f"ncnn crashes/hangs {self.ncnn_crashes}; written files ncnn refuses {len(self.written_refused)}; "
                 f"slowest case {self.slowest[1]} ({self.slowest[0] * 1e3:.0f} ms)"]
        lines.append(f"  written back token for token: {self.token_identical} of {self.counts[(True, True)]}; "
                     f"warnings on files both accept: {dict(self.warning_kinds)}")
        for reason, k in self.stricter_ncnn.most_common(8):
            lines.append(f"  ncnn refuses, ncnnpass accepts: {k} x {reason}")
        for i, msg, _log in self.undocumented[:10]:
            lines.append(f"  UNDOCUMENTED case {i}: ncnnpass: {msg[:200]}")
        return "\n".join(lines)


def _lines(text: str) -> list[list[str]]:
    return [t for t in (ln.split() for ln in text.split("\n")) if t]


def documented_reason(message: str) -> str | None:
    return next((k for k, rx in DOCUMENTED.items() if rx.search(message)), None)


def run_cases(param: bytes, windows: list[Model], count: int, seed: int | str = 0,
              start: int = 0, oracle: NcnnOracle | None = None) -> Report:
    """Cases ``start .. start+count`` of ``seed`` on the real ``param`` (and ``windows`` of it with weights)."""
    from ncnnpass.ir.writer import param_text

    rep = Report()
    own = oracle is None
    oracle = oracle or NcnnOracle()
    t0 = time.perf_counter()
    try:
        for i in range(start, start + count):
            t_case = time.perf_counter()
            rng = random.Random(f"{seed}:{i}")
            p, b = make_case(rng, param, windows)
            oracle.submit(p, b)  # ncnn (in its process) and ncnnpass (here) work at the same time
            try:
                g = graph_from_text(_decode(p), b, file="m.param", bin_file="m.bin")
                ok, msg = True, ""
            except NcnnpassError as exc:
                g, ok, msg = None, False, str(exc)
            v = oracle.result()
            if v.status in ("crash", "hang"):
                rep.ncnn_crashes += 1
            rep.counts[(v.accepted, ok)] += 1
            if v.accepted and not ok:
                reason = documented_reason(msg)
                if reason is None:
                    rep.undocumented.append((i, msg, v.log))
                else:
                    rep.documented[reason] += 1
            elif ok and not v.accepted:
                rep.stricter_ncnn[re.sub(r"\d+", "N", v.log or v.status)[:80]] += 1
                if g.warnings() or g.check():
                    rep.warned_when_ncnn_refused += 1
            if ok and v.accepted:
                rep.warning_kinds.update({w.kind for w in g.warnings()})
                written = param_text(g)
                if _lines(written) == _lines(_decode(p)):
                    rep.token_identical += 1  # the same tokens on the same lines: ncnn reads the same net
                else:
                    w = oracle.judge(written.encode("utf-8", "surrogateescape"))
                    if not w.accepted:
                        rep.written_refused.append((i, w.log))
            rep.cases += 1
            dt = time.perf_counter() - t_case
            if dt > rep.slowest[0]:
                rep.slowest = (dt, i)
    finally:
        rep.seconds = time.perf_counter() - t0
        if own:
            oracle.close()
    return rep
