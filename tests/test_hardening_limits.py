"""Hardening: lying headers and sizes are refused before anything is allocated (see docs/guarantees.md).

A header claiming 10^9 layers or blobs, weight counts (``6=``, ``2=``, MemoryData/LSTM/Gemm sizes) far
larger than the ``.bin``, an old-style array claiming 10^9 elements, ``Input`` sizes of 10^15 values
and ``.npy`` headers in a shard claiming 80 GB: each is a one-line project error, and memory stays
bounded. Measured two ways: ``tracemalloc`` peak per load (bound: 256 KiB + 64 bytes per byte of
``.param`` text), and the peak RSS of a child process loading every case under a 2 GiB address-space
limit (bound: 32 MiB more than after its imports; the real 10 MB ``.bin`` is memory-mapped, not read).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ncnnpass.ir.errors import NcnnpassError, ParamSemanticError, ParamSyntaxError, WeightError
from ncnnpass.ir.loader import graph_from_text

H = "7767517\n"
TRACEMALLOC_BOUND = 256 << 10
PER_PARAM_BYTE = 64  # the records of a .param that parses (the real model's 9.5 KB text: ~320 KB)
RSS_GROWTH_BOUND_MB = 32
ADDRESS_SPACE = 2 << 30


def _tag(t: int) -> bytes:
    return t.to_bytes(4, "little")


# name -> (param text, bin bytes or None, expected error, fragment of the message)
LIES = {
    "header 10^9 layers and blobs": (H + "1000000000 1000000000\nInput in 0 1 x\n", None, ParamSemanticError,
                                     "header says 1000000000 layers"),
    "header 10^9 blobs": (H + "1 1000000000\nInput in 0 1 x\n", None, ParamSemanticError, "1000000000 blobs"),
    "Convolution 6=10^9": (H + "2 2\nInput in 0 1 x\nConvolution c 1 1 x y 0=1 1=1 5=1 6=1000000000\n",
                           bytes(8), WeightError, "needs 4000000004 bytes"),
    "InnerProduct 2=2*10^9": (H + "2 2\nInput in 0 1 x\nInnerProduct c 1 1 x y 0=1 2=2000000000\n",
                              bytes(64), WeightError, "too short"),
    "fp16 flag, 2^31 values": (H + "2 2\nInput in 0 1 x\nConvolution c 1 1 x y 0=1 1=1 6=2147483647\n",
                               _tag(0x01306B47) + bytes(60), WeightError, "fp16"),
    "quantization table, 2*10^9 values": (H + "2 2\nInput in 0 1 x\nConvolution c 1 1 x y 0=1 1=1 6=2000000000\n",
                                          _tag(0x12345678) + bytes(1024), WeightError, "table"),
    "MemoryData 2^31^4 values": (H + "1 1\nMemoryData m 0 1 y 0=2147483647 1=2147483647 2=2147483647 "
                                 "11=2147483647\n", bytes(16), WeightError, "too short"),
    "LSTM 2^31 hidden": (H + "2 2\nInput in 0 1 x\nLSTM l 1 1 x y 0=2147483647 1=2147483647 3=2147483647\n",
                         bytes(16), WeightError, "too short"),
    "Gemm 2^31 x 2^31": (H + "2 2\nInput in 0 1 x\nGemm g 1 1 x y 4=1 5=1 6=1 7=2147483647 8=2147483647 "
                         "9=2147483647 10=3\n", bytes(16), WeightError, "too short"),
    "Gemm negative x negative": (H + "2 2\nInput in 0 1 x\nGemm g 1 1 x y 4=1 7=-2147483648 9=-2147483648\n",
                                 bytes(16), WeightError, "too short"),
    "old-style array 10^9 elements": (H + "2 2\nInput in 0 1 x\nReshape r 1 1 x y -23310=1000000000,1\n", None,
                                      ParamSyntaxError, "header says 1000000000"),
    "blob count 10^9 on a layer": (H + "2 2\nInput in 0 1 x\nConcat c 1000000000 1 x y\n", None,
                                   ParamSyntaxError, "declares 1000000000 inputs"),
    "number of 5000 digits": (H + "2 2\nInput in 0 1 x\nReLU r 1 1 x y 0=" + "9" * 5000 + "\n", None,
                              ParamSyntaxError, "more than 600 digits"),
}


def _warm_up() -> None:
    """Build the lark parser once (its tables are ~1 MB, allocated on first use) before measuring."""
    from ncnnpass.ir.parser import parse_lark

    try:
        parse_lark(H + "1 1\n=")
    except ParamSyntaxError:
        pass


@pytest.mark.parametrize("name", list(LIES))
def test_lying_sizes_are_refused_before_allocating(name):
    _warm_up()
    text, bin, error, fragment = LIES[name]
    tracemalloc.start()
    try:
        with pytest.raises(error, match=fragment.replace("^", r"\^")) as info:
            graph_from_text(text, bin)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(info.value, NcnnpassError)
    assert peak < TRACEMALLOC_BOUND, f"{name}: {peak} bytes allocated while refusing"
    assert len(str(info.value)) < 400


CHILD = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    from ncnnpass.ir.errors import NcnnpassError
    from ncnnpass.ir.loader import load_graph
    from ncnnpass.passes.paddle.centers import merge_shards
    from ncnnpass.ir.parser import parse_lark
    cases = json.loads(sys.argv[1])
    try:
        parse_lark("7767517\\n1 1\\n=")  # build the lark tables before measuring
    except NcnnpassError:
        pass
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {}
    for name, (param, bin) in cases.items():
        tracemalloc.start()
        try:
            if param.endswith(".npz"):
                merge_shards([param])
            else:
                load_graph(param, bin).check()
            kind = "loaded"
        except NcnnpassError as exc:
            kind = type(exc).__name__
        out[name] = [kind, tracemalloc.get_traced_memory()[1]]
        tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"cases": out, "rss_base_kb": base, "rss_peak_kb": peak}))
""")


def _lying_npz(path: Path) -> None:
    """A shard whose sums.npy header claims 10^5 x 10^5 float64 (80 GB) over 64 bytes of data."""
    import io

    from numpy.lib import format as npy

    def member(shape, dtype) -> bytes:
        buf = io.BytesIO()
        npy.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
        return buf.getvalue() + bytes(64)

    meta = io.BytesIO()
    np.save(meta, np.array(json.dumps({"format": "ncnnpass-center-shard/1"})))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("sums.npy", member((100000, 100000), "<f8"))
        z.writestr("counts.npy", member((100000,), "<i8"))
        z.writestr("meta.npy", meta.getvalue())


def test_memory_stays_bounded_in_a_child_under_an_address_space_limit(tmp_path, ppocrv3_rec_ncnn):
    """Every lie, plus the real PP-OCRv3 model with lying header counts and weight sizes, loaded in a child
    limited to 2 GiB of address space: project errors only, RSS growth under 32 MiB."""
    cases = {}
    for k, (name, (text, bin, _, _)) in enumerate(LIES.items()):
        p = tmp_path / f"lie{k}.param"
        p.write_text(text)
        b = None
        if bin is not None:
            b = tmp_path / f"lie{k}.bin"
            b.write_bytes(bin)
        cases[name] = [str(p), None if b is None else str(b)]
    real_param, real_bin = ppocrv3_rec_ncnn
    lines = real_param.read_text().split("\n")
    lines[1] = "1000000000 1000000000"
    (tmp_path / "real-header.param").write_text("\n".join(lines))
    cases["real model, header 10^9"] = [str(tmp_path / "real-header.param"), str(real_bin)]
    text = real_param.read_text().replace(" 6=432", " 6=1000000000", 1)
    (tmp_path / "real-weights.param").write_text(text)
    cases["real model, 6=10^9"] = [str(tmp_path / "real-weights.param"), str(real_bin)]
    _lying_npz(tmp_path / "lie.npz")
    cases["shard .npy header 80 GB"] = [str(tmp_path / "lie.npz"), None]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], capture_output=True, text=True,
                          preexec_fn=limit, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    for name, (kind, peak) in report["cases"].items():
        assert kind != "loaded", f"{name}: a lying file was accepted"
        bound = TRACEMALLOC_BOUND + PER_PARAM_BYTE * os.path.getsize(cases[name][0])
        assert peak < bound, f"{name}: {peak} bytes traced (bound {bound})"
    growth_mb = (report["rss_peak_kb"] - report["rss_base_kb"]) / 1024
    assert growth_mb < RSS_GROWTH_BOUND_MB, f"RSS grew by {growth_mb:.1f} MiB"


def test_lying_input_sizes_are_refused_before_allocating(tmp_path):
    """``Input 0=100000 1=100000 2=100`` drove np.zeros(10^12) in run --verify / shape inference."""
    (tmp_path / "m.param").write_text(H + "2 2\nInput in 0 1 x 0=100000 1=100000 2=100\nReLU r 1 1 x y\n")
    (tmp_path / "m.bin").write_bytes(b"")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    for extra in (["--verify"], ["--pipeline", "optimize"]):
        proc = subprocess.run([sys.executable, "-m", "ncnnpass.cli.main", "run", "m.param", "m.bin", "-o", "o.param",
                               "o.bin", *extra], cwd=tmp_path, capture_output=True, text=True, preexec_fn=limit,
                              timeout=120)
        assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-2000:]
        if extra == ["--verify"]:
            assert proc.returncode == 1 and "more than the 67108864" in proc.stderr
        else:  # the passes that need shapes are skipped; the model is written
            assert proc.returncode == 0, proc.stderr


def test_own_process_rss_is_not_touched_by_the_lies():
    """The in-process loads above (and this module) kept this process far below the lies' claims."""
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 8 << 20  # KiB: 8 GiB, vs 10^11 bytes claimed


def test_ncnn_blob_with_negative_dims_is_a_project_error():
    """``Reshape 0=-5 1=-7``: ncnn returns success and a Mat of w=-5; was a numpy ValueError traceback."""
    from ncnnpass.ir.errors import RuntimeBridgeError
    from ncnnpass.ir.runtime import run

    g = graph_from_text(H + "2 2\nInput in 0 1 x 0=8 1=8 2=3\nReshape r 1 1 x y 0=-5 1=-7\n", b"")
    with pytest.raises(RuntimeBridgeError, match="invalid shape w=-5 h=-7"):
        run(g, np.zeros((3, 8, 8), np.float32))
