"""What users see on x86, per model: pnnx's output and the same after ``repair``, against onnxruntime, on the
built-in held-out data (the README's real-text column, issue 17's Must-show, x86 half).

    python tests/benchmarks/bench_task_x86.py [--lines 200] [--pages 30] [--seed 0]
                                              [--models ppocrv3-rec,...] [--json out.json]

Each model is ``ncnnpass convert NAME``'s output directory (``tests/fixtures.converted``: pnnx ``fp16=0``,
sizes dynamic, built once): ``OUTDIR/pnnx/`` (the converter's output) and ``OUTDIR/model.ncnn.*`` (after
``repair``), both ncnn x86 under default options, one thread; the reference is onnxruntime on
``OUTDIR/model.onnx``. Data: the first ``--lines`` built-in lines (rec, cls: half of them turned by 180°)
or ``--pages`` built-in pages (det) of the held-out part of the seeded split, the characters restricted to
the recogniser's dictionary; each line at its own width, each page at DetResizeForTest's size. Task
metrics: :mod:`ncnnpass.passes.measure.metrics` through :func:`ncnnpass.passes.measure.task_eval.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fixtures  # noqa: E402

from ncnnpass.ir import Graph  # noqa: E402
from ncnnpass.passes.measure.model_files import model_facts  # noqa: E402
from ncnnpass.passes.measure.task_data import task_data  # noqa: E402
from ncnnpass.passes.measure.task_eval import Side, evaluate  # noqa: E402

MODELS = ("ppocrv3-rec", "ppocrv4-rec", "ppocrv5-rec", "ppocrv3-det", "ppocrv4-det", "ppocrv5-det", "ppocrv2-cls")


def _cells(result) -> str:
    n = result.numbers
    if result.kind == "rec":
        return (f"{n['identical_share']:.1%} ({n['identical']}/{n['lines']}), conf {n['max_conf_change']:.1e} max / "
                f"{n['mean_conf_change']:.1e} mean, {n['drop_score_crossings']} crossings, prob {n['max_prob_diff']:.1e}")
    if result.kind == "det":
        return (f"F {n['f']:.4f} ({n['candidate_boxes']}/{n['reference_boxes']} boxes), {n['flipped_pixels']} pixels "
                f"flip, map {n['max_map_diff']:.1e}")
    return (f"{n['agreement_share']:.1%} agree ({n['agreement']}/{n['lines']}), {n['rotation_flips']} rotation flips, "
            f"score {n['max_score_change']:.1e}")


def measure(name: str, lines: int, pages: int, seed: int) -> dict:
    t0 = time.perf_counter()
    out = fixtures.converted(name)
    info, folder = model_facts(out / "model.onnx")
    pnnx_param = next((out / "pnnx").glob("*.ncnn.param"))
    before = Graph.load(pnnx_param, pnnx_param.with_suffix(".bin"))
    after = Graph.load(out / "model.ncnn.param", out / "model.ncnn.bin")
    t1 = time.perf_counter()
    task = task_data(info, count=pages if info.kind == "det" else lines, seed=seed, model_dir=folder)
    t2 = time.perf_counter()
    report = evaluate(task, [Side.onnxruntime(out / "model.onnx"), Side.ncnn(before, label="pnnx output"),
                             Side.ncnn(after, label="after repair")])
    t3 = time.perf_counter()
    row = {"model": name, "kind": info.kind, "data": task.describe(),
           "pnnx": report.pair("pnnx output").result.to_dict(per_sample=False),
           "repair": report.pair("after repair").result.to_dict(per_sample=False),
           "seconds": {"fixture": t1 - t0, "data": t2 - t1, "runs": t3 - t2},
           "side_seconds": {s.label: s.seconds for s in report.sides}}
    print(f"{name} ({info.describe()})")
    print(f"  {' | '.join(task.describe())}")
    for label in ("pnnx output", "after repair"):
        print(f"  {label:<13} {_cells(report.pair(label).result)}")
    examples = report.pair("pnnx output").result.differing()[:2]
    for e in examples:
        print(f"      pnnx output differs: {e.get('describe', e['sample'])}")
    print(f"  (data {t2 - t1:.1f}s, runs {t3 - t2:.1f}s)", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--pages", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    start = time.perf_counter()
    for name in [m for m in args.models.split(",") if m]:
        rows.append(measure(name, args.lines, args.pages, args.seed))
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
