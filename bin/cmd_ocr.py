"""``ncnnpass ocr [IMAGES] --det D --rec R [--cls C] [--target T] [-o OUTDIR]``: end to end, ncnn vs onnxruntime."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ncnnpass.ir.errors import NcnnpassError

from .common import add_target_option

EXIT_DIFFERS = 3
MODEL_HELP = ("a `ncnnpass convert` output directory (model.onnx + model.ncnn.param/.bin, its inference.yml and "
              "dictionary.txt) or MODEL.onnx,MODEL.param[,MODEL.bin]")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ocr", help="read pages end to end (det → crop → cls → rec) through ncnn and through onnxruntime, show what differs",
        description="Run PaddleOCR's whole pipeline twice on each page: the ONNX models in onnxruntime (the reference) "
                    "and the ncnn models on --target. Each side detects its own boxes (DetResizeForTest, DB "
                    "post-processing), sorts them in reading order, cuts each line (rotate-crop), turns it by 180° "
                    "when the classifier says so with a score above 0.9, recognises it at its own width and keeps it "
                    "when its confidence reaches 0.5 (drop_score). Reports per page the strings that differ and the "
                    "lines only one side has, the end-to-end agreement over all pages, and, with -o, ocr.json and an "
                    "annotated PNG of each page that differs (both sides' boxes and strings, side by side).",
        epilog="exit status: 0 done, 1 error, 3 --strict and some page differs. Models: " + MODEL_HELP + ".")
    p.add_argument("images", nargs="?", metavar="IMAGES",
                   help="an image, an image folder or a PaddleOCR det label file (path<TAB>[{transcription, points}]: "
                        "end-to-end accuracy against the labels too); default: the built-in held-out pages")
    p.add_argument("--det", required=True, metavar="MODEL", help="the text detector: " + MODEL_HELP)
    p.add_argument("--rec", required=True, metavar="MODEL", help="the text recogniser (same forms)")
    p.add_argument("--cls", metavar="MODEL", help="the text direction classifier (same forms; default: none)")
    p.add_argument("--dict", metavar="FILE", help="the recogniser's dictionary (default: from its facts)")
    p.add_argument("--pages", type=int, metavar="N",
                   help="built-in pages to read when no IMAGES are given (default 10; 1 on --target arm), or the "
                        "first N of IMAGES")
    p.add_argument("--seed", type=int, default=0, help="seed of the built-in pages and their split (default 0)")
    p.add_argument("--options", default="default", metavar="SET",
                   help="ncnn option preset of the ncnn side (default: ncnn's defaults, as an app runs it)")
    add_target_option(p, default="x86")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="parallel workers on a worker target (one page per job; default 2)")
    p.add_argument("-o", "--outdir", metavar="OUTDIR", help="write ocr.json and the annotated PNGs here")
    p.add_argument("--annotate-all", action="store_true", help="with -o: a PNG for every page, not only those that differ")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON ('-' for stdout)")
    p.add_argument("--strict", action="store_true", help="exit with status 3 when any page differs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.ir.fileio import atomic_write
    from ncnnpass.ir.runtime.options import OPTION_PRESETS
    from ncnnpass.passes.compare.ocr import OcrModels, ocr_compare
    from ncnnpass.passes.measure.model_files import model_files
    from ncnnpass.passes.measure.task_data import builtin_part, choose_part, default_count

    if args.pages is not None and args.pages < 1:
        raise NcnnpassError(f"--pages takes a positive number, got {args.pages}")
    if args.workers < 1:
        raise NcnnpassError(f"--workers takes a positive number, got {args.workers}")
    if args.options not in OPTION_PRESETS:
        raise NcnnpassError(f"unknown option set {args.options!r} (one of {', '.join(OPTION_PRESETS)})")
    if args.annotate_all and not args.outdir:
        raise NcnnpassError("--annotate-all writes PNGs: it needs -o OUTDIR")
    start = time.perf_counter()

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    det = model_files(args.det, "det")
    rec = model_files(args.rec, "rec", args.dict)
    cls = model_files(args.cls, "cls") if args.cls else None
    models = OcrModels.of(det, rec, cls)
    if models.characters is None:
        progress("warning: the recogniser's dictionary does not fit its outputs (or there is none): strings are "
                 "class ids (give --dict)")
    if args.images is not None:
        from ncnnpass.passes.measure.image_sources import load_images

        data = load_images(args.images)
        pages = choose_part(data, "all", count=args.pages)
    else:
        data = builtin_part("det", args.pages or default_count("det", args.target), seed=args.seed,
                            dictionary=rec.info.dictionary)  # text the recogniser can spell
        pages = data.samples
    what = data.describe() + (f"; the first {len(pages)}" if len(pages) < len(data.samples) else "")
    progress(f"reading {what}")
    coverage = None
    if rec.info.dictionary and any(s.boxes for s in pages):
        from ncnnpass.passes.measure.label_coverage import label_coverage

        coverage = label_coverage(pages, rec.info.dictionary)
    report = ocr_compare(pages, models, target=args.target, options=args.options, workers=args.workers,
                         progress=progress, data=what)
    doc = report.to_dict()
    if coverage is not None and not coverage.complete:
        doc["labels_outside_dictionary"] = coverage.describe()
    doc["models"] = {role: {"onnx": str(m.onnx), "param": str(m.param), "bin": str(m.bin), "facts": m.info.describe()}
                     for role, m in (("det", det), ("rec", rec), ("cls", cls)) if m is not None}
    if args.json == "-":
        json.dump(doc, sys.stdout, indent=1, ensure_ascii=False)
        print()
    else:
        sys.stdout.write("".join(f"{line}\n" for line in report.render()))
        if "labels_outside_dictionary" in doc:
            print(f"  data: {doc['labels_outside_dictionary']}")
        if args.json:
            atomic_write(args.json, json.dumps(doc, indent=1, ensure_ascii=False))
            progress(f"wrote {args.json}")
    if args.outdir:
        from pathlib import Path

        from ncnnpass.passes.compare.ocr_draw import write_annotations

        out = Path(args.outdir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "ocr.json", json.dumps(doc, indent=1, ensure_ascii=False))
        pngs = write_annotations(report, out, only_differing=not args.annotate_all)
        msg = f"wrote {out / 'ocr.json'} and {len(pngs)} annotated page(s)"
        if args.json == "-":
            progress(msg)
        else:
            print(msg)
    progress(f"done in {time.perf_counter() - start:.1f}s")
    return EXIT_DIFFERS if args.strict and any(p.differs for p in report.pages) else 0
