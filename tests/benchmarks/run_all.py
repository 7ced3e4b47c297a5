"""Run every benchmark in this folder, one after the other, in one command (not a test).

    python tests/benchmarks/run_all.py [--quick]

Each benchmark prints its own figures and its ratio against a baseline measured in the same process
(ncnn's load_param, the 1k-block run, the pnnx model, plain onnxruntime+ncnn, plain onnxruntime, one x86
inference against one emulated phone inference; the phone repair's search time and its held-out text).
``--quick`` passes smaller sizes so the whole suite finishes in a few minutes.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = [
    ("bench_ir.py", [], ["--layers", "20000", "--repeat", "3"]),
    ("bench_passes.py", [], ["--blocks", "100,1000", "--repeat", "1"]),
    ("bench_optimize_inference.py", [], ["--runs", "60"]),
    ("bench_compare.py", [], ["--repeat", "1"]),
    ("bench_centers.py", [], ["--images", "64", "--repeat", "2"]),
    ("bench_arm.py", [], ["--runs", "1"]),  # minutes of emulation: the phone figures
    # the phone repair on the GPU target (lavapipe), judged on held-out text: ~10-20 min; --quick ~5 min
    ("bench_target_repair.py", ["search", "v3", "--target", "vulkan"],
     ["search", "v3", "--target", "vulkan", "--held-out", "24", "--budget", "120"]),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (minutes instead of tens of minutes)")
    args = ap.parse_args(argv)
    print(f"machine: {platform.machine()}, {platform.processor() or platform.platform()}, "
          f"python {platform.python_version()}", flush=True)
    failed = []
    for script, full, quick in BENCHES:
        print(f"\n=== {script} {' '.join(quick if args.quick else full)}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script), *(quick if args.quick else full)])
        print(f"=== {script}: exit {proc.returncode}, {time.perf_counter() - t:.1f}s", flush=True)
        if proc.returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
