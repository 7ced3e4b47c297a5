"""``ncnnpass run IN.param IN.bin -o OUT.param OUT.bin [--passes a,b | --pipeline NAME] [--verify]``."""

from __future__ import annotations

import argparse
import sys

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError

from .common import add_paths_option, add_target_option, check_run_args, run_input_shape, target_scope
from .task_options import add_task_options, task_refusal

HELP = ("Load an ncnn model, apply passes (none by default), write it atomically (inputs never overwritten unless "
        "--overwrite). --verify runs it before and after in ncnn (fp32, seeded inputs, then real text) and refuses to "
        "write on a change beyond --tolerance or in what users see. On --target arm or vulkan, --pipeline repair or "
        "optimize ends with repair-for-target (most MACs in fp16 with strings, confidence within --tolerance and boxes "
        "kept on held-out text; Pareto curve in OUT.pareto.json/.png). Files with featmask bits must run on --paths.")


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
                        "1e-4); --pipeline repair --target arm|vulkan: the line-confidence change allowed (default 5e-3)")
    p.add_argument("--onnx", metavar="MODEL.onnx", help="the reference of repair-for-target; with --verify: the "
                   "model's facts (kind, dictionary) and the real-text rows against onnxruntime")
    p.add_argument("--seed", type=int, default=0, help="seed of the random [-1,1] verification inputs")
    p.add_argument("--verify-each", action="store_true", help="run the IR verifier after every pass")
    p.add_argument("--fold-storage", choices=("fp32", "keep"), default="fp32",
                   help="storage of weights computed by folding: fp32 (exact, default) or keep fp16/bf16")
    p.add_argument("--overwrite", action="store_true", help="allow writing over the input files")
    add_target_option(p)
    add_paths_option(p)
    add_task_options(p, "with --verify (before vs after, and each vs --onnx)", "100 built-in, 4 on --target arm",
                     "10 built-in, 1 on --target arm", no_task="with --verify: skip the real-text check",
                     dictionary="with --verify: the recognizer's dictionary (default: --onnx's facts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.passes import apply_passes, resolve_passes
    from ncnnpass.passes.measure.verify import DEFAULT_TOLERANCE, check_before_write
    from ncnnpass.passes.pipelines import PIPELINES, pipeline_passes, targets_repair

    with target_scope(args) as target:
        phone = targets_repair(target) and args.pipeline in ("repair", "optimize")
        spec = check_run_args(args, phone, target)
        g = Graph.load(args.param, args.bin)
        passes = (pipeline_passes(spec, target=target, tolerance=args.tolerance, reference=args.onnx,
                                  curve=args.output[0].removesuffix(".param") + ".pareto")
                  if spec in PIPELINES else resolve_passes(spec) if spec is not None else [])
        shape = run_input_shape(args, g, passes)
        before = g.copy() if args.verify else None
        if spec is not None:
            print(apply_passes(g, passes, input_shape=shape, fold_storage=args.fold_storage,
                               verify_each=args.verify_each or None, progress=lambda m: print(m, file=sys.stderr)))
            if g.check():
                raise NcnnpassError(f"the rewritten graph is invalid: {g.check()[0]}")
        gate = DEFAULT_TOLERANCE if args.tolerance is None or phone else args.tolerance
        check = check_before_write(before, g, shape, target=target, seed=args.seed, tolerance=gate,
                                   checked_on_target=phone, paths=args.paths,
                                   progress=lambda m: print(f"ncnnpass: {m}", file=sys.stderr, flush=True))
        sys.stdout.write("".join(f"{line}\n" for line in check.lines))
        refusal = check.refusal or task_refusal(args, before, g, shape, target)
        if refusal:
            print(f"ncnnpass run: refusing to write {args.output[0]}: {refusal}", file=sys.stderr)
            return 1
        g.save(*args.output, overwrite=args.overwrite)
        print(f"wrote {args.output[0]} and {args.output[1]} ({len(g.layers)} layers)")
    return 0
