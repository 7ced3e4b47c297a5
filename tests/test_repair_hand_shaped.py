"""Hand-shaped files of the real PP-OCRv3 rec model through ``repair``, against onnxruntime.

The pnnx conversion (fp16=0) is edited *as text*, the way people edit onnx2ncnn output, into the other
shapes its two SE blocks take in shipped files; the ``.bin`` is pnnx's own, byte for byte (InnerProduct
and 1×1 Convolution store the same bytes; Pooling, Reduction and ReLU have none):

* ``seed``: onnx2ncnn + ncnnoptimize, ONNX tensor names, the seed's own lines verbatim (tabs included):
  ``Pooling 0=1 4=1`` + ``InnerProduct 9=1`` + ``InnerProduct``;
* ``onnx2ncnn``: ``Pooling 0=1 4=1`` + 1×1 ``Convolution`` on the 1-D blob + ``ReLU`` + ``Convolution``;
* ``mean``/``mean-keepdims``: a PPLCNetV4-style mean ``Reduction`` over h,w (1-D, or c×1×1) + InnerProducts;
* ``mean-keepdims-conv``: pnnx's PPLCNetV4 form, ``Reduction 4=1`` + 1×1 Convolutions (no loss: left alone).

Each file must compute the pnnx model under fp32 options (|diff| ≤ 1e-5: the same model), and after
``repair`` its error against onnxruntime under ncnn's DEFAULT options must be ≤ 1e-5 (the fp32 floor is
~5e-6; the InnerProduct forms start at ~1.7e-4 on x86 with F16C). Input: seeded uniform [-1, 1], 1×3×48×320.
"""

from __future__ import annotations

import re
from pathlib import Path

import fixtures
import numpy as np
import pytest
from support.ncnn_check import load_files, run_net

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.passes import apply_passes

ACCEPT = 1e-5
SHAPE = (1, 3, 48, 320)

# The seed's lines, verbatim (onnx2ncnn names; ncnnoptimize turned the convolutions into InnerProducts).
SEED_LINES = [
    "Pooling                         p2o.GlobalAveragePool.0  1 1 batch_norm_50.tmp_4_splitncnn_1 "
    "p2o.GlobalAveragePool.1 0=1 4=1",
    "InnerProduct             p2o.Conv.24              \t\t\t\t1 1 p2o.GlobalAveragePool.1 relu_2.tmp_0 "
    "0=64 1=1 2=16384 9=1",
    "InnerProduct             p2o.Conv.25             \t\t\t\t1 1 relu_2.tmp_0 conv2d_110.tmp_0 0=256 1=1 2=16384",
    "Pooling                  \t\tp2o.GlobalAveragePool.2  1 1 batch_norm_52.tmp_4_splitncnn_1 "
    "p2o.GlobalAveragePool.3 0=1 4=1",
    "InnerProduct             p2o.Conv.28              \t\t\t  1 1 p2o.GlobalAveragePool.3 relu_3.tmp_0 "
    "0=128 1=1 2=65536 9=1",
    "InnerProduct             p2o.Conv.29           \t\t\t\t  1 1 relu_3.tmp_0 conv2d_113.tmp_0 0=512 1=1 2=65536",
]
# The seed author's own repair of the same lines (adaptive pooling, convolutions, an extra ReLU).
SEED_REPAIRED = [
    "Pooling                  \t\tp2o.GlobalAveragePool.0  1 1 batch_norm_50.tmp_4_splitncnn_1 "
    "p2o.GlobalAveragePool.1 0=1 7=1 8=1 5=1",
    "Convolution              p2o.Conv.24              \t\t\t  1 1 p2o.GlobalAveragePool.1 conv2d_120.tmp_0 "
    "0=64 1=1 5=1 6=16384 9=1",
    "ReLU                     \t\tp20.ReLU.1               \t\t\t\t  1 1 conv2d_120.tmp_0 relu_2.tmp_0",
    "Convolution              p2o.Conv.25            \t\t\t\t  1 1 relu_2.tmp_0 conv2d_110.tmp_0 0=256 1=1 5=1 6=16384",
    "Pooling                  \t\tp2o.GlobalAveragePool.2  1 1 batch_norm_52.tmp_4_splitncnn_1 "
    "p2o.GlobalAveragePool.3 0=1 7=1 8=1 5=1",
    "Convolution              p2o.Conv.28              \t\t\t  1 1 p2o.GlobalAveragePool.3 conv2d_121.tmp_0 "
    "0=128 1=1 5=1 6=65536 9=1",
    "ReLU                     \t\tp20.ReLU.2               \t\t\t  \t  1 1 conv2d_121.tmp_0 relu_3.tmp_0",
    "Convolution              p2o.Conv.29              \t\t\t  1 1 relu_3.tmp_0 conv2d_113.tmp_0 0=512 1=1 5=1 6=65536",
]
# onnx2ncnn tensor names of the two SE blocks (block k: input, pooled, fc1 out, fc2 out; layer names).
NAMES = [
    ("batch_norm_50.tmp_4", "p2o.GlobalAveragePool.1", "relu_2.tmp_0", "conv2d_110.tmp_0",
     "p2o.GlobalAveragePool.0", "p2o.Conv.24", "p2o.Conv.25", "splitncnn_20"),
    ("batch_norm_52.tmp_4", "p2o.GlobalAveragePool.3", "relu_3.tmp_0", "conv2d_113.tmp_0",
     "p2o.GlobalAveragePool.2", "p2o.Conv.28", "p2o.Conv.29", "splitncnn_21"),
]


def _lines(text: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines()]


def se_blocks(rows: list[list[str]]) -> list[dict[str, int]]:
    """Row indices of each ``Split -> Pooling 4=1 -> InnerProduct -> InnerProduct`` SE block."""
    producer = {b: i for i, r in enumerate(rows[2:], 2) for b in r[4 + int(r[2]):4 + int(r[2]) + int(r[3])]}
    readers: dict[str, list[int]] = {}
    for i, r in enumerate(rows[2:], 2):
        for b in r[4:4 + int(r[2])]:
            readers.setdefault(b, []).append(i)
    blocks = []
    for i, r in enumerate(rows):
        if i >= 2 and r[0] == "Pooling" and "4=1" in r:
            fc1 = readers[r[5]][0]
            fc2 = readers[rows[fc1][5]][0]
            split = producer[r[4]]
            assert rows[fc1][0] == rows[fc2][0] == "InnerProduct" and rows[split][0] == "Split"
            blocks.append({"split": split, "pool": i, "fc1": fc1, "fc2": fc2})
    return blocks


def hand_shaped(pnnx_param: Path, form: str) -> str:
    """The pnnx ``.param`` text edited into ``form`` (see the module docstring)."""
    rows = _lines(pnnx_param.read_text())
    blocks = se_blocks(rows)
    assert len(blocks) == 2
    rename: dict[str, str] = {}
    for blk, (x, pooled, h, s, pool_name, fc1_name, fc2_name, split_name) in zip(blocks, NAMES, strict=True):
        sp, pool, fc1, fc2 = rows[blk["split"]], rows[blk["pool"]], rows[blk["fc1"]], rows[blk["fc2"]]
        tops = sp[5:7]
        rename.update({sp[4]: x, pool[4]: f"{x}_splitncnn_1", pool[5]: pooled, fc1[5]: h, fc2[5]: s,
                       pool[1]: pool_name, fc1[1]: fc1_name, fc2[1]: fc2_name, sp[1]: split_name})
        other = tops[0] if tops[1] == pool[4] else tops[1]
        rename[other] = f"{x}_splitncnn_0"
    out: list[str] = []
    for r in rows[2:]:
        n = 4 + int(r[2]) + int(r[3])
        r = r[:1] + [rename.get(t, t) for t in r[1:2]] + r[2:4] + [rename.get(t, t) for t in r[4:n]] + r[n:]
        out.append(" ".join(r))
    text = "\n".join(out)
    seed = iter(SEED_LINES)
    for blk in blocks:  # the seed's lines are exactly these three layers (whitespace aside)
        for key in ("pool", "fc1", "fc2"):
            line = next(seed)
            k = blk[key] - 2
            assert out[k].split() == line.split(), (out[k], line)
            out[k] = line
    if form == "seed":
        text = "\n".join(out)
    elif form == "onnx2ncnn":
        for (_, _, h, _, _, fc1, fc2, _), k in zip(NAMES, ("120", "121"), strict=True):
            c1 = f"conv2d_{k}.tmp_0"
            text = re.sub(rf"InnerProduct\s+{re.escape(fc1)}\s+1 1 (\S+) {h} 0=(\d+) 1=1 2=(\d+) 9=1",
                          rf"Convolution {fc1} 1 1 \1 {c1} 0=\2 1=1 5=1 6=\3\nReLU p2o.Relu.{k} 1 1 {c1} {h}", text)
            text = re.sub(rf"InnerProduct\s+{re.escape(fc2)}\s+1 1 (\S+) (\S+) 0=(\d+) 1=1 2=(\d+)",
                          rf"Convolution {fc2} 1 1 \1 \2 0=\3 1=1 5=1 6=\4", text)
    elif form.startswith("mean"):
        keep = 1 if "keepdims" in form else 0
        for x, pooled, *_ in NAMES:
            text = re.sub(rf"Pooling\s+(\S+)\s+1 1 ({re.escape(x)}_splitncnn_1) {re.escape(pooled)} 0=1 4=1",
                          rf"Reduction \1 1 1 \2 {pooled} 0=3 1=0 -23303=2,1,2 4={keep} 5=1", text)
        for *_, fc1, fc2, _ in NAMES if form == "mean-keepdims-conv" else ():
            for fc in (fc1, fc2):
                text = re.sub(rf"InnerProduct(\s+{re.escape(fc)}\s+1 1 \S+ \S+ )0=(\d+) 1=1 2=(\d+)",
                              r"Convolution\1 0=\2 1=1 5=1 6=\3", text)
    else:
        raise AssertionError(form)
    body = [ln for ln in text.splitlines() if ln.strip()]
    blobs = {t for ln in body for t in ln.split()[4:4 + int(ln.split()[2]) + int(ln.split()[3])]}
    return f"{rows[0][0]}\n{len(body)} {len(blobs)}\n" + "\n".join(body) + "\n"


def _ort(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0][0]


def _run(param: Path, bin_: Path, x: np.ndarray, preset: str) -> np.ndarray:
    net = load_files(param, bin_, preset)
    return run_net(net, {"in0": x[0]}, ["out0"])["out0"]


@pytest.fixture(scope="module")
def reference(ppocrv3_rec_onnx: Path):
    param, bin_ = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    x = np.random.default_rng(0).uniform(-1, 1, SHAPE).astype(np.float32)
    return Path(param), Path(bin_), x, _ort(ppocrv3_rec_onnx, x)


@pytest.mark.real
@pytest.mark.parametrize("form, lossy", [
    ("seed", True), ("onnx2ncnn", False), ("mean", True), ("mean-keepdims", True), ("mean-keepdims-conv", False),
])
def test_hand_shaped_file_is_repaired_to_the_fp32_floor(reference, tmp_path: Path, form: str, lossy: bool) -> None:
    pnnx_param, bin_, x, ref = reference
    param = tmp_path / f"{form}.param"
    param.write_text(hand_shaped(pnnx_param, form))
    pnnx_fp32 = _run(pnnx_param, bin_, x, "fp32")
    before_fp32 = _run(param, bin_, x, "fp32")
    assert np.abs(before_fp32 - pnnx_fp32).max() <= ACCEPT  # the hand-shaped file is the same model
    err_before = float(np.abs(_run(param, bin_, x, "default") - ref).max())

    g = Graph.load(str(param), str(bin_))
    report = apply_passes(g, "repair")
    out_param, out_bin = tmp_path / "fixed.param", tmp_path / "fixed.bin"
    g.save(str(out_param), str(out_bin))
    assert out_bin.read_bytes() == bin_.read_bytes()  # same weight bytes, same order
    err_after = float(np.abs(_run(out_param, out_bin, x, "default") - ref).max())
    floor = float(np.abs(before_fp32 - ref).max())
    print(f"{form}: default {err_before:.3g} -> {err_after:.3g}, fp32 floor {floor:.3g}, {report.counts}")
    assert err_after <= ACCEPT, f"{form}: after repair {err_after:.3g} (before {err_before:.3g})"
    assert g.count_by_type("InnerProduct") == 0 and g.count_by_type("Reduction") == (2 if not lossy and
                                                                                     "mean" in form else 0)
    if form == "mean-keepdims-conv":
        assert not report.changed  # already fp32 on x86: left alone
    else:
        adaptive = [p for p in g.find("Pooling") if p.get("adaptive_pooling")]
        assert len(adaptive) == 2 and g.count_by_type("Flatten") == 0
    if lossy:
        assert err_before > ACCEPT  # the form really loses precision under default options


@pytest.mark.real
def test_seed_file_through_the_cli_matches_the_seed_authors_hand_repair(reference, tmp_path: Path, capsys) -> None:
    pnnx_param, bin_, x, ref = reference
    param = tmp_path / "seed.param"
    text = hand_shaped(pnnx_param, "seed")
    param.write_text(text)
    out = [str(tmp_path / "fixed.param"), str(tmp_path / "fixed.bin")]
    assert main(["run", str(param), str(bin_), "-o", *out, "--pipeline", "repair", "--verify",
                 "--shape", "3,48,320"]) == 0
    fixed = [ln.split() for ln in Path(out[0]).read_text().splitlines()]
    assert any(r[:2] == ["Pooling", "p2o.GlobalAveragePool.0"] and "7=1" in r for r in fixed)
    # the seed author's hand repair of the same lines, in the same file
    hand = text
    for old, new in zip(SEED_LINES, [SEED_REPAIRED[i] for i in (0, 1, 3, 4, 5, 7)], strict=True):
        hand = hand.replace(old, new)
    for k, relu in ((1, 2), (5, 6)):
        conv = SEED_REPAIRED[k]
        hand = hand.replace(conv, conv + "\n" + SEED_REPAIRED[relu])
    rows = [ln for ln in hand.splitlines()[2:] if ln.strip()]
    blobs = {t for ln in rows for t in ln.split()[4:4 + int(ln.split()[2]) + int(ln.split()[3])]}
    hand_param = tmp_path / "hand.param"
    hand_param.write_text(f"7767517\n{len(rows)} {len(blobs)}\n" + "\n".join(rows) + "\n")
    ours = _run(Path(out[0]), Path(out[1]), x, "default")
    theirs = _run(hand_param, bin_, x, "default")
    assert np.abs(ours - theirs).max() <= 2e-6
    assert np.abs(ours - ref).max() <= ACCEPT


@pytest.mark.real
@pytest.mark.parametrize("form", ["onnx2ncnn", "mean"])
def test_fp16_weight_file_keeps_its_bytes(tmp_path: Path, form: str) -> None:
    """pnnx fp16=1: the weights stay fp16, byte for byte; results change only by float rounding (fp32 options)."""
    pnnx_param, bin_ = (Path(p) for p in fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(True),
                                                           "pnnx conversion of PP-OCRv3 rec (fp16=1)"))
    param = tmp_path / f"{form}.param"
    param.write_text(hand_shaped(pnnx_param, form))
    g = Graph.load(str(param), str(bin_))
    assert apply_passes(g, "repair").changed
    out_param, out_bin = tmp_path / "fixed.param", tmp_path / "fixed.bin"
    g.save(str(out_param), str(out_bin))
    assert out_bin.read_bytes() == bin_.read_bytes()
    assert {g.layer(n).weights["weight"].storage for n in ("p2o.Conv.24", "p2o.Conv.29")} == {"fp16"}
    x = np.random.default_rng(0).uniform(-1, 1, SHAPE).astype(np.float32)
    assert np.abs(_run(out_param, out_bin, x, "fp32") - _run(param, bin_, x, "fp32")).max() <= 2e-6
