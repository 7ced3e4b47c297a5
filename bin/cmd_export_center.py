"""``ncnnpass export-center``: PaddleOCR character centers (``train_center.pkl``) from an exported model."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

LISTED = 10  # problems printed before "... and N more"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-center",
        help="compute CenterLoss character centers (train_center.pkl) like PaddleOCR's export_center.py",
        description="Run a PaddleOCR recognition model (ONNX file, or Paddle inference directory in the legacy "
                    "inference.pdmodel or the PaddleOCR 3.x inference.json form, converted to ONNX first) over "
                    "labelled training images; for every exactly recognized sample, average the CTC "
                    "head's features per per-frame argmax class (blank included). Writes a pickle "
                    "{class index: float32[feat_dim]} for CenterLoss center_file_path and a JSON "
                    "sidecar. Features are inference-mode (BatchNorm running statistics), unlike "
                    "PaddleOCR's script which runs the model in training mode.",
    )
    p.add_argument("model", metavar="MODEL", help="recognition ONNX, or a Paddle inference directory")
    p.add_argument("--label-file", action="append", required=True, metavar="FILE",
                   help="PaddleOCR label file (path<TAB>label per line); repeat for several")
    p.add_argument("--data-dir", required=True, metavar="DIR", help="directory the label paths are relative to")
    p.add_argument("--dict", metavar="FILE",
                   help="character dictionary (default: the ONNX metadata key 'character', or for a Paddle "
                        "directory PostProcess.character_dict in inference.yml / config.json)")
    p.add_argument("--image-shape", metavar="C,H,W",
                   help="RecResizeImg image_shape (default: the model's static dims, else the export's "
                        "inference.yml RecResizeImg for a Paddle directory, else 3,48,320)")
    p.add_argument("--eval-mode", action="store_true",
                   help="RecResizeImg eval_mode: long lines widen the input instead of being squeezed")
    p.add_argument("--use-space-char", action=argparse.BooleanOptionalAction, default=None,
                   help="dictionary + space (default: inferred from the model's class count)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--max-text-length", type=int, metavar="N",
                   help="skip labels longer than N, as PaddleOCR's label encoder does (Global.max_text_length)")
    p.add_argument("--allow-outside-data-dir", action="store_true",
                   help="follow label paths that are absolute or leave --data-dir (they are reported anyway)")
    p.add_argument("--shard", metavar="I/N",
                   help="process the I-th of N parts (0-based) and write partial sums to OUT.npz; "
                        "combine with 'ncnnpass merge-centers'")
    p.add_argument("--providers", metavar="LIST",
                   help="onnxruntime execution providers, comma separated (default CPUExecutionProvider); "
                        "one process per GPU: set CUDA_VISIBLE_DEVICES per process")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="image decoding threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("-o", "--output", dest="out", required=True, metavar="OUT",
                   help="train_center.pkl (with --shard: a .npz of partial sums)")
    p.set_defaults(func=run)


def print_list(title: str, items: list[Any], where: str, stream: TextIO | None = None) -> None:
    if not items:
        return
    stream = stream or sys.stderr
    print(f"  {title} ({len(items)}):", file=stream)
    for item in items[:LISTED]:
        print(f"    {item}", file=stream)
    if len(items) > LISTED:
        print(f"    ... and {len(items) - LISTED} more (listed in {where})", file=stream)


def describe_classes(info: dict[str, Any]) -> str:
    space = " + space" if info["use_space_char"] else ""
    inferred = " (use_space_char inferred from the model)" if info.get("use_space_char_inferred") else ""
    return (f"feat_dim {info['feat_dim']}, num_classes {info['num_classes']} = {info['dictionary_size']} "
            f"dictionary entries ({info['dictionary_source']}) + blank{space}{inferred}")


def run(args: argparse.Namespace) -> int:
    from ncnnpass.ir.fileio import refuse_overwrite
    from ncnnpass.passes.measure.rec_preprocess import parse_image_shape
    from ncnnpass.passes.paddle.centers import CenterDataError, CenterOptions, export_centers, parse_shard

    if args.batch_size < 1:
        raise CenterDataError("--batch-size must be at least 1")
    refuse_overwrite(args.out, [args.model, args.dict, *args.label_file], False)
    opts = CenterOptions(
        image_shape=parse_image_shape(args.image_shape) if args.image_shape else None,
        eval_mode=args.eval_mode, use_space_char=args.use_space_char, batch_size=args.batch_size,
        max_text_length=args.max_text_length, allow_outside_data_dir=args.allow_outside_data_dir,
        shard=parse_shard(args.shard) if args.shard else None,
        providers=[p.strip() for p in args.providers.split(",")] if args.providers else None,
        workers=max(0, args.workers),
    )
    result = export_centers(args.model, args.label_file, args.data_dir, args.out, dict_path=args.dict,
                            options=opts, progress=not args.no_progress)
    err = sys.stderr
    st = result.stats()
    shard = f" (shard {args.shard} of {st['samples_total']} samples)" if args.shard else ""
    print(f"export-center: {st['samples_used']}/{st['samples']} samples used{shard}; "
          f"{st['samples_misrecognized']} recognized differently, {st['images_unreadable']} unreadable; "
          f"{st['classes_covered']}/{result.info['num_classes']} classes covered by {st['frames']} frames "
          f"in {st['seconds']:.1f}s", file=err)
    print(f"  {describe_classes(result.info)}", file=err)
    if result.info.get("mid_channels"):
        print(f"  features: output of the first FC (mid_channels {result.info['mid_channels']})", file=err)
    if st["labels_with_unknown_chars"]:
        print(f"  {st['labels_with_unknown_chars']} labels contain characters outside the dictionary "
              "(dropped before comparing, as PaddleOCR's label encoder does)", file=err)
    side = args.out if args.shard else args.out + ".json"
    print_list("unreadable images", [f"{p}: {r}" for p, r in result.unreadable], side)
    print_list("label problems (skipped)", [str(p) for p in result.label_problems], side)
    if args.shard:
        print(f"wrote partial sums {args.out}; combine all shards with: ncnnpass merge-centers "
              f"SHARDS... -o train_center.pkl", file=err)
    else:
        print(f"wrote {args.out} and {args.out}.json (CenterLoss: num_classes {result.info['num_classes']}, "
              f"feat_dim {result.info['feat_dim']}, center_file_path {args.out})", file=err)
    return 0
