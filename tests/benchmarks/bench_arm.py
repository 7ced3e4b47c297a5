"""Benchmark: the execution targets on one model: x86 in-process vs isolated worker vs emulated ARM.

    python tests/benchmarks/bench_arm.py [--param M.param --bin M.bin] [--runs 5] [--workers 2] [--cold]

Default model: PP-OCRv3 rec (pnnx fp16=0), input 3x48x320, seed 0, one ncnn thread. Prints provisioning
time (cached; ``--cold`` also builds a fresh root + wheel in a temporary cache, apt packages excluded), worker
startup per target, per-inference cost under default (fp16 on the phone) and fp32 options, the
x86-vs-emulated cost ratio, the phone error, and the wall time of ``--workers`` emulated runs in parallel
against one after another. Not a test (minutes of emulation); keep it out of CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402


def _model(args):
    from ncnnpass.ir import Graph

    if args.param:
        return Graph.load(args.param, args.bin)
    import fixtures

    return Graph.load(*fixtures.ppocrv3_rec_ncnn(False))


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--param")
    ap.add_argument("--bin")
    ap.add_argument("--shape", default="3,48,320")
    ap.add_argument("--runs", type=int, default=5, help="x86 runs per option set (median)")
    ap.add_argument("--workers", type=int, default=2, help="parallel emulated workers to compare with serial")
    ap.add_argument("--cold", action="store_true", help="also time a cold provisioning in a temporary cache")
    args = ap.parse_args(argv)

    from ncnnpass.ir import runtime
    from ncnnpass.ir.runtime.arm_env import arm_dir, ensure_arm_runtime

    if args.cold:
        with tempfile.TemporaryDirectory(prefix="ncnnpass-bench-arm-") as d:
            old = os.environ.get("NCNNPASS_CACHE")
            os.environ["NCNNPASS_CACHE"] = d
            try:
                _, cold = _timed(lambda: ensure_arm_runtime(progress=lambda m: print(f"  {m}", flush=True)))
            finally:
                if old is None:
                    del os.environ["NCNNPASS_CACHE"]
                else:
                    os.environ["NCNNPASS_CACHE"] = old
        print(f"provisioning, cold (root + wheel + check, apt packages excluded): {cold:.1f} s")
    _, cached = _timed(lambda: ensure_arm_runtime(progress=print))
    size = sum(f.stat().st_size for f in arm_dir().rglob("*") if f.is_file() and not f.is_symlink())
    print(f"provisioning, cached: {cached * 1000:.0f} ms; cache {arm_dir()} holds {size / 2**20:.0f} MiB")

    g = _model(args)
    shape = tuple(int(v) for v in args.shape.split(","))
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    out = g.outputs[0]
    cost: dict[tuple[str, str], float] = {}
    results: dict[tuple[str, str], np.ndarray] = {}
    for opt in ("default", "fp32"):
        net = runtime.load(g, opt, num_threads=1)
        results["x86", opt] = net.run(x)[out]
        times = [_timed(lambda n=net: n.run(x))[1] for _ in range(args.runs)]
        cost["x86", opt] = statistics.median(times)
    for name in ("isolated", "arm", "arm-a57"):
        with runtime.open_target(name) as t:
            startup = t.ensure_started()
            print(f"worker startup, {runtime.describe_target(name)}: {startup:.2f} s")
            for opt in ("default", "fp32"):
                _, load_and_run = _timed(lambda o=opt: t.run(g, x, options=o, num_threads=1))  # noqa: B023
                res, run_only = _timed(lambda o=opt: t.run(g, x, options=o, num_threads=1))  # noqa: B023
                results[name, opt], cost[name, opt] = res[out], run_only
                print(f"  {opt:8s} options: first run (ships + loads the net) {load_and_run:.2f} s, "
                      f"next run {run_only:.3f} s")
    ref = results["x86", "fp32"]
    print(f"\n{'target':30s} {'options':8s} {'s/inference':>12s} {'x86 ratio':>10s} {'max |out - x86 fp32|':>22s}")
    for (name, opt), sec in cost.items():
        ratio = sec / cost["x86", opt]
        err = float(np.abs(results[name, opt] - ref).max())
        print(f"{runtime.describe_target(name):30s} {opt:8s} {sec:12.3f} {ratio:10.0f} {err:22.3e}")

    jobs = [runtime.Job(g, [x], options="default", num_threads=1) for _ in range(args.workers)]
    with runtime.TargetPool("arm", workers=args.workers) as pool:
        for t in pool.sessions:
            t.ensure_started()
        _, parallel = _timed(lambda: pool.run(jobs, errors="raise"))
    serial = cost["arm", "default"] * args.workers
    print(f"\n{args.workers} emulated default-option runs: parallel workers {parallel:.1f} s (incl. net loading), "
          f"one after another ~{serial:.1f} s (on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
