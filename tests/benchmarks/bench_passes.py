"""Pass-manager time on synthetic graphs of 1k and 10k SE blocks (not a test; run it directly).

    python tests/benchmarks/bench_passes.py [--blocks 1000,10000] [--pipelines repair,optimize] [--verify-each]

Each block is what pnnx writes for a PP-OCRv4 SE stage: Convolution -> scalar mul/add -> HardSwish ->
(global Pooling -> InnerProduct(ReLU) -> InnerProduct -> HardSigmoid) -> BinaryOp mul, 10 layers with
weights. The pass manager must scale linearly: the printed 10k/1k time ratio should be close to 10.
Times are this process's CPU time (best of ``--repeat``), which other load on the machine disturbs
less than wall-clock time; the wall-clock time is printed too.

``--verify-each`` also times the IR verifier (``verify_graph`` with and without the round trips) on each
graph, and every pipeline run again with ``verify_each=True`` (the verifier after every pass).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere in the checkout

from ncnnpass.ir import Graph  # noqa: E402
from ncnnpass.passes import apply_passes  # noqa: E402

C = 8


def se_blocks(n: int, seed: int = 0) -> Graph:
    """``n`` SE blocks in a chain, with random fp32 weights."""
    lines = ["Input in0 0 1 b0"]
    for i in range(n):
        x, o = f"b{i}", f"b{i + 1}"
        lines += [
            f"Convolution conv{i} 1 1 {x} c{i} 0={C} 1=1 5=1 6={C * C}",
            f"BinaryOp mul{i} 1 1 c{i} m{i} 0=2 1=1 2=1.5",
            f"BinaryOp add{i} 1 1 m{i} a{i} 0=0 1=1 2=0.25",
            f"HardSwish hs{i} 1 1 a{i} h{i} 0=0.166666672 1=0.5",
            f"Split sp{i} 1 2 h{i} h{i}_0 h{i}_1",
            f"Pooling gap{i} 1 1 h{i}_0 g{i} 0=1 4=1",
            f"InnerProduct fc{i}a 1 1 g{i} f{i} 0={C // 2} 1=1 2={C * C // 2} 9=1",
            f"InnerProduct fc{i}b 1 1 f{i} s{i} 0={C} 1=1 2={C * C // 2}",
            f"HardSigmoid hsig{i} 1 1 s{i} e{i} 0=0.166666672 1=0.5",
            f"BinaryOp se{i} 2 1 h{i}_1 e{i} {o} 0=2",
        ]
    blobs = {tok for ln in lines for tok in ln.split()[4:] if "=" not in tok}
    g = Graph.from_text(f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n")
    rng = np.random.default_rng(seed)
    for ly in g.layers:
        if ly.type in ("Convolution", "InnerProduct"):
            n_out = int(ly.get("num_output"))
            size = int(ly.get("weight_data_size"))
            ly.weights = {}
            ly.set_weight("weight", rng.uniform(-0.5, 0.5, size).astype(np.float32))
            ly.set_weight("bias", rng.uniform(-0.5, 0.5, n_out).astype(np.float32))
    return g


def bench(n: int, pipeline: str, repeat: int, verify_each: bool = False) -> tuple[float, float, int, int, str]:
    best, wall = float("inf"), float("inf")
    for _ in range(repeat):
        g = se_blocks(n)
        before = len(g.layers)
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        report = apply_passes(g, pipeline, verify_each=verify_each)
        best = min(best, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - t0)
        after = len(g.layers)
    return best, wall, before, after, str(report).splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", default="1000,10000")
    ap.add_argument("--pipelines", default="repair,optimize")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per size")
    ap.add_argument("--verify-each", action="store_true", help="also time the IR verifier and verify_each runs")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.blocks.split(",")]
    if args.verify_each:
        from ncnnpass.ir.verifier import verify_graph

        for n in sizes:
            g = se_blocks(n)
            for rt in (False, True):
                best = float("inf")
                for _ in range(args.repeat + 1):
                    gc.collect()
                    c0 = time.process_time()
                    assert verify_graph(g, round_trip=rt) == []
                    best = min(best, time.process_time() - c0)
                print(f"verify_graph {n:>6} SE blocks ({len(g.layers)} layers), round_trip={rt!s:<5}: "
                      f"{best:.3f} s CPU")
    for pipeline in args.pipelines.split(","):
        times = {}
        for n in sizes:
            t, wall, before, after, summary = bench(n, pipeline, args.repeat)
            times[n] = t
            print(f"{pipeline:<9} {n:>6} SE blocks: {before:>7} -> {after:>7} layers in {t:7.3f} s CPU "
                  f"({t / before * 1e6:6.1f} us/layer; wall {wall:.3f} s)  [{summary}]")
        if len(sizes) >= 2:
            lo, hi = sizes[0], sizes[-1]
            print(f"{pipeline:<9} time ratio {hi}/{lo} blocks = {times[hi] / times[lo]:.2f} "
                  f"(linear: {hi / lo:.0f})")
        if args.verify_each:
            for n in sizes:
                t, wall, before, after, summary = bench(n, pipeline, args.repeat, verify_each=True)
                print(f"{pipeline:<9} {n:>6} SE blocks, verify_each: {t:7.3f} s CPU ({t / times[n]:.1f}x the "
                      f"run without; wall {wall:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
