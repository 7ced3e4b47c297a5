"""Helpers shared by CLI subcommands."""

from __future__ import annotations

import os

from ncnnpass.ir.errors import NcnnpassError


def default_bin(param: str) -> str:
    """``model.param`` -> ``model.bin`` (the converters' naming)."""
    root, ext = os.path.splitext(param)
    return root + ".bin" if ext == ".param" else param + ".bin"


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,48,320"`` (or ``"3x48x320"``) -> ``(3, 48, 320)``."""
    try:
        dims = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise NcnnpassError(f"bad shape {text!r}: expected comma-separated integers such as 3,48,320") from None
    if not dims or any(d <= 0 for d in dims):
        raise NcnnpassError(f"bad shape {text!r}: dimensions must be positive")
    return dims


def require_file(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise NcnnpassError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise NcnnpassError(f"{what} is a directory, expected a file: {path}")
    return path


def add_target_option(parser, default: str = "isolated") -> None:
    """The shared ``--target`` option: where ncnn runs (see :mod:`ncnnpass.ir.targets`)."""
    from ncnnpass.ir.targets import TARGETS

    parser.add_argument("--target", choices=TARGETS, default=default,
                        help="where ncnn runs: x86 (in this process), isolated (a worker process: an ncnn crash "
                             "becomes an error), arm / arm-a76 (the aarch64 ncnn emulated as a Cortex-A76 phone "
                             "CPU with fp16, provisioned on first use) or arm-a57 (pre-fp16 phones) "
                             f"(default {default})")


def target_scope(args):
    """``with target_scope(args) as target:`` - ``args.target`` is the default target of every ncnn run in
    the block (shape inference included); the previous default comes back after (the CLI runs in-process in
    tests and scripts)."""
    from ncnnpass.ir.targets import default_target

    return default_target(args.target)
