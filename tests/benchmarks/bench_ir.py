"""Benchmark (not a test): parse and write a synthetic 20k-layer ``.param``; compare with ncnn's load_param.

    python tests/benchmarks/bench_ir.py [--layers 20000] [--repeat 5]

Prints layers/s (best of ``--repeat`` runs) for: the parser alone (auto engine = fast path, and the
lark-only engine), a full ``Graph`` load (parse + semantic checks + graph + Split absorption), writing
the ``.param`` text (Split regeneration included) and ``Graph.save``; and the same file loaded by the ncnn
wheel's ``Net.load_param`` in the same run, with each figure's ratio to it. Goal: >= 100k layers/s.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (for support.synth)

import ncnn  # noqa: E402
from support.synth import synthetic_param  # noqa: E402

from ncnnpass.ir import Graph  # noqa: E402
from ncnnpass.ir.parser import parse_param  # noqa: E402


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU (process) seconds over ``repeat`` runs, and the last result.
    CPU time is the steadier figure on a shared machine (it excludes time stolen by other work)."""
    wall, cpu, result = [], [], None
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--lark-repeat", type=int, default=1, help="runs of the (slow) lark-only engine")
    args = ap.parse_args(argv)

    text = synthetic_param(args.layers)
    n = args.layers
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "synthetic.param"
        path.write_text(text)
        out = Path(d) / "out.param"

        def ncnn_load() -> None:
            net = ncnn.Net()
            assert net.load_param(str(path)) == 0
            net.clear()

        g = Graph.load(path)
        rows = [
            ("ncnn Net.load_param (same file)", best_of(ncnn_load, args.repeat)),
            ("parse_param engine=auto", best_of(lambda: parse_param(text, engine="auto"), args.repeat)),
            ("parse_param engine=lark", best_of(lambda: parse_param(text, engine="lark"), args.lark_repeat)),
            ("Graph.load (parse+check+graph)", best_of(lambda: Graph.load(path), args.repeat)),
            ("Graph.to_param_text (write)", best_of(g.to_param_text, args.repeat)),
            ("Graph.save (write, atomic)", best_of(lambda: g.save(out), args.repeat)),
        ]
        assert rows[1][1][2].layers == rows[2][1][2].layers, "fast path and lark disagree"
        assert Graph.load(out).to_param_text() == g.to_param_text()

    print(f"synthetic .param: {n} layers, {len(text) / 1e6:.2f} MB; best of {args.repeat} "
          f"(lark-only: {args.lark_repeat}); ncnn {ncnn.__version__}")
    print(f"{'':34} {'wall s':>8} {'layers/s':>10} {'vs ncnn':>8}   {'cpu s':>8} {'layers/s':>10} {'vs ncnn':>8}")
    ncnn_wall, ncnn_cpu = n / rows[0][1][0], n / rows[0][1][1]
    for label, (wall, cpu, _) in rows:
        print(f"{label:34} {wall:8.4f} {n / wall:10,.0f} {n / wall / ncnn_wall:7.2f}x   "
              f"{cpu:8.4f} {n / cpu:10,.0f} {n / cpu / ncnn_cpu:7.2f}x")
    print("goal: >= 100,000 layers/s for parse and write")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
