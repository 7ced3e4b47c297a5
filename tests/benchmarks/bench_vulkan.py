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

from ncnnpass.ir import Graph, RuntimeBridgeError, runtime  # noqa: E402
from ncnnpass.ir.targets import open_target  # noqa: E402

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
    if name == "v3det":
        onnx = fixtures.ppocrv3_det_onnx()
        return Graph.load(*fixtures._ncnn(onnx, "ppocrv3_det", False, (1, 3, 320, 320))), str(onnx), (3, 320, 320)
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
    from ncnnpass.passes.engine.testing import fill_weights, model
    from ncnnpass.passes.precision.featmask_safety import (
        featmask_safe_closure,
        make_featmask_safe,
        mask_split,
    )

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


COMMANDS = {"synthetic": cmd_synthetic}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=sorted(COMMANDS))
    ap.add_argument("model", nargs="?", default="v3")
    ap.add_argument("--no-arm", action="store_true", help="skip the emulated phone")
    ap.add_argument("--lines", type=int, default=30, help="text lines for `lines`")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = COMMANDS[args.command](args)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    path = OUT / f"{args.command}-{args.model}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    _say(f"wrote {path} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
