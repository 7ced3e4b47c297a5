"""``ncnnpass passes``: list the rewrite passes and pipelines, one line each."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("passes", help="list rewrite passes and pipelines",
                       description="List every rewrite pass and pipeline with a one-line description. "
                                   "Use them with `ncnnpass run ... --passes a,b` or `--pipeline NAME`.")
    p.add_argument("--options", action="store_true", help="also list each pass's options")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ncnnpass.passes import PIPELINES, list_passes

    passes = list_passes()
    width = max(len(p.name) for p in passes)
    print("passes:")
    for p in passes:
        print(f"  {p.name:<{width}}  {p.doc}")
        if args.options:
            for k, (default, help_) in p.option_help.items():
                print(f"  {'':<{width}}    [{k}=...] {help_} (default {default})")
    print("pipelines:")
    for pl in PIPELINES.values():
        print(f"  {pl.name:<{width}}  {pl.doc}: {', '.join(pl.passes)}")
    return 0
