"""``ncnnpass merge-centers SHARD.npz... -o train_center.pkl``: combine ``export-center --shard`` parts."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge-centers",
        help="combine partial sums from 'export-center --shard I/N' into train_center.pkl",
        description="Sum the float64 partial sums and counts of all shards (checking that they come from "
                    "the same model, dictionary, options and label files, and that none is missing or "
                    "repeated) and write the centers pickle and its JSON sidecar.",
    )
    p.add_argument("shards", nargs="+", metavar="SHARD.npz")
    p.add_argument("--allow-partial", action="store_true", help="merge even if some shards are missing")
    p.add_argument("-o", "--output", dest="out", required=True, metavar="train_center.pkl")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.cli.cmd_export_center import describe_classes, print_list
    from ncnnpass.ir.fileio import refuse_overwrite
    from ncnnpass.passes.paddle.center_files import write_centers
    from ncnnpass.passes.paddle.center_shards import merge_shards

    refuse_overwrite(args.out, list(args.shards), False)
    merged = merge_shards(args.shards, allow_partial=args.allow_partial)
    write_centers(args.out, merged.sums, merged.info, merged.stats, merged.unreadable, merged.problems,
                  merged.characters)
    st, err = merged.stats, sys.stderr
    print(f"merge-centers: {len(args.shards)}/{merged.shards} shards; {st['samples_used']}/"
          f"{st['samples_total']} samples used; {st['classes_covered']}/{merged.info['num_classes']} classes "
          f"covered by {st['frames']} frames", file=err)
    if merged.missing:
        print(f"  missing shards: {', '.join(str(i) for i in merged.missing)} (merged anyway: --allow-partial)",
              file=err)
    print(f"  {describe_classes(merged.info)}", file=err)
    print_list("unreadable images", [f"{p}: {r}" for p, r in merged.unreadable], args.out + ".json")
    print(f"wrote {args.out} and {args.out}.json", file=err)
    return 0
