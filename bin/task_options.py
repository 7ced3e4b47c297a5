"""The CLI's real-text options (``--images``, ``--lines``, ``--pages``) and ``run --verify``'s check on real text."""

from __future__ import annotations

import argparse
import sys

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError

__all__ = ["add_task_options", "task_check", "task_refusal"]


def add_task_options(parser, what: str, lines: str = "", pages: str = "", *, no_task: str | None = None,
                     dictionary: str | None = None) -> None:
    """The shared real-text options: ``--images PATH``, ``--lines N``, ``--pages N`` (see
    :mod:`ncnnpass.passes.measure.task_data`); ``what`` completes the ``--images`` help, ``lines``/``pages``
    the default counts; ``no_task``/``dictionary``: the help of ``--no-task`` and ``--dict`` when the command
    has them."""
    parser.add_argument("--images", metavar="PATH",
                        help="real text to measure " + what + ": an image folder, a PaddleOCR rec label file "
                             "(path<TAB>text) or det label file (path<TAB>[{transcription, points}]); unreadable "
                             "images and lines are skipped and counted; default: the built-in held-out lines "
                             "(rec, cls) or pages (det), Chinese and Latin, rendered and degraded offline")
    parser.add_argument("--lines", type=int, metavar="N",
                        help="text lines to measure a rec or cls model on" + (f" (default {lines})" if lines else ""))
    parser.add_argument("--pages", type=int, metavar="N",
                        help="pages to measure a det model on" + (f" (default {pages})" if pages else ""))
    if no_task is not None:
        parser.add_argument("--no-task", action="store_true", help=no_task)
    if dictionary is not None:
        parser.add_argument("--dict", metavar="FILE", help=dictionary)


def task_refusal(args: argparse.Namespace, before: Graph, after: Graph, shape, target: str) -> str | None:
    """``run --verify``'s check on real text unless ``--no-task``: why not to write, or None."""
    if before is None or args.no_task:
        return None
    failures = task_check(args, before, after, shape, target)
    return f"on real text the rewrite changes what users see: {'; '.join(failures)}" if failures else None


def task_check(args: argparse.Namespace, before: Graph, after: Graph, shape, target: str) -> list[str]:
    """``--verify`` on real text (:func:`ncnnpass.passes.measure.task_eval.rewrite_check`); prints the report and
    returns the failures. The kind and dictionary come from --onnx, else from the ncnn output shape."""
    from ncnnpass.passes.measure.model_files import graph_facts, model_facts
    from ncnnpass.passes.measure.task_data import TaskRequest
    from ncnnpass.passes.measure.task_eval import rewrite_check
    from ncnnpass.passes.measure.verify import input_shapes_for

    shapes = input_shapes_for(before, shape)
    c, h, w = next(iter(shapes.values())) if len(shapes) == 1 and len(next(iter(shapes.values()))) == 3 else (0, 0, 0)
    asked = bool(args.images or args.lines or args.pages)
    folder = None
    if args.onnx is not None:
        info, folder = model_facts(args.onnx, args.dict)
    elif c == 3:
        info = graph_facts(before, (c, h, w), args.dict)
    else:
        info = None
    if info is None or info.kind not in ("rec", "det", "cls"):
        if asked:
            raise NcnnpassError("cannot tell whether the model is rec, det or cls (give --onnx): it cannot be measured "
                                "on text (--images, --lines, --pages)")
        print("real text: skipped (not a rec, det or cls model with a 3-channel image input)")
        return []
    task = TaskRequest.from_args(args).load(info, target=target, model_dir=folder,
                                            static_width=w if info.kind == "rec" and w else None)
    report, failures = rewrite_check(before, after, task, target=target, onnx=args.onnx,
                                     progress=lambda m: print(m, file=sys.stderr))
    sys.stdout.write("".join(f"{line}\n" for line in report.render()))
    if not failures:
        print("verified on real text: what users see is unchanged")
    return failures
