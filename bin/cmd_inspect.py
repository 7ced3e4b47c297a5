"""``ncnnpass inspect MODEL.param [MODEL.bin] [--json]``: what is in a model, and what is wrong with it."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ncnnpass.ir import Graph

from .common import default_bin, require_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summarize an ncnn model: layers, inputs/outputs, weights, problems",
                       description="Summarize an ncnn model: layers by type, inputs and outputs, weight "
                                   "storage types and bytes, the problems check() finds, and the warnings "
                                   "(oddities ncnn accepts, such as shared layer names).")
    p.add_argument("param", help="model .param file")
    p.add_argument("bin", nargs="?", help="model .bin file (default: next to the .param, if present)")
    p.add_argument("--json", action="store_true", help="print a JSON report instead of text")
    p.set_defaults(func=run)


def summarize(g: Graph, param: str, bin: str | None) -> dict:
    storage: dict[str, dict[str, int]] = {}
    for ly in g.layers:
        for w in ly.weights.values():
            s = storage.setdefault(w.storage, {"arrays": 0, "values": 0, "bytes": 0})
            s["arrays"] += 1
            s["values"] += w.count
            s["bytes"] += w.nbytes
    return {
        "param": param,
        "bin": bin,
        "layers": len(g.layers),
        "split_layers_in_file": len(g.splits),
        "blobs": len(g.blobs),
        "layer_types": dict(sorted(g.types().items(), key=lambda kv: (-kv[1], kv[0]))),
        "inputs": g.inputs,
        "outputs": g.outputs,
        "weights": storage,
        "weight_bytes": sum(s["bytes"] for s in storage.values()),
        "problems": [{"kind": p.kind, "layer": p.layer, "message": p.message} for p in g.check()],
        "warnings": [{"kind": p.kind, "layer": p.layer, "message": p.message} for p in g.warnings()],
        "featmask": featmask_summary(g),
    }


def featmask_summary(g: Graph) -> dict:
    """The featmasks (``31=``) of the model and the placements that break an ncnn path (ARM CPU, Vulkan GPU;
    x86 with bf16 storage, an opt-in option): ``ncnnpass.ir.featmask.placement_problems``."""
    from ncnnpass.ir.featmask import placement_problems, split_mask

    masks: dict[str, int] = {}
    for ly in g.layers:
        if ly.featmask:
            masks[str(ly.featmask)] = masks.get(str(ly.featmask), 0) + 1
    splits = sum(1 for blob in g.splits if split_mask(g, blob))
    return {"layers": sum(masks.values()), "by_value": dict(sorted(masks.items(), key=lambda kv: -kv[1])),
            "masked_splits": splits, "breaks": [p.to_dict() for p in placement_problems(g)]}


def run(args: argparse.Namespace) -> int:
    require_file(args.param, "param file")
    bin = args.bin
    if bin is None and os.path.exists(default_bin(args.param)):
        bin = default_bin(args.param)
    if bin is not None:
        require_file(bin, "bin file")
    g = Graph.load(args.param, bin)
    report = summarize(g, args.param, bin)
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0
    out = sys.stdout
    print(f"{args.param}: {report['layers']} layers ({report['split_layers_in_file']} Split layers in the file), "
          f"{report['blobs']} blobs", file=out)
    print(f"inputs:  {', '.join(report['inputs']) or '-'}", file=out)
    print(f"outputs: {', '.join(report['outputs']) or '-'}", file=out)
    print("layers by type:", file=out)
    for t, n in report["layer_types"].items():
        print(f"  {t:<24} {n:>6}", file=out)
    if bin:
        print(f"weights ({bin}): {report['weight_bytes']} bytes", file=out)
        for s, v in report["weights"].items():
            print(f"  {s:<8} {v['arrays']:>5} arrays {v['values']:>12} values {v['bytes']:>12} bytes", file=out)
    else:
        print("weights: no .bin given", file=out)
    if report["problems"]:
        print(f"problems ({len(report['problems'])}):", file=out)
        for p in report["problems"]:
            print(f"  {p['kind']}: {p['message']}", file=out)
    else:
        print("problems: none", file=out)
    _print_featmask(report["featmask"], out)
    if report["warnings"]:  # what ncnn accepts but a converter would not write
        print(f"warnings ({len(report['warnings'])}):", file=out)
        for p in report["warnings"]:
            print(f"  {p['kind']}: {p['message']}", file=out)
    return 0


def _print_featmask(fm: dict, out) -> None:
    if not fm["layers"] and not fm["masked_splits"]:
        return
    values = ", ".join(f"31={v}: {n}" for v, n in fm["by_value"].items())
    print(f"featmasks: {fm['layers']} layer(s) ({values or '-'}), {fm['masked_splits']} masked Split(s)", file=out)
    breaks = [b for b in fm["breaks"] if not b["opt_in"]]
    opt_in = [b for b in fm["breaks"] if b["opt_in"]]
    if breaks:
        paths = ", ".join(dict.fromkeys(b["path"] for b in breaks))
        print(f"featmask placements that break a path ({len(breaks)}; {paths}):", file=out)
        for b in breaks:
            slot = f" input {b['input']}" if b["input"] is not None else ""
            print(f"  {b['path']}: {b['layer']} ({b['type']} 31={b['featmask']}){slot}: {b['reason']}", file=out)
        print("  (the every-path form: keep-fp32 or ncnnpass.ir.featmask.make_featmask_safe; docs/gpu.md)", file=out)
    else:
        print("featmask placements: right on x86, the ARM CPU and the Vulkan GPU", file=out)
    if opt_in:
        names = ", ".join(dict.fromkeys(b["layer"] for b in opt_in))
        print(f"  with use_bf16_storage on x86 (opt-in, no default sets it): {len(opt_in)} masked input(s) read bf16 "
              f"blobs: garbage or a crash ({names})", file=out)
