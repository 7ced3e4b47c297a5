"""Helpers shared by CLI subcommands."""

from __future__ import annotations

import os
import sys

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["add_paths_option", "check_paths_and_target", "add_target_option", "check_run_args", "default_bin", "parse_shape",
           "require_file", "require_target", "run_input_shape", "target_scope"]


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


def add_target_option(parser, default: str = "isolated", what: str = "") -> None:
    """The shared ``--target`` option: where ncnn runs (see :mod:`ncnnpass.ir.runtime.targets`); every command
    takes the same names. ``what``: what the target means for this command (appended to the help)."""
    from ncnnpass.ir.runtime.targets import TARGETS

    parser.add_argument("--target", choices=TARGETS, default=default,
                        help="where ncnn runs: x86 (in this process), isolated (a worker process: an ncnn crash "
                             "becomes an error), arm / arm-a76 (the aarch64 ncnn emulated as a Cortex-A76 phone "
                             "CPU with fp16, provisioned on first use), arm-a57 (pre-fp16 phones) or vulkan "
                             "(ncnn's GPU path on Mesa's lavapipe, fp16 storage and arithmetic like phone GPUs; "
                             "provisioned on first use)" + (f"; {what}" if what else "") + f" (default {default})")


def add_paths_option(parser) -> None:
    """``--paths``: the ncnn paths a written file that carries featmask bits must run correctly on."""
    parser.add_argument("--paths", default="available", metavar="LIST",
                        help="a written model that sets featmask bits (31=) must run correctly on each of these ncnn "
                             "paths, or it is not written: available (default: x86, plus the emulated ARM CPU and "
                             "the Vulkan GPU when provisioned), all, none, or names (x86,arm,vulkan); checked "
                             "against the same file without masks on each path (~1 emulated ARM inference, a few "
                             "seconds on x86 and Vulkan)")


def require_target(name: str) -> None:
    """Provision a device target before a command does any work, so a missing runtime or Vulkan device is a
    one-line error up front (for ``vulkan``: lavapipe and ncnn seeing it; for ``arm``: the emulated runtime)."""
    from ncnnpass.ir.runtime.targets import normalize_target

    target = normalize_target(name)
    if target == "vulkan":
        from ncnnpass.ir.runtime.vulkan_env import ensure_vulkan_runtime

        ensure_vulkan_runtime(progress=lambda m: print(f"ncnnpass: {m}", file=sys.stderr, flush=True))
    elif target.startswith("arm"):
        from ncnnpass.ir.runtime.arm_env import ensure_arm_runtime

        ensure_arm_runtime(progress=lambda m: print(f"ncnnpass: {m}", file=sys.stderr, flush=True))


def target_scope(args):
    """``with target_scope(args) as target:`` - ``args.target`` is the default target of every ncnn run in
    the block (shape inference included); the previous default comes back after (the CLI runs in-process in
    tests and scripts)."""
    from ncnnpass.ir.runtime.targets import default_target

    return default_target(args.target)


def run_input_shape(args, graph, passes=()):
    """The input shape of a command that runs ``graph``: ``--shape`` options; else the sizes the Input layers
    declare (None: the runtime reads them); else the ONNX input of ``--onnx``, or of the ``reference`` of a
    ``repair-for-target`` among ``passes`` (its dynamic dims filled with the model kind's default, as
    ``convert`` does)."""
    from ncnnpass.ir.runtime.shapes import declared_input_shapes, shapes_from_cli

    shape = shapes_from_cli(getattr(args, "shape", None))
    if shape is not None or declared_input_shapes(graph) is not None:
        return shape
    onnx = getattr(args, "onnx", None) or next((p.options.get("reference") for p in passes
                                                 if p.name == "repair-for-target" and p.options.get("reference")), None)
    if not onnx:
        return None
    from ncnnpass.passes.measure.model_info import read_model_info

    require_file(onnx, "ONNX model")
    return read_model_info(onnx, onnx).input_shape


def check_run_args(args, phone: bool, target: str) -> str | None:
    """``ncnnpass run``'s option rules (before anything is loaded; a bad ``--paths`` or a target that cannot
    run fails here in one line); returns the pass spec (None: no passes). ``phone``: the pipeline ends with
    repair-for-target."""
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
    check_paths_and_target(args.paths, target)
    return spec


def check_paths_and_target(paths: str, target: str) -> None:
    """A bad ``--paths`` or a device target that cannot run fails in one line before any work."""
    from ncnnpass.passes.measure.paths import resolve_paths

    resolve_paths(paths)
    require_target(target)
