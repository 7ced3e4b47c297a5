"""``ncnnpass paddle-config IN.yml -o OUT.yml``: seed 000's PaddleOCR config edits for center export."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "paddle-config",
        help="edit a PaddleOCR Distillation/MultiHead config for center export and CenterLoss training",
        description="Set return_feats: true on the CTC head of every (sub-)model, fill out_channels_list / "
                    "out_channels as PaddleOCR's tools/train.py does (from the dictionary size), and make "
                    "the Eval dataset a SimpleDataSet over the Train data_dir and label files. Comments "
                    "and anchors are kept (ruamel.yaml).",
    )
    p.add_argument("input", metavar="IN.yml")
    p.add_argument("-o", "--output", dest="out", required=True, metavar="OUT.yml")
    p.add_argument("--dict", metavar="FILE",
                   help="character dictionary (default: Global.character_dict_path, looked up relative to "
                        "the current directory and the config's parent directories)")
    p.add_argument("--overwrite", action="store_true", help="allow OUT.yml to be IN.yml")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.ir.fileio import refuse_overwrite
    from ncnnpass.passes.paddle.config import edit_config_file

    refuse_overwrite(args.out, [args.input, args.dict], args.overwrite)
    result = edit_config_file(args.input, args.out, dict_path=args.dict)
    err = sys.stderr
    print(f"paddle-config: {result.layout} config, CTC classes {result.char_num} (dictionary {result.dictionary}); "
          f"{len(result.edits)} edit(s)", file=err)
    for edit in result.edits:
        print(f"  {edit}", file=err)
    for note in result.notes:
        print(f"  note: {note}", file=err)
    print(f"wrote {args.out}", file=err)
    return 0
