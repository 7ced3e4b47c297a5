"""Benchmark and evidence for docs/gpu.md: ncnn's Vulkan path (lavapipe) against x86 and the emulated phone.

    python tests/benchmarks/bench_vulkan.py synthetic        # featmask placements on a small net, 3 paths
    python tests/benchmarks/bench_vulkan.py options [MODEL]  # option attribution on random input (+ timing)
    python tests/benchmarks/bench_vulkan.py lines [MODEL]    # rendered text lines: strings, confidence
    python tests/benchmarks/bench_vulkan.py layers [MODEL]   # per-layer: where the Vulkan error appears
    python tests/benchmarks/bench_vulkan.py placements       # PP-OCRv3 rec placements on x86/arm/vulkan
    python tests/benchmarks/bench_vulkan.py proxies          # rank agreement of cheap proxies with the A76

MODEL: v3 (default), v4, v5 (rec, pnnx fp16=0 from tests/fixtures.py) or v3det. One ncnn thread; reference
onnxruntime where the model has an ONNX, else x86 ncnn with fp32 options. Not a test (emulated ARM runs
take 15-90 s each); keep it out of CI. Every number in docs/gpu.md comes from one of these commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from rank_agreement import kendall, spearman  # noqa: E402

from ncnnpass.ir import Graph, RuntimeBridgeError, runtime  # noqa: E402
from ncnnpass.ir.runtime.targets import open_target  # noqa: E402

OUT = Path("/tmp/bench_vulkan")


def _say(msg: str) -> None:
    print(msg, flush=True)


def _err(got: np.ndarray | None, ref: np.ndarray) -> float:
    if got is None:
        return float("nan")
    got = np.asarray(got, np.float64).reshape(-1)
    if got.size != ref.size or not np.isfinite(got).all():
        return float("inf")
    return float(np.abs(got - np.asarray(ref, np.float64).reshape(-1)).max())


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    return "NaN/Inf" if v == float("inf") else f"{v:.3g}"


# ----------------------------------------------------------------------------------------------- models

def load_model(name: str) -> tuple[Graph, str | None, tuple[int, ...]]:
    """(graph, onnx path or None, input shape) of a fixture model."""
    import fixtures

    if name == "v3":
        return Graph.load(*fixtures.ppocrv3_rec_ncnn(False)), str(fixtures.ppocrv3_rec_onnx()), (3, 48, 320)
    if name == "v4":
        return Graph.load(*fixtures.ppocrv4_rec_ncnn(False)), str(fixtures.ppocrv4_rec_onnx()), (3, 48, 320)
    if name == "v5":
        onnx = fixtures.ppocrv5_rec_onnx()
        return Graph.load(*fixtures._ncnn(onnx, "ppocrv5_rec", False, (1, 3, 48, 320))), str(onnx), (3, 48, 320)
    if name == "v3det":  # through ncnnpass convert (onnxsim first: pnnx alone keeps an ONNX Resize)
        from ncnnpass.passes.toolchain.convert import convert

        onnx = fixtures.ppocrv3_det_onnx()
        out = fixtures.cache_dir() / "bench_vulkan_v3det_320"
        if not (out / "pnnx").is_dir():
            convert(str(onnx), out, shape=(3, 320, 320), report=False)
        param = sorted((out / "pnnx").glob("*.ncnn.param"))[0]
        return Graph.load(param, param.with_suffix(".bin")), str(onnx), (3, 320, 320)
    raise SystemExit(f"unknown model {name!r} (v3, v4, v5, v3det)")


def onnx_outputs(onnx: str, xs: list[np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return [sess.run(None, {name: x[None] if x.ndim == 3 else x})[0] for x in xs]


# ------------------------------------------------------------------------------------- synthetic nets

# a -> {c2 (kept fp32), c3}; b -> {c4 (kept fp32), add}; add2 (kept fp32) reads the unmasked add
# (the net of tests/test_featmask_safety.py; every kind of boundary: direct, through a Split, after a BinaryOp)
SYNTH = """
Input in0 0 1 in 0=16 1=16 2=8
Convolution c1 1 1 in a 0=16 1=3 4=1 5=1 6=1152
Convolution c2 1 1 a b 0=16 1=1 5=1 6=256
Convolution c3 1 1 a c 0=16 1=1 5=1 6=256
Convolution c4 1 1 b d 0=16 1=1 5=1 6=256
BinaryOp add 2 1 b c e 0=0
BinaryOp add2 2 1 d e out 0=0
"""
SYNTH_KEPT = ("c2", "c4", "add2")


def synth_variants() -> dict[str, Graph]:
    """Placements of the three kept layers: name -> graph."""
    from ncnnpass.ir.featmask import (
        featmask_safe_closure,
        make_featmask_safe,
        mask_split,
    )
    from ncnnpass.passes.engine.testing import fill_weights, model

    def g_with(bits: int, names=SYNTH_KEPT, safe: bool = False, split_bits: int = 0) -> Graph:
        g = fill_weights(model(SYNTH), seed=0, scale=0.5)
        for n in names:
            g.layer(n).featmask = bits
        if safe:
            edits = make_featmask_safe(g)
            for blob in edits.masked_splits:
                mask_split(g, blob, split_bits or 7)
        return g

    closure = sorted(featmask_safe_closure(g_with(0), SYNTH_KEPT))
    return {
        "fp16 everywhere (no masks)": g_with(0),
        "31=1 (fp32 arithmetic)": g_with(1),
        "31=2": g_with(2),
        "31=3": g_with(3),
        "31=7, no boundary": g_with(7),
        "31=7 + Dropout boundary + Splits 31=7 (ARM-safe today)": g_with(7, safe=True),
        "31=7 closure (ancestors masked) + Splits 31=7": g_with(7, closure, safe=True),
        "31=16 (on the CPU, fp16 kept)": g_with(16),
        "31=23, no boundary": g_with(23),
        "31=23 + Dropout boundary + Splits 31=7": g_with(23, safe=True),
        "31=23 + Dropout boundary + Splits 31=23": g_with(23, safe=True, split_bits=23),
        "31=23 closure + Splits 31=23": g_with(23, closure, safe=True, split_bits=23),
    }


def _run_on(target, graph: Graph, x: dict, options="default") -> tuple[np.ndarray | None, str | None]:
    try:
        return target.run(graph, x, options=options, num_threads=1)["out"], None
    except RuntimeBridgeError as exc:
        return None, str(exc).split("; stderr:")[0][-120:] + (" [" + str(exc).split("; stderr:")[1][-90:] + "]"
                                                           if "; stderr:" in str(exc) else "")


def cmd_synthetic(args) -> dict:
    variants = synth_variants()
    plain = variants["fp16 everywhere (no masks)"]
    x = {"in": np.random.default_rng(2).uniform(-1, 1, (8, 16, 16)).astype(np.float32)}
    ref = runtime.run(plain, x, options="fp32", num_threads=1)["out"]
    scale = float(np.abs(ref).max())
    paths = ["x86", "vulkan"] + ([] if args.no_arm else ["arm"])
    rows = {}
    sessions = {p: open_target(p if p != "x86" else "isolated") for p in paths}
    try:
        for name, g in variants.items():
            row = {}
            for p in paths:
                out, err = _run_on(sessions[p], g, x)
                row[p] = err if err else _err(out, ref) / scale
                if p == "vulkan" and not err:
                    row["vulkan cpu layers"] = [n for n, _ in sessions[p].cpu_layers(g)]
            rows[name] = row
            _say(f"{name:58s} " + "  ".join(f"{p}: {_fmt(row[p])}" for p in paths))
    finally:
        for s in sessions.values():
            s.close()
    return {"relative max error vs x86 fp32 (max|d|/max|ref|)": rows}



# ------------------------------------------------------------------------------- options / lines / layers

# Vulkan option sets (the Python binding has no use_fp16_uniform: ncnn turns it off with fp16 arithmetic)
VK_SETS = {
    "default (fp16 packed+storage+arithmetic+uniform)": "default",
    "fp16 storage+packed, arithmetic+uniform off": "fp16-storage",
    "fp16 arithmetic+uniform+storage, packed off": {"use_fp16_packed": False},
    "fp16 packed only": "fp16-packed",
    "fp32 (all fp16 off)": "fp32",
}


def _inputs(shape, seeds=(0,)) -> list[np.ndarray]:
    return [np.random.default_rng(s).uniform(-1, 1, shape).astype(np.float32) for s in seeds]


def page_input(shape=(3, 320, 320), lines: int = 7, seed: int = 0) -> np.ndarray:
    """A rendered page of text lines preprocessed as PaddleOCR's det (RGB/255, ImageNet mean/std, CHW):
    random input leaves a DB map near zero, a page does not."""
    from ncnnpass.passes.compare.text_lines import line_texts, render_line

    _, h, w = shape
    page = np.full((h, w, 3), 235, np.uint8)
    y = 8
    rng = np.random.default_rng(seed)
    for text in line_texts(lines, seed, min_len=6, max_len=16):
        img = render_line(text, size=int(rng.integers(18, 30)))[:, :, ::-1]
        ih, iw = min(img.shape[0], h - y), min(img.shape[1], w - 8)
        if ih <= 0:
            break
        page[y:y + ih, 8:8 + iw] = img[:ih, :iw]
        y += ih + int(rng.integers(4, 14))
    x = (page.astype(np.float32) / 255 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(
        [0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def cmd_options(args) -> dict:
    g, onnx, shape = load_model(args.model)
    xs = _inputs(shape, (0, 1)) if not args.model.endswith("det") else [*_inputs(shape), page_input(shape)]
    refs = onnx_outputs(onnx, xs)
    out = g.outputs[0]
    rows = {}
    with open_target("vulkan") as vk:
        for label, opts in VK_SETS.items():
            t0 = time.perf_counter()
            got = vk.run_many(g, xs, [out], options=opts, num_threads=1)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            vk.run(g, xs[0], [out], options=opts, num_threads=1)
            warm = time.perf_counter() - t0
            errs = [_err(r[out], ref) for r, ref in zip(got, refs, strict=True)]
            rows[label] = {"max_abs_vs_onnxruntime": max(errs), "per_seed": errs, "first_load_and_2_runs_s": cold,
                           "warm_inference_s": warm}
            _say(f"vulkan {label:52s} {_fmt(max(errs))}  (seeds {', '.join(map(_fmt, errs))}; warm {warm:.2f} s)")
        rows["cpu layers"] = vk.cpu_layers(g)
    for label, opts in (("x86 default", "default"), ("x86 fp32", "fp32")):
        t0 = time.perf_counter()
        got = [runtime.run(g, x, [out], options=opts, num_threads=1)[out] for x in xs]
        rows[label] = {"max_abs_vs_onnxruntime": max(_err(a, r) for a, r in zip(got, refs, strict=True)),
                       "warm_inference_s": (time.perf_counter() - t0) / len(xs)}
        _say(f"{label:59s} {_fmt(rows[label]['max_abs_vs_onnxruntime'])}")
    return {"model": args.model, "rows": rows}


def placement_graph(g: Graph, names, form: str) -> Graph:
    """``names`` kept fp32 in one of the forms: ``arm`` (31=7 + Dropout boundaries + Splits 31=7, what
    ncnnpass writes today) or ``all`` (31=23: bit 4 too, same boundaries, Splits 31=23)."""
    from ncnnpass.ir.featmask import make_featmask_safe, mask_split

    bits = {"arm": 7, "all": 23}[form]
    h = g.copy()
    for n in names:
        h.layer(n).featmask |= bits
    edits = make_featmask_safe(h)
    if form == "all":
        for blob in edits.masked_splits:
            mask_split(h, blob, 23)
    return h


def candidates(g: Graph) -> list[str]:
    """Layers the phone repair may keep fp32, in graph order (its suffix order is this reversed)."""
    return [ly.name for ly in g.layers if ly.type not in ("Input", "MemoryData") and ly.inputs]


def cmd_lines(args) -> dict:
    from ncnnpass.passes.compare.text_lines import LineModel, text_lines

    g, onnx, shape = load_model(args.model)
    cands = list(reversed(candidates(g)))
    head = cands[:3]
    models = [LineModel("x86 default", g, "x86"), LineModel("vulkan default", g, "vulkan"),
              LineModel("vulkan fp16-storage", g, "vulkan", "fp16-storage"),
              LineModel("vulkan fp32", g, "vulkan", "fp32"),
              LineModel(f"head {'+'.join(g.layer(n).type for n in head)} 31=7 (ARM form) on vulkan",
                        placement_graph(g, head, "arm"), "vulkan"),
              LineModel("head 31=23 (every-path form) on vulkan", placement_graph(g, head, "all"), "vulkan")]
    rep = text_lines(onnx, models, n=args.lines, shape=shape, seed=0, workers=1, progress=_say)
    for line in rep.render():
        _say(line)
    return {"model": args.model, "report": rep.to_dict()}


def cmd_layers(args) -> dict:
    """Per-layer: the all-blob drift on Vulkan (default options) and each layer alone fed fp32 inputs."""
    from ncnnpass.ir.runtime import TargetPool as JobPool
    from ncnnpass.passes.precision.sensitivity import measure, reference_blobs

    g, _, shape = load_model(args.model)
    if args.text:  # the first rendered line of `lines` instead of random input
        from ncnnpass.passes.compare.text_lines import line_inputs, line_texts

        feeds = {g.inputs[0]: line_inputs(line_texts(1, 0), shape, 0)[0][0]}
    else:
        feeds = {g.inputs[0]: _inputs(shape)[0]}
    ref = reference_blobs(g, feeds)
    rows = {}
    pool = JobPool("vulkan", workers=1)
    try:
        for opts in ("default", "fp16-storage"):
            sens = measure(g, feeds, pool, ref, options=opts, progress=_say)
            rows[opts] = {"drift": sens.drift, "local": sens.local, "first_nonfinite": sens.first_nonfinite}
    finally:
        pool.close()
    d, loc = rows["default"]["drift"], rows["default"]["local"]
    _say("layer                          type             local(default) local(fp16-storage) drift(out, default)")
    for ly in g.layers:
        if ly.name in loc:
            _say(f"{ly.name:30s} {ly.type:16s} {_fmt(loc[ly.name]):>10s} {_fmt(rows['fp16-storage']['local'][ly.name]):>12s}"
                 f" {_fmt(d.get(ly.outputs[0], float('nan'))):>12s}")
    top = sorted(loc, key=lambda n: -loc[n])[:10]
    _say("largest local errors: " + ", ".join(f"{n} ({g.layer(n).type}) {_fmt(loc[n])}" for n in top))
    return {"model": args.model, "rows": rows}



# ------------------------------------------------------------------------------ placements and proxies

# layers kept fp32, counted from the output (docs/phone.md's table for PP-OCRv3 rec); -1 = all
SUFFIXES = (0, 3, 7, 8, 10, 11, 22, 33, 41, 67, 70, 73, 78, 89, -1)


def _suffix(g: Graph, k: int) -> list[str]:
    cands = list(reversed(candidates(g)))
    return cands if k < 0 else cands[:k]


def fp16_rounded(g: Graph) -> Graph:
    """x86 stand-in for ARM's fp16 storage: a Cast fp32->fp16->fp32 pair on every blob an unmasked layer
    (or the net input, which ARM casts in front of the first fp16 layer) hands to an fp16-storing reader.
    Arithmetic stays fp32; masked layers' outputs are not rounded."""
    h = g.copy()
    for blob in list(h.blobs):
        b = h.blobs[blob]
        prod = b.producer
        if prod is not None and prod.type != "Input" and prod.featmask & 2:
            continue
        readers = [c for c in dict.fromkeys(b.consumers) if not (c.featmask & 2) or c.type == "Dropout"]
        if not readers:
            continue
        half = h.unique_blob_name(f"{blob}_h")
        back = h.unique_blob_name(f"{blob}_r")
        c1 = h.add_layer("Cast", h.unique_layer_name(f"{blob}_to_h"), [blob], [half], {0: 1, 1: 2}, after=prod)
        h.add_layer("Cast", h.unique_layer_name(f"{blob}_from_h"), [half], [back], {0: 2, 1: 1}, after=c1)
        for c in readers:
            c.inputs = [back if n == blob else n for n in c.inputs]
    return h



def _finite(v: float) -> float:
    return 1e9 if not np.isfinite(v) else v


def cmd_placements(args) -> dict:
    """Each suffix in the ARM form (what ncnnpass writes) and the every-path form (31=23), on x86 and
    Vulkan; with --arm, also on the emulated A76 (the every-path form)."""
    from ncnnpass.ir.runtime import Job
    from ncnnpass.ir.runtime import TargetPool as JobPool
    from ncnnpass.passes.precision.macs import fp16_mac_share, macs_per_layer

    g, onnx, shape = load_model(args.model)
    x = _inputs(shape)[0]
    ref = onnx_outputs(onnx, [x])[0]
    out = g.outputs[0]
    macs = macs_per_layer(g, runtime.infer_shapes(g, shape))
    ks = [int(k) for k in args.ks.split(",")] if args.ks else list(SUFFIXES)
    graphs = {(k, f): placement_graph(g, _suffix(g, k), f) for k in ks for f in ("arm", "all")}
    rows: dict[str, dict] = {}
    with open_target("vulkan") as vk:
        for k in ks:
            names = _suffix(g, k)
            row = {"layers_fp32": len(names), "fp16_mac_share": fp16_mac_share(macs, set(names))}
            for f in ("arm", "all"):
                h = graphs[(k, f)]
                row[f"x86 {f}"] = _err(runtime.run(h, x, [out], num_threads=1)[out], ref)
                try:
                    t0 = time.perf_counter()
                    vk.run(h, x, [out], num_threads=1)
                    t0 = time.perf_counter()
                    row[f"vulkan {f}"] = _err(vk.run(h, x, [out], num_threads=1)[out], ref)
                    row[f"vulkan {f} warm s"] = time.perf_counter() - t0
                except RuntimeBridgeError as exc:
                    row[f"vulkan {f}"] = str(exc)[:100]
            rows[str(k)] = row
            _say(f"k={k:3d} fp16 MACs {row['fp16_mac_share']:.1%}  x86 arm/all {_fmt(row['x86 arm'])}/"
                 f"{_fmt(row['x86 all'])}  vulkan arm-form {_fmt(row['vulkan arm'])}  vulkan all-form "
                 f"{_fmt(row['vulkan all'])}")
    if args.arm_ks:
        arm_ks = [int(k) for k in args.arm_ks.split(",")]
        pool = JobPool("arm", workers=2)
        try:
            res = pool.run([Job(graphs[(k, "all")], [{g.inputs[0]: x}], [out]) for k in arm_ks], _say)
        finally:
            pool.close()
        for k, r in zip(arm_ks, res, strict=True):
            rows[str(k)]["arm all"] = _err(r.outputs[0][out], ref) if r.ok else r.error
            _say(f"k={k:3d} emulated A76, every-path form: {_fmt(rows[str(k)]['arm all'])}")
    return {"model": args.model, "rows": rows}


def cmd_proxies(args) -> dict:
    """Rank agreement with the emulated A76 over the suffix placements (ARM form on ARM; each proxy runs
    the same placement in the form valid on its path)."""
    from ncnnpass.ir.runtime import Job
    from ncnnpass.ir.runtime import TargetPool as JobPool

    g, onnx, shape = load_model(args.model)
    xs = _inputs(shape)
    ref = onnx_outputs(onnx, xs)[0]
    x = xs[0]
    out = g.outputs[0]
    ks = [int(k) for k in args.ks.split(",")] if args.ks else list(SUFFIXES)
    arm_g = {k: placement_graph(g, _suffix(g, k), "arm") for k in ks}
    all_g = {k: placement_graph(g, _suffix(g, k), "all") for k in ks}
    table: dict[str, dict[int, float]] = {}
    cost: dict[str, float] = {}

    # the emulated runs are the costly part: kept in OUT between runs of this command
    cache = OUT / f"proxies-arm-{args.model}.json"
    known = json.loads(cache.read_text()) if cache.exists() and not args.fresh else {}
    todo = [k for k in ks if str(k) not in known.get("errors", {})]
    if todo:
        t0 = time.perf_counter()
        pool = JobPool("arm", workers=2)
        try:
            res = pool.run([Job(arm_g[k], [{g.inputs[0]: x}], [out]) for k in todo], _say)
        finally:
            pool.close()
        known.setdefault("errors", {}).update({str(k): (_err(r.outputs[0][out], ref) if r.ok else float("inf"))
                                               for k, r in zip(todo, res, strict=True)})
        known["seconds_per_eval"] = (time.perf_counter() - t0) * 2 / len(todo)  # 2 workers in parallel
        cache.write_text(json.dumps(known))
    table["emulated A76 (reference ranking)"] = {k: known["errors"][str(k)] for k in ks}
    cost["emulated A76 (reference ranking)"] = known["seconds_per_eval"]

    def timed(label: str, fn) -> None:
        t0 = time.perf_counter()
        table[label] = {k: fn(k) for k in ks}
        cost[label] = (time.perf_counter() - t0) / len(ks)
        _say(f"{label}: " + ", ".join(f"{k}:{_fmt(v)}" for k, v in table[label].items()))

    with open_target("vulkan") as vk:
        vk.run(g, x, [out], num_threads=1)  # pipelines compiled once for the unmasked layers

        timed("lavapipe default", lambda k: _err(vk.run(all_g[k], x, [out], num_threads=1)[out], ref))
        timed("lavapipe fp16-storage", lambda k: _err(vk.run(all_g[k], x, [out], options="fp16-storage",
                                                             num_threads=1)[out], ref))
    timed("x86 + Cast fp16 rounding of stored blobs", lambda k: _err(
        runtime.run(fp16_rounded(arm_g[k]), x, [out], num_threads=1)[out], ref))
    with open_target("isolated") as iso:  # bf16 storage on x86 with these masks can corrupt ncnn's heap

        def bf16(k: int) -> float:
            try:
                return _err(iso.run(arm_g[k], x, [out], options="bf16", num_threads=1)[out], ref)
            except RuntimeBridgeError as exc:
                _say(f"x86 bf16, {k} layers fp32: {str(exc)[:160]}")
                return float("inf")

        timed("x86 bf16 storage (bf16 preset)", bf16)
    arm = [_finite(table["emulated A76 (reference ranking)"][k]) for k in ks]
    agree = {}
    for label, vals in table.items():
        v = [_finite(vals[k]) for k in ks]
        agree[label] = {"spearman": spearman(arm, v), "kendall": kendall(arm, v), "seconds_per_eval": cost[label]}
        _say(f"{label:48s} spearman {agree[label]['spearman']:.3f}  kendall {agree[label]['kendall']:.3f}  "
             f"{cost[label]:.2f} s/eval")
    _say("k    " + "  ".join(f"{lab[:22]:>22s}" for lab in table))
    for k in ks:
        _say(f"{k:4d} " + "  ".join(f"{_fmt(table[lab][k]):>22s}" for lab in table))
    return {"model": args.model, "errors": {lab: {str(k): v for k, v in vals.items()} for lab, vals in table.items()},
            "agreement": agree}


COMMANDS = {"synthetic": cmd_synthetic, "options": cmd_options, "lines": cmd_lines, "layers": cmd_layers,
            "placements": cmd_placements, "proxies": cmd_proxies}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=sorted(COMMANDS))
    ap.add_argument("model", nargs="?", default="v3")
    ap.add_argument("--no-arm", action="store_true", help="skip the emulated phone")
    ap.add_argument("--lines", type=int, default=30, help="text lines for `lines`")
    ap.add_argument("--ks", default="", help="suffix lengths for placements/proxies (default: docs/phone.md's)")
    ap.add_argument("--text", action="store_true", help="layers: a rendered text line as input")
    ap.add_argument("--fresh", action="store_true", help="proxies: measure the emulated A76 again")
    ap.add_argument("--arm-ks", default="", help="placements: suffixes to run on the emulated A76 too")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = COMMANDS[args.command](args)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    path = OUT / f"{args.command}-{args.model}{'-text' if args.text else ''}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    _say(f"wrote {path} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
