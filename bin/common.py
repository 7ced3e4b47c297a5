"""Helpers shared by CLI subcommands."""

from __future__ import annotations

import os

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["add_task_options", "add_target_option", "check_run_args", "default_bin", "parse_shape", "require_file", "run_input_shape", "target_scope"]


def default_bin(param: str) -> str:
    """``model.param`` -> ``model.bin`` (the converters' naming)."""
    root, ext = os.path.splitext(param)
    return root + ".bin" if ext == ".param" else param + ".bin"


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,48,320"`` -> ``(3, 48, 320)``: the engine's parser, imported on use (the pass engine is not
    needed to start every command)."""
    from ncnnpass.ir.runtime.shapes import parse_shape as parse

    return parse(text)


def require_file(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise NcnnpassError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise NcnnpassError(f"{what} is a directory, expected a file: {path}")
    return path


def add_target_option(parser, default: str = "isolated") -> None:
    """The shared ``--target`` option: where ncnn runs (see :mod:`ncnnpass.ir.runtime.targets`)."""
    from ncnnpass.ir.runtime.targets import TARGETS

    parser.add_argument("--target", choices=TARGETS, default=default,
                        help="where ncnn runs: x86 (in this process), isolated (a worker process: an ncnn crash "
                             "becomes an error), arm / arm-a76 (the aarch64 ncnn emulated as a Cortex-A76 phone "
                             "CPU with fp16, provisioned on first use) or arm-a57 (pre-fp16 phones) "
                             f"(default {default})")


def add_task_options(parser, what: str, lines: str = "", pages: str = "") -> None:
    """The shared real-text options: ``--images PATH``, ``--lines N``, ``--pages N`` (see
    :mod:`ncnnpass.passes.measure.task_data`); ``what`` completes the ``--images`` help, ``lines``/``pages``
    the default counts."""
    parser.add_argument("--images", metavar="PATH",
                        help="real text to measure " + what + ": an image folder, a PaddleOCR rec label file "
                             "(path<TAB>text) or det label file (path<TAB>[{transcription, points}]); unreadable "
                             "images and lines are skipped and counted; default: the built-in held-out lines "
                             "(rec, cls) or pages (det), Chinese and Latin, rendered and degraded offline")
    parser.add_argument("--lines", type=int, metavar="N",
                        help="text lines to measure a rec or cls model on" + (f" (default {lines})" if lines else ""))
    parser.add_argument("--pages", type=int, metavar="N",
                        help="pages to measure a det model on" + (f" (default {pages})" if pages else ""))


def target_scope(args):
    """``with target_scope(args) as target:`` - ``args.target`` is the default target of every ncnn run in
    the block (shape inference included); the previous default comes back after (the CLI runs in-process in
    tests and scripts)."""
    from ncnnpass.ir.runtime.targets import default_target

    return default_target(args.target)


def run_input_shape(args, graph):
    """The input shape of a command that runs ``graph``: ``--shape`` options; else the sizes the Input layers
    declare (None: the runtime reads them); else, with ``--onnx``, the ONNX input (its dynamic dims filled
    with the model kind's default, as ``convert`` does)."""
    from ncnnpass.ir.runtime.shapes import declared_input_shapes, shapes_from_cli

    shape = shapes_from_cli(getattr(args, "shape", None))
    if shape is not None or declared_input_shapes(graph) is not None or not getattr(args, "onnx", None):
        return shape
    from ncnnpass.passes.measure.model_info import read_model_info

    require_file(args.onnx, "ONNX model")
    return read_model_info(args.onnx, args.onnx).input_shape


def check_run_args(args, phone: bool) -> str | None:
    """``ncnnpass run``'s option rules (before anything is loaded); returns the pass spec (None: no passes).
    ``phone``: the pipeline ends with repair-for-target."""
    require_file(args.param, "param file")
    require_file(args.bin, "bin file")
    if args.tolerance is not None and not (args.verify or phone):
        raise NcnnpassError("--tolerance only applies with --verify or with --pipeline repair --target arm")
    if args.onnx is not None and not (phone or args.verify):
        raise NcnnpassError("--onnx only applies with --verify or with --pipeline repair (or optimize) --target arm")
    task_flags = [name for name, on in (("--images", args.images), ("--lines", args.lines), ("--pages", args.pages),
                                        ("--dict", args.dict), ("--no-task", args.no_task)) if on]
    if task_flags and not args.verify:
        raise NcnnpassError(f"{', '.join(task_flags)} only apply with --verify (the real-text check)")
    if args.no_task and len(task_flags) > 1:
        raise NcnnpassError("--no-task skips the real-text check: --images, --lines, --pages and --dict do not apply")
    if args.images is not None or args.lines is not None or args.pages is not None:
        from ncnnpass.passes.measure.task_data import TaskRequest

        TaskRequest.from_args(args).check()
    if args.onnx is not None:
        require_file(args.onnx, "ONNX model")
    spec = args.pipeline if args.pipeline is not None else args.passes
    if args.verify_each and spec is None:
        raise NcnnpassError("--verify-each only applies with --passes or --pipeline")
    return spec
