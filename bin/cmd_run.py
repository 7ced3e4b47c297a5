"""``ncnnpass run IN.param IN.bin -o OUT.param OUT.bin [--passes a,b | --pipeline NAME] [--verify]``."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.targets import describe_target

from .common import add_target_option, require_file, target_scope


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="load a model, apply passes, write it back",
                       description="Load an ncnn model, apply passes (none by default), and write it atomically. "
                                   "The input files are never overwritten unless --overwrite is given. With "
                                   "--verify the model runs before and after in ncnn (fp32-only options, the same "
                                   "seeded inputs) and nothing is written when an output changes beyond "
                                   "--tolerance. ncnn runs in a worker process (--target isolated) unless told "
                                   "otherwise; with --target arm the check runs on the emulated phone CPU and "
                                   "also prints the phone error (ncnn default options against fp32); "
                                   "--pipeline repair --target arm also searches the few layers to keep out of "
                                   "fp16 so the emulated phone stays within --tolerance (default 1e-3).")
    p.add_argument("param", help="input .param")
    p.add_argument("bin", help="input .bin")
    p.add_argument("-o", "--output", nargs=2, metavar=("OUT.param", "OUT.bin"), required=True,
                   help="output .param and .bin")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--passes", metavar="A,B", help="passes to apply, e.g. gap-fc-to-conv,keep-fp32[types=Gemm]")
    which.add_argument("--pipeline", metavar="NAME", help="a named pipeline: repair or optimize")
    p.add_argument("--verify", action="store_true",
                   help="compare outputs before/after in ncnn and refuse to write beyond --tolerance")
    p.add_argument("--shape", action="append", metavar="[BLOB:]C,H,W",
                   help="input shape for --verify and shape-dependent passes (repeat per input); "
                        "default: the sizes the Input layers declare")
    p.add_argument("--tolerance", type=float, default=None, metavar="X",
                   help="largest accepted output change: absolute, or relative for outputs larger than 1 "
                        "(default 1e-4); with --pipeline repair --target arm: the phone error to reach "
                        "(default 1e-3)")
    p.add_argument("--onnx", metavar="MODEL.onnx",
                   help="with --pipeline repair --target arm: measure the phone error against onnxruntime on "
                        "this model (default: the same ncnn model on this machine with fp16 off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random [-1,1] verification inputs")
    p.add_argument("--verify-each", action="store_true",
                   help="run the IR verifier after every pass and stop naming the pass that broke the graph "
                        "(structure, Split records, names, weights, copy and save/load round trip)")
    p.add_argument("--fold-storage", choices=("fp32", "keep"), default="fp32",
                   help="storage of weights computed by folding: fp32 (exact, default) or keep fp16/bf16")
    p.add_argument("--overwrite", action="store_true", help="allow writing over the input files")
    add_target_option(p)
    p.set_defaults(func=run)


def _shapes(values: list[str] | None) -> tuple[int, ...] | dict[str, tuple[int, ...]] | None:
    from ncnnpass.passes.engine.shapes import shapes_from_cli

    return shapes_from_cli(values)


def _phone_repair(g: Graph, shape, args: argparse.Namespace, target: str) -> Graph:
    """The phone repair search (``ncnnpass.passes.precision``) on the emulated target; refuses when even
    every layer in fp32 misses the tolerance."""
    from ncnnpass.passes.engine.shapes import normalize_input_shapes
    from ncnnpass.passes.precision.phone_repair import DEFAULT_TOLERANCE, repair_for_phone

    shapes = normalize_input_shapes(g, shape, required=True)
    if len(shapes) != 1:
        raise NcnnpassError(f"the phone repair needs a single-input model (this one has {', '.join(shapes)})")
    tol = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    res = repair_for_phone(g, next(iter(shapes.values())), tolerance=tol, target=target, reference=args.onnx,
                           progress=lambda msg: print(msg, file=sys.stderr))
    print(f"phone repair: {res.summary()}")
    if res.layers_marked:
        print("kept out of fp16: " + ", ".join(res.layers_marked))
    if not res.reached:
        raise NcnnpassError(f"the phone error stays above {tol:g} on {describe_target(target)} "
                            f"({res.error_after:.3g}, held-out {res.heldout_error:.3g}) even with "
                            f"{len(res.layers_marked)} layers in fp32; nothing written")
    return res.graph


def _runs_cleanly(g: Graph, shape, target: str, seed: int) -> None:
    """Every model written with an ARM target has run there (default options) without crash or NaN/Inf."""
    from ncnnpass.ir import runtime
    from ncnnpass.passes.verify import input_shapes_for, make_inputs

    outs = runtime.run(g, make_inputs(input_shapes_for(g, shape), seed), list(g.outputs), options="default",
                       target=target)
    bad = [name for name, arr in outs.items() if not np.all(np.isfinite(arr))]
    if bad:
        raise NcnnpassError(f"output {bad[0]!r} is NaN/Inf on {describe_target(target)} under default options; "
                            f"nothing written")


def run(args: argparse.Namespace) -> int:
    with target_scope(args) as target:
        return _run(args, target)


def _run(args: argparse.Namespace, target: str) -> int:
    from ncnnpass.passes.verify import DEFAULT_TOLERANCE

    require_file(args.param, "param file")
    require_file(args.bin, "bin file")
    g = Graph.load(args.param, args.bin)
    out_param, out_bin = args.output
    shape = _shapes(args.shape)
    phone = target.startswith("arm") and args.pipeline in ("repair", "optimize")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None or phone else args.tolerance
    if args.tolerance is not None and not (args.verify or phone):
        raise NcnnpassError("--tolerance only applies with --verify or with --pipeline repair --target arm")
    if args.onnx is not None and not phone:
        raise NcnnpassError("--onnx only applies with --pipeline repair (or optimize) --target arm")
    if args.onnx is not None:
        require_file(args.onnx, "ONNX model")
    spec = args.pipeline if args.pipeline is not None else args.passes
    if args.verify_each and spec is None:
        raise NcnnpassError("--verify-each only applies with --passes or --pipeline")
    before = None
    checked_on_target = phone  # the phone repair ran its result on the target
    if spec is not None:
        from ncnnpass.passes import apply_passes

        if args.verify:
            before = g.copy()
        report = apply_passes(g, spec, input_shape=shape, fold_storage=args.fold_storage,
                              verify_each=args.verify_each or None)
        print(report)
        problems = g.check()
        if problems:
            raise NcnnpassError(f"the rewritten graph is invalid: {problems[0]}")
        if phone:
            g = _phone_repair(g, shape, args, target)
    elif args.verify:
        before = g.copy()
    if before is not None:
        from ncnnpass.passes.verify import verify

        result = verify(before, g, shape, options="fp32", seed=args.seed, target=target)
        print(result)
        if target.startswith("arm"):
            from ncnnpass.passes.verify import phone_error

            was, now = phone_error(before, g, shape, seed=args.seed, target=target, reference=result.reference)
            checked_on_target = True
            print(f"phone error on {describe_target(target)}, ncnn default options vs fp32: "
                  f"before {was.max_abs:.3e}, after {now.max_abs:.3e} (max abs)")
        if target.startswith("arm") and not np.isfinite(now.max_abs):
            raise NcnnpassError(f"the rewritten model returns NaN/Inf on {describe_target(target)} under "
                                f"default options; nothing written")
        if not result.ok(tolerance):
            worst = max(result.outputs.values(), key=lambda d: d.error)
            print(f"ncnnpass run: refusing to write {out_param}: output {worst.name!r} changed by "
                  f"{worst.max_abs:.3g} (rel {worst.max_rel:.3g}) > tolerance {tolerance:g}", file=sys.stderr)
            return 1
        print(f"verified: max abs {result.max_abs:.3e}, max rel {result.max_rel:.3e} <= tolerance {tolerance:g}")
    if target.startswith("arm") and not checked_on_target:
        _runs_cleanly(g, shape, target, args.seed)
    g.save(out_param, out_bin, overwrite=args.overwrite)
    print(f"wrote {out_param} and {out_bin} ({len(g.layers)} layers)")
    return 0
