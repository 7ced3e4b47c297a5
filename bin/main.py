"""``ncnnpass`` entry point: one subcommand per module in :mod:`ncnnpass.cli`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback

from ncnnpass.ir.errors import NcnnpassError

# Each module defines ``register(subparsers)`` which adds a parser whose default ``func`` runs it.
COMMAND_MODULES = [
    "ncnnpass.cli.cmd_inspect",
    "ncnnpass.cli.cmd_run",
    "ncnnpass.cli.cmd_ctc_feats",
    "ncnnpass.cli.cmd_export_center",
    "ncnnpass.cli.cmd_merge_centers",
    "ncnnpass.cli.cmd_paddle_config",
    "ncnnpass.cli.cmd_compare",
    "ncnnpass.cli.cmd_passes",
    "ncnnpass.cli.cmd_convert",
    "ncnnpass.cli.cmd_ocr",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncnnpass",
        description="Graph-rewriting passes for PaddleOCR models converted to ncnn.",
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks and debug output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


MAX_ERROR_LINE = 1000


def _shorten(message: str) -> str:
    """Keep an error line readable when it quotes a hostile token (a 100 kB name): its first line is
    cut in the middle. Lines after the first (a tool's output tail) are kept as they are."""
    first, sep, rest = message.partition("\n")
    if len(first) > MAX_ERROR_LINE:
        cut = len(first) - MAX_ERROR_LINE + 200
        first = f"{first[:MAX_ERROR_LINE - 400]}...[{cut} characters]...{first[-200:]}"
    return first + sep + rest


class _Terminated(BaseException):
    """SIGTERM as an exception: its default action kills at once, leaving a half-written temp file."""


def _on_sigterm(signum, frame) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--verbose" in argv[1:]:  # accepted after the subcommand too (ncnnpass run ... --verbose)
        argv = ["--verbose"] + [a for a in argv if a != "--verbose"]
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    # Names read from a non-UTF-8 file carry surrogate escapes, and a pipe may not be UTF-8: printing
    # them must not fail with UnicodeEncodeError (stderr already uses backslashreplace).
    if callable(getattr(sys.stdout, "reconfigure", None)):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at exit
        return code
    except NcnnpassError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"ncnnpass {args.command}: error: {_shorten(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (``ncnnpass passes | head -1``): stop quietly, as SIGPIPE
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # missing or unreadable files, a full disk, ...: the environment, not a bug
        if args.verbose:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        print(f"ncnnpass {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ncnnpass: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("ncnnpass: terminated", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
