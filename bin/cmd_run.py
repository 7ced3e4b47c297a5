"""``ncnnpass run IN.param IN.bin -o OUT.param OUT.bin``: load, (transform), and write a model."""

from __future__ import annotations

import argparse

from ncnnpass.ir import Graph

from .common import require_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="load a model, apply passes, write it back",
                       description="Load an ncnn model, apply passes (none by default), and write it atomically. "
                                   "The input files are never overwritten unless --overwrite is given.")
    p.add_argument("param", help="input .param")
    p.add_argument("bin", help="input .bin")
    p.add_argument("-o", "--output", nargs=2, metavar=("OUT.param", "OUT.bin"), required=True,
                   help="output .param and .bin")
    p.add_argument("--overwrite", action="store_true", help="allow writing over the input files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_file(args.param, "param file")
    require_file(args.bin, "bin file")
    g = Graph.load(args.param, args.bin)
    out_param, out_bin = args.output
    g.save(out_param, out_bin, overwrite=args.overwrite)
    print(f"wrote {out_param} and {out_bin} ({len(g.layers)} layers)")
    return 0
