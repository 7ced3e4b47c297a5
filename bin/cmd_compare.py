"""``ncnnpass compare MODEL.onnx MODEL.param [MODEL.bin]``: layer-by-layer precision forensics."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ncnnpass.ir.errors import NcnnpassError

from .common import add_target_option, default_bin, parse_shape, require_file, require_target
from .task_options import add_task_options

EXIT_TOLERANCE = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="compare an ONNX model and its ncnn conversion layer by layer, find where precision is lost",
        description="Run the ONNX model in onnxruntime (every intermediate tensor exposed) and the ncnn model "
                    "(every blob extracted) on the same input, map ncnn blobs to ONNX tensors, and report per layer "
                    "the cumulative error and the isolated error (the layer fed the onnxruntime tensors). Sweeps ncnn "
                    "option sets to attribute the loss, and names the ncnnpass passes that fix it (--fix applies "
                    "them and compares again). Progress goes to stderr.",
        epilog="exit status: 0 done, 1 error, 3 --max-error exceeded. Option sets: default, fp32 (fp16 "
               "storage/packed/arithmetic off), fp16-storage (fp16 arithmetic off), no-packing, no-sgemm-winograd, "
               "bf16, all (the default: every set on x86; default, fp16-storage and fp32 on --target arm, where one "
               "fp16 inference is emulated in ~13 s; default, fp16-storage, fp16-packed and fp32 on --target vulkan, "
               "which splits the GPU's loss into packing, storage and arithmetic), or your own as "
               "NAME:field=value,field=value (ncnn.Option fields). On the phone the advice points to 'ncnnpass run "
               "--pipeline repair --target arm'; on the GPU it names the masks valid there (31=1 stays on the GPU, "
               "31=23 leaves it) and the layers ncnn runs on the CPU for want of a Vulkan implementation.")
    p.add_argument("onnx", help="the ONNX model (the reference)")
    p.add_argument("param", help="the ncnn .param")
    p.add_argument("bin", nargs="?", help="the ncnn .bin (default: next to the .param)")
    p.add_argument("--input", metavar="IMAGE|NPY",
                   help="a text-line image (PaddleOCR rec preprocessing: height kept to H, [-1,1], right padding to W) "
                        "or a .npy array; default: seeded uniform random in [-1, 1]")
    p.add_argument("--shape", metavar="C,H,W", help="input shape without batch (default: from the model, or 3,48,320 "
                   "for a PaddleOCR recognition model with dynamic H/W)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random input, the built-in text and its calibration/held-out split (default 0)")
    p.add_argument("--options", nargs="+", metavar="SET",
                   help="ncnn option sets to sweep, space- or comma-separated (default: all); put it after the "
                        "model files")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON ('-' for stdout)")
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG of per-layer error (log scale) per option set")
    p.add_argument("--save", metavar="OUT.npz", help="save both sides' tensors (and the mapping) for offline comparison")
    p.add_argument("--fix", action="store_true", help="apply the advised passes to a copy and compare again")
    p.add_argument("-o", "--output", nargs=2, metavar=("OUT.param", "OUT.bin"),
                   help="with --fix: write the fixed model")
    p.add_argument("--brief", action="store_true", help="table: only rows around divergent layers and jumps")
    p.add_argument("--no-isolated", action="store_true", help="skip the isolated (per-layer) runs")
    p.add_argument("--threads", type=int, default=1, help="threads for ncnn and onnxruntime (default 1: stable timing)")
    p.add_argument("--divergence", type=float, metavar="FRACTION",
                   help="a layer diverges when its isolated error exceeds this fraction of its output range "
                        "(default 1e-5)")
    p.add_argument("--max-error", type=float, metavar="TOL",
                   help="exit with status 3 when the final max abs error under default options (after --fix, if "
                        "given) exceeds TOL")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    add_target_option(p, default="x86")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="worker processes for the isolated runs and the text lines on a worker target (default 2)")
    add_task_options(p, "(what users see: the ncnn model on x86, on --target, after --fix and after --repair, "
                        "each against onnxruntime with PaddleOCR's pre- and post-processing)",
                     "100 built-in, 4 on --target arm", "10 built-in, 1 on --target arm")
    p.add_argument("--no-task", action="store_true",
                   help="skip the real-text section (on by default for rec, det and cls models)")
    p.add_argument("--text-lines", type=int, nargs="?", const=8, default=0, metavar="N",
                   help="also render N clean Latin text lines (default 8) at the model's width and compare the decoded "
                        "strings and confidences of ncnn (x86, the --target, and after --fix) with onnxruntime's; "
                        "the real-text section then runs only when --images, --lines or --pages ask for it")
    p.add_argument("--repair", type=float, nargs="?", const=1e-3, metavar="TOL",
                   help="with --target arm or vulkan: also repair the model for the phone (a quick repair-for-target search "
                        "on a few built-in lines: strings identical, line confidence within TOL, default 1e-3; minutes "
                        "emulated) and measure it on the real text (and the --text-lines)")
    p.add_argument("--dict", metavar="FILE", help="the recognizer's dictionary (default: inference.yml or dictionary.txt "
                   "next to the ONNX, or its metadata 'character'); without one, strings are class-id sequences")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.passes.compare import compare_models
    from ncnnpass.passes.compare.output import plot_png, save_npz, write_json
    from ncnnpass.passes.compare.render import render_text

    require_file(args.onnx, "ONNX model")
    require_file(args.param, "param file")
    bin = args.bin
    if bin is None:
        bin = default_bin(args.param)
        if not os.path.exists(bin):
            raise NcnnpassError(f"no .bin given and {bin} does not exist")
    require_file(bin, "bin file")
    if args.input is not None:
        require_file(args.input, "input")
    if args.output and not args.fix:
        raise NcnnpassError("-o/--output writes the fixed model: it needs --fix")
    if args.dict is not None:
        require_file(args.dict, "dictionary")
    if args.text_lines < 0 or args.workers < 1:
        raise NcnnpassError("--text-lines and --workers take a positive number")
    asked = bool(args.images or args.lines or args.pages)
    if args.no_task and asked:
        raise NcnnpassError("--no-task skips the real-text section: --images, --lines and --pages do not apply")
    task_on = not args.no_task and (asked or not args.text_lines)
    if args.repair is not None and not (args.target.startswith("arm") or args.target == "vulkan"):
        raise NcnnpassError("--repair needs --target arm, arm-a57 or vulkan")
    if args.repair is not None and not (task_on or args.text_lines):
        raise NcnnpassError("--repair measures the repaired model on text: drop --no-task or add --text-lines")
    plan = _task_plan(args, asked) if task_on else None
    shape = parse_shape(args.shape) if args.shape else None
    require_target(args.target)
    start = time.perf_counter()

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - start:6.2f}s] {msg}", file=sys.stderr, flush=True)

    thresholds = {"divergence": args.divergence} if args.divergence else None
    report = compare_models(args.onnx, args.param, bin, input=args.input, shape=shape, seed=args.seed,
                            options=args.options, isolated=not args.no_isolated, fix=args.fix,
                            thresholds=thresholds, num_threads=args.threads, keep_tensors=bool(args.save),
                            progress=progress, target=args.target, workers=args.workers)
    models, notes = _ncnn_models(args, report, progress) if (args.text_lines or plan) else ([], [])
    if args.text_lines:
        report.text_lines = _text_lines(args, report, models, notes, progress)
    if plan is not None:
        report.task = _task(args, plan, report, models, notes, progress)
    if args.json == "-":
        import json

        json.dump(report.to_dict(), sys.stdout, indent=1, ensure_ascii=False)
        print()
    else:
        sys.stdout.write(render_text(report, brief=args.brief))
        if args.json:
            write_json(report, args.json)
            progress(f"wrote {args.json}")
    if args.save:
        save_npz(report, args.save)
        progress(f"wrote {args.save}")
    if args.plot:
        plot_png(report, args.plot)
        progress(f"wrote {args.plot}")
    if args.output and report.fixed is not None:
        fixed_graph = getattr(report.fixed, "graph", None)
        if fixed_graph is not None:
            fixed_graph.save(args.output[0], args.output[1])
            progress(f"wrote {args.output[0]} and {args.output[1]}")
    elif args.output:
        progress("nothing was fixed: no model written")
    progress(f"done in {time.perf_counter() - start:.1f}s")
    if report.text_lines is not None and args.json != "-":
        sys.stdout.write("\n" + "\n".join(report.text_lines.render()) + "\n")
    if report.task is not None and args.json != "-":
        sys.stdout.write("\n" + "\n".join(report.task.render()) + "\n")
    if args.max_error is not None:
        final = (report.fixed or report).default.final_max_abs
        if final > args.max_error:
            print(f"ncnnpass compare: final max abs error {final:.3g} exceeds --max-error {args.max_error:g}",
                  file=sys.stderr)
            return EXIT_TOLERANCE
    return 0


def _task_plan(args: argparse.Namespace, asked: bool):
    """(the real-text request, the model facts, the folder of its facts file), checked before anything runs;
    None when the model is not a rec, det or cls model and the user asked for nothing (no section)."""
    from ncnnpass.passes.measure.model_files import model_facts
    from ncnnpass.passes.measure.task_data import TaskRequest, count_for

    request = TaskRequest.from_args(args)
    request.check()
    info, folder = model_facts(args.onnx, args.dict)
    if info.kind not in ("rec", "det", "cls"):
        if asked:
            raise NcnnpassError(f"{args.onnx}: cannot tell whether the model is rec, det or cls, so it cannot be "
                                "measured on text (--images, --lines, --pages)")
        return None
    count_for(info.kind, args.lines, args.pages)
    return request, info, folder


def _ncnn_models(args: argparse.Namespace, report, progress):
    """The ncnn models the text is run through: the original on x86 and on --target, the --fix result on
    --target, the phone repair (--repair) on --target; and notes (what the repair did)."""
    from ncnnpass.ir import Graph
    from ncnnpass.passes.compare.text_lines import LineModel

    graph = getattr(report, "graph", None) or Graph.load(report.param, report.bin)
    models = [LineModel("x86", graph, "x86")]
    if args.target != "x86":
        models.append(LineModel(args.target, graph, args.target))
    fixed = getattr(report.fixed, "graph", None) if report.fixed is not None else None
    if fixed is not None:
        models.append(LineModel(f"{args.target} after --fix", fixed, args.target))
    notes = []
    if args.repair is not None:
        from ncnnpass.passes.precision import repair_for_phone

        shape = tuple(int(d) for d in report.input.array.shape[1:])
        progress(f"repairing for the phone (tolerance {args.repair:g}) on {args.target}")
        res = repair_for_phone(graph, shape, tolerance=args.repair, target=args.target, reference=args.onnx,
                               workers=args.workers, progress=progress)
        notes.append("phone repair: " + res.summary())
        models.append(LineModel(f"{args.target} after repair", res.graph, args.target))
    return models, notes


def _task(args: argparse.Namespace, plan, report, models, notes, progress):
    """The real-text section: every ncnn model against onnxruntime on the built-in data or --images."""
    from ncnnpass.passes.compare.inputs import _ncnn_input_shape
    from ncnnpass.passes.measure.task_eval import Side, evaluate

    request, info, folder = plan
    declared = _ncnn_input_shape(models[0].graph)
    static = declared[2] if info.kind == "rec" and declared is not None and len(declared) == 3 else None
    if static is None and info.kind == "rec" and info.dynamic[1]:
        from ncnnpass.passes.measure.dynamic_sizes import runs_at_other_widths

        if not runs_at_other_widths(models[0].graph, tuple(info.input_shape)):
            static = int(info.input_shape[2])  # converted for one width: the lines are fitted to it
            progress(f"the ncnn model runs at width {static} only (its Reshapes are sized for it): "
                     f"lines fitted to that width")
    task = request.load(info, target=args.target, model_dir=folder, static_width=static)
    progress("real text: " + "; ".join(task.describe()))
    sides = [Side.onnxruntime(args.onnx)] + [Side(m.label, graph=m.graph, target=m.target, options=m.options)
                                             for m in models]
    rep = evaluate(task, sides, workers=args.workers, progress=progress)
    rep.notes.extend(notes)
    if static is not None:
        rep.notes.append(f"the ncnn model declares width {static}: lines were fitted to it (PaddleOCR feeds a "
                         "width-dynamic model each line at its own width)")
    return rep


def _text_lines(args: argparse.Namespace, report, models, notes, progress):
    """Decoded strings on rendered lines: the original model on x86 and on --target, the fixed one on --target."""
    from ncnnpass.passes.compare.text_lines import text_lines
    from ncnnpass.passes.measure.ctc_decode import read_dictionary

    shape = tuple(int(d) for d in report.input.array.shape[1:])
    if len(shape) != 3:
        raise NcnnpassError(f"--text-lines needs an image model (C,H,W input), not {shape}")
    dictionary = read_dictionary(args.dict) if args.dict else None
    rep = text_lines(args.onnx, models, args.text_lines, shape=shape, seed=args.seed, dictionary=dictionary,
                     workers=args.workers, progress=progress)
    rep.notes.extend(notes)
    return rep
