"""``ncnnpass ctc-feats IN.onnx -o OUT.onnx``: add the CTC head's features and logits as outputs."""

from __future__ import annotations

import argparse
import sys

from ncnnpass.ir.fileio import atomic_write, refuse_overwrite


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ctc-feats",
        help="expose a PaddleOCR CTC head's features (N x T x C) and logits as ONNX graph outputs",
        description="Find MatMul [+ Add] -> Softmax -> graph output in a PaddleOCR recognition ONNX and add "
                    "the MatMul's input (what CTCHead(return_feats=True) returns as features) and the "
                    "pre-softmax logits as extra outputs. The original output stays first and unchanged.",
    )
    p.add_argument("input", metavar="IN.onnx", help="recognition model exported from PaddleOCR")
    p.add_argument("-o", "--output", dest="out", required=True, metavar="OUT.onnx")
    p.add_argument("--probs", metavar="NAME",
                   help="the graph output (CTC softmax) to use when the graph has several")
    p.add_argument("--overwrite", action="store_true", help="allow OUT.onnx to be the input file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.passes.onnx.ctc_feats import add_ctc_feats, load_onnx

    refuse_overwrite(args.out, [args.input], args.overwrite)
    result = add_ctc_feats(load_onnx(args.input), output=args.probs)
    atomic_write(args.out, result.model.SerializeToString())
    head = result.head
    mid = f", after a first FC of {head.mid_channels} (mid_channels)" if head.mid_channels else ""
    print(f"{args.out}: outputs {result.probs} (unchanged), {result.feats} [N,T,{head.feat_dim}] "
          f"= input of {head.matmul}{mid}, {result.logits} [N,T,{head.num_classes}]", file=sys.stderr)
    return 0
