"""``ncnnpass run IN.param IN.bin -o OUT.param OUT.bin [--passes a,b | --pipeline NAME] [--verify]``."""

from __future__ import annotations

import argparse
import sys

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError

from .common import add_target_option, add_task_options, check_run_args, run_input_shape, target_scope

HELP = ("Load an ncnn model, apply passes (none by default), and write it atomically. The input files are never "
        "overwritten unless --overwrite is given. With --verify the model runs before and after in ncnn "
        "(fp32-only options, the same seeded inputs) and nothing is written when an output changes beyond "
        "--tolerance. ncnn runs in a worker process (--target isolated) unless told otherwise; on --target arm "
        "the written model must run on the emulated phone CPU without NaN/Inf, and --pipeline repair (or "
        "optimize) ends with repair-for-target: the few layers kept out of fp16 so the phone stays within "
        "--tolerance (default 1e-3) of --onnx (default: this model on x86, fp32). --verify also runs real text "
        "(the built-in held-out lines or pages, or --images) through the model before and after, fp32 options on the "
        "target, PaddleOCR's pre- and post-processing, and refuses to write when a string, a drop_score decision "
        "or a cls label changes or the det F falls below 0.99; with --onnx both are also measured against "
        "onnxruntime under the target's default options.")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="load a model, apply passes, write it back", description=HELP)
    p.add_argument("param", help="input .param")
    p.add_argument("bin", help="input .bin")
    p.add_argument("-o", "--output", nargs=2, metavar=("OUT.param", "OUT.bin"), required=True)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--passes", metavar="A,B", help="passes to apply, e.g. gap-fc-to-conv,keep-fp32[types=Gemm]")
    which.add_argument("--pipeline", metavar="NAME", help="a named pipeline: repair or optimize")
    p.add_argument("--verify", action="store_true", help="compare outputs before/after, refuse beyond --tolerance")
    p.add_argument("--shape", action="append", metavar="[BLOB:]C,H,W",
                   help="input shape (repeat per input); default: the Input layers' sizes, else --onnx's")
    p.add_argument("--tolerance", type=float, default=None, metavar="X",
                   help="--verify: largest output change, absolute up to magnitude 1, relative above (default "
                        "1e-4); --pipeline repair --target arm: the phone error to reach (default 1e-3)")
    p.add_argument("--onnx", metavar="MODEL.onnx",
                   help="the reference of repair-for-target (--target arm); with --verify: the model's facts (kind, "
                        "dictionary) and the real-text rows against onnxruntime")
    p.add_argument("--seed", type=int, default=0, help="seed of the random [-1,1] verification inputs")
    p.add_argument("--verify-each", action="store_true", help="run the IR verifier after every pass")
    p.add_argument("--fold-storage", choices=("fp32", "keep"), default="fp32",
                   help="storage of weights computed by folding: fp32 (exact, default) or keep fp16/bf16")
    p.add_argument("--overwrite", action="store_true", help="allow writing over the input files")
    add_target_option(p)
    add_task_options(p, "with --verify (before vs after, and each vs --onnx)", "100 built-in, 4 on --target arm; "
                     "rec lines fitted to the verified input width", "10 built-in, 1 on --target arm")
    p.add_argument("--dict", metavar="FILE", help="with --verify: the recognizer's dictionary (default: --onnx's "
                   "facts; without one, strings are compared as class-id sequences)")
    p.add_argument("--no-task", action="store_true", help="with --verify: skip the real-text check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.passes import apply_passes, resolve_passes
    from ncnnpass.passes.measure.verify import DEFAULT_TOLERANCE, check_before_write
    from ncnnpass.passes.pipelines import PIPELINES, pipeline_passes, targets_repair

    with target_scope(args) as target:
        phone = targets_repair(target) and args.pipeline in ("repair", "optimize")
        spec = check_run_args(args, phone)
        g = Graph.load(args.param, args.bin)
        shape = run_input_shape(args, g)
        if spec in PIPELINES:
            passes = pipeline_passes(spec, target=target, tolerance=args.tolerance, reference=args.onnx)
        else:
            passes = resolve_passes(spec) if spec is not None else []
        before = g.copy() if args.verify else None
        if spec is not None:
            print(apply_passes(g, passes, input_shape=shape, fold_storage=args.fold_storage,
                               verify_each=args.verify_each or None, progress=lambda m: print(m, file=sys.stderr)))
            problems = g.check()
            if problems:
                raise NcnnpassError(f"the rewritten graph is invalid: {problems[0]}")
        gate = DEFAULT_TOLERANCE if args.tolerance is None or phone else args.tolerance
        check = check_before_write(before, g, shape, target=target, seed=args.seed, tolerance=gate,
                                   checked_on_target=phone)
        sys.stdout.write("".join(f"{line}\n" for line in check.lines))
        if check.refusal:
            print(f"ncnnpass run: refusing to write {args.output[0]}: {check.refusal}", file=sys.stderr)
            return 1
        if before is not None and not args.no_task:
            failures = _task_check(args, before, g, shape, target)
            if failures:
                print(f"ncnnpass run: refusing to write {args.output[0]}: on real text the rewrite changes what "
                      f"users see: {'; '.join(failures)}", file=sys.stderr)
                return 1
        g.save(*args.output, overwrite=args.overwrite)
        print(f"wrote {args.output[0]} and {args.output[1]} ({len(g.layers)} layers)")
    return 0


def _task_check(args: argparse.Namespace, before: Graph, after: Graph, shape, target: str) -> list[str]:
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
