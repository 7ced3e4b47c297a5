"""Benchmark: phone repair of PP-OCRv3 (or v4) rec on the emulated Cortex-A76, against onnxruntime.

    python tests/benchmarks/bench_phone_repair.py [--model v3|v4 | --files PARAM BIN ONNX]
                                                  [--tolerance 1e-3 ...] [--order suffix] [--workers 2]

For each tolerance: error before/after (verification input seed 0), held-out error (seeds 101, 102),
layers kept fp32, share of MACs still in fp16, emulated runs, wall time; then the error/fp16-share pairs
of every probe the search tried (the tolerance-vs-speed trade-off). Baseline: one emulated fp16
inference of the model (the unit the search spends). Goal: the 1e-3 repair of PP-OCRv3 in <= 5 minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

GOAL_S = 300.0


def _model(name: str, paths: list[str] | None = None):
    import fixtures

    from ncnnpass.ir import Graph

    if paths:
        param, binf, onnx = paths
        return Graph.load(param, binf), Path(onnx)
    if name == "v4":
        param, binf = fixtures.ppocrv4_rec_ncnn(False)
        onnx = fixtures.ppocrv4_rec_onnx()
    else:
        param, binf = fixtures.ppocrv3_rec_ncnn(False)
        onnx = fixtures.ppocrv3_rec_onnx()
    return Graph.load(str(param), str(binf)), onnx


def baseline(graph) -> float:
    from ncnnpass.ir.runtime import Job, TargetPool

    x = {graph.inputs[0]: np.random.default_rng(0).uniform(-1, 1, (3, 48, 320)).astype(np.float32)}
    with TargetPool("arm", workers=1) as pool:
        pool.run([Job(graph, [x])])  # start the worker and load the net
        t = time.perf_counter()
        pool.run([Job(graph, [x])])
        return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["v3", "v4"], default="v3")
    ap.add_argument("--tolerance", type=float, nargs="+", default=[1e-3])
    ap.add_argument("--order", choices=["suffix", "sensitivity"], default="suffix")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--files", nargs=3, metavar=("PARAM", "BIN", "ONNX"), help="another model (e.g. PP-OCRv5)")
    args = ap.parse_args(argv)
    from ncnnpass.passes.precision import repair_for_phone

    graph, onnx = _model(args.model, args.files)
    base = baseline(graph)
    print(f"baseline: one emulated fp16 inference {base:.1f} s")
    for tol in args.tolerance:
        r = repair_for_phone(graph, (3, 48, 320), tol, reference=onnx, workers=args.workers,
                             order_by=args.order, progress=lambda m: print("  " + m, flush=True))
        print(f"{args.model} tolerance {tol:g}: before {r.error_before:.3g} after {r.error_after:.3g} "
              f"held-out {r.heldout_error:.3g} layers {len(r.layers_marked)} fp16 MACs {100 * r.fp16_mac_share:.1f}% "
              f"runs {r.target_runs} time {r.seconds:.0f} s ({r.seconds / base:.1f}x one inference; "
              f"goal {GOAL_S:.0f} s: {'met' if r.seconds <= GOAL_S else 'missed'})")
        for k, err, share in sorted(r.probes):
            print(f"    {k:4d} layers fp32: error {err:.3g}, fp16 MACs {100 * share:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
