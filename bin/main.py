"""``ncnnpass`` entry point: one subcommand per module in :mod:`ncnnpass.cli`."""

from __future__ import annotations

import argparse
import importlib
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NcnnpassError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"ncnnpass {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"ncnnpass {args.command}: error: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ncnnpass: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
