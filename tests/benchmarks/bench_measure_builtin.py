"""Demonstration: the task metrics on the built-in data, onnxruntime (reference) against ncnn x86.

    python tests/benchmarks/bench_measure_builtin.py [--lines 200] [--pages 30] [--seed 0] [--rec v3|v4]
                                                     [--json out.json]

PP-OCRv3 (or v4) rec and PP-OCRv3 det (the fixtures' pnnx ``fp16=0`` conversions with a second input shape, so ncnn runs
each line at its own width and each page at its own size), ncnn's default options, one thread. Prints the
rec metric (strings identical, confidence change, drop_score crossings, max prob diff, CER against the
rendered text) and the det metric (boxes matched at IoU >= 0.5 → P/R/F, map diff, flipping pixels, F of
both against the pages' ground truth), with the time each step took.
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
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from ncnnpass.ir import Graph, runtime  # noqa: E402
from ncnnpass.passes.measure.ctc_decode import dictionary_from_metadata, read_dictionary  # noqa: E402
from ncnnpass.passes.measure.label_coverage import label_coverage  # noqa: E402
from ncnnpass.passes.measure.metrics import metric_for  # noqa: E402
from ncnnpass.passes.measure.prepare import prepare_inputs  # noqa: E402
from ncnnpass.passes.measure.synth import builtin_lines, builtin_pages  # noqa: E402


def _onnx(path: Path, inputs) -> list:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: i.tensor})[0] for i in inputs]


def _ncnn(param: Path, weights: Path, inputs) -> list:
    graph = Graph.load(param, weights)
    net = runtime.load(graph, "default", num_threads=1)
    out = graph.outputs[0]
    return [net.run(i.tensor[0], out)[out] for i in inputs]


def _measure(kind: str, onnx_path: Path, ncnn_files: tuple[Path, Path], inputs, **options) -> dict:
    t0 = time.perf_counter()
    ref = _onnx(onnx_path, inputs)
    t1 = time.perf_counter()
    cand = [c.reshape(r.shape) for c, r in zip(_ncnn(*ncnn_files, inputs), ref, strict=True)]
    t2 = time.perf_counter()
    result = metric_for(kind, **options).evaluate(ref, cand, inputs)
    t3 = time.perf_counter()
    print("\n".join(result.render(examples=5)))
    print(f"     ({len(inputs)} inputs: onnxruntime {t1 - t0:.1f}s, ncnn {t2 - t1:.1f}s, metric {t3 - t2:.1f}s)")
    return result.to_dict(per_sample=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200)
    ap.add_argument("--pages", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rec", choices=("v3", "v4"), default="v3")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    report = {}

    if args.rec == "v3":
        rec_onnx, rec_ncnn = fixtures.ppocrv3_rec_onnx(), fixtures.ppocrv3_rec_ncnn_any_width(False)
        chars = dictionary_from_metadata(onnx.load(str(rec_onnx), load_external_data=False))
    else:
        rec_onnx, rec_ncnn = fixtures.ppocrv4_rec_onnx(), fixtures.ppocrv4_rec_ncnn_any_width(False)
        chars = read_dictionary(fixtures.ppocr_keys_v1())
    t0 = time.perf_counter()
    lines = builtin_lines(args.lines, args.seed, dictionary=chars)
    inputs = prepare_inputs(lines.samples, "rec")
    print(f"{lines.describe()}; rendered and preprocessed in {time.perf_counter() - t0:.1f}s; "
          f"{label_coverage(lines.samples, chars).describe()}")
    report["rec"] = _measure("rec", rec_onnx, rec_ncnn, inputs, dictionary=chars)

    t0 = time.perf_counter()
    pages = builtin_pages(args.pages, args.seed, dictionary=chars)
    inputs = prepare_inputs(pages.samples, "det")
    boxes = sum(len(s.boxes or ()) for s in pages.samples)
    print(f"{pages.describe()} with {boxes} text boxes; rendered and preprocessed in {time.perf_counter() - t0:.1f}s")
    report["det"] = _measure("det", fixtures.ppocrv3_det_onnx(), fixtures.ppocrv3_det_ncnn_any_size(False), inputs)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
