"""What the fuzzers run on each input, and what counts as a failure.

A target returns a short outcome label (``"ok"``, ``"rejected:ParamSyntaxError"``, ...) when the code
under test either works or refuses the input with one of the project's own exceptions
(:class:`~ncnnpass.ir.errors.NcnnpassError`). Anything else is an :class:`Escape`: a foreign exception
(``IndexError``, ``UnicodeEncodeError``, ``MemoryError``, ``RecursionError`` ...), a time-out, or a model
that loaded and was written but whose written form does not load back (or changes when written again).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tempfile
import traceback
from pathlib import Path

from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.loader import graph_from_text
from ncnnpass.ir.writer import bin_bytes, param_text


class Escape(Exception):
    """A failure the fuzzer found: ``stage`` says where, ``detail`` holds the traceback."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail.strip().splitlines()[-1] if detail.strip() else ''}")
        self.stage = stage
        self.detail = detail


class Timeout(BaseException):  # BaseException: ``except Exception`` in the code under test must not eat it
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`Timeout` in the main thread after ``seconds`` (no-op when 0 or off the main thread)."""
    if not seconds or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise Timeout(f"no answer within {seconds:g}s")

    try:
        old = signal.signal(signal.SIGALRM, on_alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def decode_param(data: bytes) -> str:
    """How :func:`ncnnpass.ir.loader.load_graph` turns ``.param`` bytes into text."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def _guard(stage: str, fn, *args, **kwargs):
    """Run ``fn``; a project error propagates, anything else becomes an :class:`Escape`."""
    try:
        return fn(*args, **kwargs)
    except (NcnnpassError, Timeout):
        raise
    except Exception:
        raise Escape(stage, traceback.format_exc()) from None


class _Sink:
    def __init__(self) -> None:
        self.n = 0

    def write(self, b) -> None:
        self.n += len(b)


def model_target(param: bytes, bin: bytes | None) -> str:
    """Load (``.param`` text + ``.bin``), check, write, load the written files back, write again."""
    text = decode_param(param)
    try:
        g = _guard("load", graph_from_text, text, bin, file="fuzz.param", bin_file="fuzz.bin")
    except NcnnpassError as exc:
        _guard("message", str, exc)  # the CLI prints it: it must format
        return f"rejected:{type(exc).__name__}"
    _guard("check", g.check)
    try:
        text2 = _guard("write", param_text, g)
        bin2 = _guard("write-bin", bin_bytes, g) if bin is not None else None
    except NcnnpassError as exc:
        return f"write-refused:{type(exc).__name__}"
    try:
        g2 = _guard("reload", graph_from_text, text2, bin2, file="written.param", bin_file="written.bin")
    except NcnnpassError:
        raise Escape("reload", "the written model does not load back:\n" + traceback.format_exc()) from None
    text3 = _guard("rewrite", param_text, g2)
    if text3 != text2:
        raise Escape("rewrite", "writing the reloaded model gives different text")
    if bin is not None and _guard("rewrite-bin", bin_bytes, g2) != bin2:
        raise Escape("rewrite-bin", "writing the reloaded model gives different weights")
    return "ok"


def cli_target(param: bytes, bin: bytes | None, workdir: str | os.PathLike | None = None) -> str:
    """``ncnnpass inspect [--json]`` and ``ncnnpass run`` in-process on the files, with a strict UTF-8
    stdout like a pipe; exit 0 or 1 with one line on stderr."""
    from ncnnpass.cli.main import main

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        p, b = Path(tmp) / "m.param", Path(tmp) / "m.bin"
        p.write_bytes(param)
        files = [str(p)]
        if bin is not None:
            b.write_bytes(bin)
            files.append(str(b))
        outcomes = []
        for argv in (["inspect", *files], ["inspect", "--json", *files],
                     ["run", *files, "-o", f"{tmp}/o.param", f"{tmp}/o.bin"] if bin is not None else None):
            if argv is None:
                continue
            out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
            err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = _guard(f"cli {argv[0]}", main, argv)
                _guard(f"cli {argv[0]} output", out.flush)
                err.flush()
            lines = err.buffer.getvalue().decode("utf-8").splitlines()
            if code not in (0, 1) or (code == 1 and len(lines) != 1) or (code == 0 and lines):
                raise Escape(f"cli {argv[0]}", f"exit {code}, stderr {lines[:3]!r}")
            outcomes.append(str(code))
        return "cli:" + ",".join(outcomes)


def pattern_target(text: bytes, graph=None) -> str:
    """Compile pattern text (full and match-only); match the rules on ``graph`` when they compile."""
    from ncnnpass.passes.engine import PassContext, compile_rules, run_rules

    s = decode_param(text)
    result = []
    for match_only in (False, True):
        try:
            rules = _guard("pattern", compile_rules, s, file="fuzz.rw", match_only=match_only)
        except NcnnpassError as exc:
            _guard("message", str, exc)
            result.append(f"rejected:{type(exc).__name__}")
            continue
        result.append("ok")
        if graph is not None and rules:
            g = graph.copy()
            ctx = PassContext(g)
            try:
                if match_only:
                    ctx.protected = set(g.outputs)
                    for rule in rules:
                        for ly in g.find(list(rule.root_types)):
                            rule.match(ly, ctx)
                else:
                    _guard("rewrite-rules", run_rules, g, rules, ctx, max_rewrites=50)
            except NcnnpassError as exc:
                result[-1] = f"match-rejected:{type(exc).__name__}"
    return "pattern:" + ",".join(result)


def shard_target(data: bytes, workdir: str | os.PathLike | None = None) -> str:
    """``merge-centers`` input: load one (mutated) shard file and merge it."""
    from ncnnpass.passes.paddle.centers import merge_shards

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        p = Path(tmp) / "shard.npz"
        p.write_bytes(data)
        try:
            _guard("shard", merge_shards, [str(p)], allow_partial=True)
        except NcnnpassError as exc:
            return f"rejected:{type(exc).__name__}"
    return "ok"
