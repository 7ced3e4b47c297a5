"""Inference time of the ``optimize`` output vs the input model, 1 thread (not a test; run it directly).

    python tests/benchmarks/bench_optimize_inference.py [--runs 200] [--model v4|v3] [--fp16]

Model: PP-OCR rec converted by pnnx (``tests/fixtures.py``; PP-OCRv4 by default, where pnnx leaves 118
BinaryOps, 112 of them scalar). Both nets are loaded once with ncnn's default options and 1 thread; runs
alternate between them (so machine load drifts hit both alike) and the median of each is reported, with
the speed-up ``median(before) / median(after)``. A timing experiment put the ceiling for removing every
scalar BinaryOp near 1.07x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import fixtures  # noqa: E402

from ncnnpass.ir import Graph  # noqa: E402
from ncnnpass.ir.runtime import load  # noqa: E402
from ncnnpass.passes import apply_passes  # noqa: E402
from ncnnpass.passes.measure.verify import verify  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("v4", "v3"), default="v4")
    ap.add_argument("--fp16", action="store_true", help="use the fp16=1 pnnx conversion")
    ap.add_argument("--runs", type=int, default=200, help="timed runs per model (after 10 warm-up runs)")
    ap.add_argument("--width", type=int, default=320)
    args = ap.parse_args(argv)
    make = fixtures.ppocrv4_rec_ncnn if args.model == "v4" else fixtures.ppocrv3_rec_ncnn
    param, bin_ = make(args.fp16)
    before = Graph.load(str(param), str(bin_))
    after = before.copy()
    t0 = time.perf_counter()
    report = apply_passes(after, "optimize")
    t_pass = time.perf_counter() - t0
    shape = (3, 48, args.width)
    check = verify(before, after, shape)
    print(f"model: PP-OCR{args.model} rec, pnnx fp16={int(args.fp16)}, input 1x{'x'.join(map(str, shape))}")
    print(f"optimize: {len(before.layers)} -> {len(after.layers)} layers "
          f"(BinaryOp {before.count_by_type('BinaryOp')} -> {after.count_by_type('BinaryOp')}) in {t_pass:.2f} s; "
          f"max abs change (fp32 options) {check.max_abs:.2e}")
    x = {"in0": np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)}
    nets = {"before": load(before, "default", num_threads=1), "after": load(after, "default", num_threads=1)}
    times: dict[str, list[float]] = {k: [] for k in nets}
    for i in range(args.runs + 10):
        for name, net in (nets.items() if i % 2 == 0 else reversed(list(nets.items()))):
            t = time.perf_counter()
            net.run(x, ["out0"])
            if i >= 10:
                times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    q = {k: statistics.quantiles(v, n=4) for k, v in times.items()}
    for k in nets:
        print(f"{k:<7} median {med[k] * 1e3:7.2f} ms   (quartiles {q[k][0] * 1e3:.2f} .. {q[k][2] * 1e3:.2f} ms, "
              f"{len(times[k])} runs, 1 thread, default options)")
    print(f"speed-up median(before)/median(after) = {med['before'] / med['after']:.3f}x")
    del report
    return 0


if __name__ == "__main__":
    sys.exit(main())
