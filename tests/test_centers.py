"""export-center / merge-centers on the real PP-OCRv3 rec ONNX with rendered text lines of known labels.

The expected centers come from a deliberately plain computation in this file: one image at a time,
preprocessing written out again, a per-frame Python loop for CTC decoding and for the float64 sums.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import random
import string
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from support.text_images import random_texts, render_line, write_dataset

from ncnnpass.cli.main import main
from ncnnpass.passes.measure.ctc_decode import Charset
from ncnnpass.passes.measure.label_files import read_label_files
from ncnnpass.passes.measure.rec_preprocess import resize_norm_img
from ncnnpass.passes.onnx.ctc_feats import add_ctc_feats
from ncnnpass.passes.paddle.centers import (
    CenterDataError,
    CenterOptions,
    CenterSums,
    dumps_centers,
    export_centers,
    load_centers,
)

CENTER_RTOL, CENTER_ATOL = 1e-5, 1e-5  # batched vs one-image onnxruntime runs (v3: measured 0.0)
SHARD_RTOL, SHARD_ATOL = 1e-6, 1e-7  # merged shards vs one run: float64 summation order only


# ----------------------------------------------------------------------------- the independent reference


def reference_input(path: Path, height: int = 48, width: int = 320) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, like PaddleOCR's DecodeImage
    h, w = img.shape[:2]
    new_w = min(width, math.ceil(height * w / h))
    pixels = cv2.resize(img, (new_w, height)).astype(np.float32) / 255
    pixels = (pixels - 0.5) / 0.5
    x = np.zeros((3, height, width), np.float32)  # right padding: 0 after normalisation
    x[:, :, :new_w] = pixels.transpose(2, 0, 1)
    return x


def reference_centers(model: onnx.ModelProto, samples: list[tuple[Path, str]], characters: list[str]):
    """Plain loop: returns (centers float32 dict, counts dict, recognized flags)."""
    res = add_ctc_feats(model)
    sess = ort.InferenceSession(res.model.SerializeToString(), providers=["CPUExecutionProvider"])
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    recognized = []
    for path, label in samples:
        feats, logits = sess.run([res.feats, res.logits], {"x": reference_input(path)[None]})
        best = [int(np.argmax(logits[0, t])) for t in range(logits.shape[1])]
        text, prev = "", -1
        for k in best:
            if k != prev and k != 0:
                text += characters[k]
            prev = k
        recognized.append(text == label)
        if text != label:
            continue
        for t, k in enumerate(best):
            sums[k] = sums.get(k, np.zeros(feats.shape[-1], np.float64)) + feats[0, t].astype(np.float64)
            counts[k] = counts.get(k, 0) + 1
    centers = {k: (sums[k] / counts[k]).astype(np.float32) for k in sums}
    return centers, counts, recognized


def v3_characters(model: onnx.ModelProto) -> list[str]:
    meta = {p.key: p.value for p in model.metadata_props}["character"].split("\n")
    return ["blank"] + meta + [" "]


# ----------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec_data")
    good = write_dataset(root, random_texts(40, seed=11), seed=11, name="good.txt", subdir="good")
    # letters and digits a recognizer may confuse (0/O, l/1, c/C, ...): some will be misread
    rng = random.Random(7)
    hard_texts = ["".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(4, 9)))
                  for _ in range(10)]
    hard = write_dataset(root, hard_texts, seed=7, name="hard.txt", subdir="hard")
    # the same good lines with one rendered image whose label is wrong, inserted in the middle
    render_line("KYm7Qd", size=32).save(root / "wrong.png")
    lines = good.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(len(lines) // 2, "wrong.png\tKYm7Qb\n")
    with_wrong = root / "good_with_wrong.txt"
    with_wrong.write_text("".join(lines), encoding="utf-8")
    return {"root": root, "good": good, "hard": hard, "with_wrong": with_wrong}


@pytest.fixture(scope="module")
def v3(ppocrv3_rec_onnx) -> onnx.ModelProto:
    return onnx.load(str(ppocrv3_rec_onnx))


@pytest.fixture(scope="module")
def single_run(data, ppocrv3_rec_onnx, tmp_path_factory):
    """One CLI run over good + hard (the run the other tests compare with)."""
    out = tmp_path_factory.mktemp("single") / "train_center.pkl"
    code = main(["export-center", str(ppocrv3_rec_onnx), "--label-file", str(data["good"]), "--label-file",
                 str(data["hard"]), "--data-dir", str(data["root"]), "--batch-size", "16", "-o", str(out)])
    assert code == 0
    return out


def samples_of(data, *names) -> list[tuple[Path, str]]:
    out = []
    for name in names:
        for line in data[name].read_text(encoding="utf-8").splitlines():
            rel, label = line.split("\t")
            out.append((data["root"] / rel, label))
    return out


# ----------------------------------------------------------------------------- tests


@pytest.mark.real
def test_preprocessing_matches_reference(data):
    for path, _ in samples_of(data, "good")[:5] + samples_of(data, "hard")[:3]:
        img = cv2.imread(str(path))
        ours, resized_w = resize_norm_img(img, (3, 48, 320))
        np.testing.assert_array_equal(ours, reference_input(path))
        assert resized_w <= 320 and np.all(ours[:, :, resized_w:] == 0)
    wide = np.full((20, 1000, 3), 255, np.uint8)  # squeezed to 320 / widened in eval_mode
    assert resize_norm_img(wide, (3, 48, 320))[0].shape == (3, 48, 320)
    assert resize_norm_img(wide, (3, 48, 320), eval_mode=True)[0].shape == (3, 48, 2400)


def test_ctc_decode_rules():
    cs = Charset(["a", "b"], use_space_char=True)
    assert cs.characters == ["blank", "a", "b", " "]
    assert cs.decode(np.array([[1, 0, 1, 1, 2, 2, 0, 3, 0]])) == ["aab "]
    assert cs.encode_label("a€b") == ("ab", "€")


@pytest.mark.real
def test_centers_match_independent_computation(single_run, data, v3):
    samples = samples_of(data, "good", "hard")
    expected, counts, recognized = reference_centers(v3, samples, v3_characters(v3))
    good_rate = sum(recognized[:40]) / 40
    assert good_rate >= 0.9, f"only {good_rate:.0%} of the rendered lines are recognized"
    assert not all(recognized[40:]), "the 'hard' lines were meant to include misreadings"

    raw = single_run.read_bytes()
    got = load_centers(single_run)
    assert set(got) == set(expected)
    assert all(type(k) is int for k in got)
    assert all(v.dtype == np.float32 and v.shape == (64,) for v in got.values())
    worst = max(float(np.abs(got[k] - expected[k]).max()) for k in got)
    for k in got:
        np.testing.assert_allclose(got[k], expected[k], rtol=CENTER_RTOL, atol=CENTER_ATOL)
    assert worst < 1e-5

    side = json.loads(Path(str(single_run) + ".json").read_text(encoding="utf-8"))
    assert side["feat_dim"] == 64 and side["num_classes"] == 6625
    assert side["dictionary_size"] == 6623 and side["use_space_char"] is True
    assert side["use_space_char_inferred"] is True
    assert side["counts"] == {str(k): v for k, v in sorted(counts.items())}
    assert side["samples_used"] == sum(recognized) and side["samples_total"] == len(samples)
    assert side["samples_misrecognized"] == len(samples) - sum(recognized)
    assert side["classes_covered"] == len(expected)
    assert side["chars"]["0"] == "<blank>"
    assert side["center_loss"] == {"num_classes": 6625, "feat_dim": 64, "center_file_path": str(single_run)}
    assert "inference mode" in side["features"]
    # version-neutral pickle: only numpy.array / numpy.frombuffer are referenced, never numpy._core
    assert b"numpy._core" not in raw and b"numpy.core" not in raw

    class OnlyTwoNames(pickle.Unpickler):
        def find_class(self, module, name):
            assert (module, name) in {("numpy", "array"), ("numpy", "frombuffer")}, (module, name)
            return super().find_class(module, name)

    again = OnlyTwoNames(io.BytesIO(raw)).load()
    assert all(again[k].flags.writeable and np.array_equal(again[k], got[k]) for k in got)


@pytest.mark.real
def test_mislabeled_image_changes_nothing(single_run, data, ppocrv3_rec_onnx, tmp_path):
    out = tmp_path / "c.pkl"
    run = export_centers(ppocrv3_rec_onnx, [data["with_wrong"], data["hard"]], data["root"], out,
                         options=CenterOptions(batch_size=16))
    base = json.loads(Path(str(single_run) + ".json").read_text(encoding="utf-8"))
    assert run.used == base["samples_used"] and run.misrecognized == base["samples_misrecognized"] + 1
    side = json.loads(Path(str(out) + ".json").read_text(encoding="utf-8"))
    assert side["counts"] == base["counts"]
    got, ref = load_centers(out), load_centers(single_run)
    assert set(got) == set(ref)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=SHARD_RTOL, atol=SHARD_ATOL)


@pytest.mark.real
def test_shards_merge_to_single_run(single_run, data, ppocrv3_rec_onnx, tmp_path, capsys):
    common = [str(ppocrv3_rec_onnx), "--label-file", str(data["good"]), "--label-file", str(data["hard"]),
              "--data-dir", str(data["root"]), "--batch-size", "16", "--no-progress"]
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"part{i}.npz")
        assert main(["export-center", *common, "--shard", f"{i}/3", "-o", str(parts[i])]) == 0
    with np.load(parts[0], allow_pickle=False) as z:  # plain arrays, no pickle
        assert z["sums"].dtype == np.float64 and z["counts"].dtype == np.int64
    merged = tmp_path / "merged.pkl"
    assert main(["merge-centers", *map(str, parts[::-1]), "-o", str(merged)]) == 0
    assert "3/3 shards" in capsys.readouterr().err
    got, ref = load_centers(merged), load_centers(single_run)
    assert set(got) == set(ref)
    worst = max(float(np.abs(got[k] - ref[k]).max()) for k in ref)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=SHARD_RTOL, atol=SHARD_ATOL)
    assert worst <= 1e-6
    side = json.loads(Path(str(merged) + ".json").read_text(encoding="utf-8"))
    base = json.loads(Path(str(single_run) + ".json").read_text(encoding="utf-8"))
    for key in ("counts", "samples_used", "samples_total", "frames", "classes_covered", "feat_dim"):
        assert side[key] == base[key], key

    # missing, repeated and foreign shards are refused
    assert main(["merge-centers", str(parts[0]), str(parts[2]), "-o", str(tmp_path / "m.pkl")]) == 1
    err = capsys.readouterr().err
    assert "missing shard(s) 1/3" in err and err.count("\n") == 1
    assert main(["merge-centers", str(parts[0]), str(parts[2]), "--allow-partial", "-o",
                 str(tmp_path / "m.pkl")]) == 0
    capsys.readouterr()
    assert main(["merge-centers", str(parts[0]), str(parts[0]), str(parts[1]), "-o", str(tmp_path / "m.pkl")]) == 1
    assert "given twice" in capsys.readouterr().err
    other = tmp_path / "other.npz"
    assert main(["export-center", *common, "--max-text-length", "6", "--shard", "1/3", "-o", str(other)]) == 0
    capsys.readouterr()
    assert main(["merge-centers", str(parts[0]), str(other), str(parts[2]), "-o", str(tmp_path / "m.pkl")]) == 1
    assert "max_text_length differs" in capsys.readouterr().err
    assert main(["merge-centers", str(data["good"]), "-o", str(tmp_path / "m.pkl")]) == 1
    assert "not a center shard" in capsys.readouterr().err


@pytest.mark.real
def test_reported_problems_are_not_fatal(data, ppocrv3_rec_onnx, tmp_path, capsys):
    root = data["root"]
    (root / "corrupt.png").write_bytes(b"\x89PNG not really")
    good = data["good"].read_text(encoding="utf-8").splitlines()
    messy = tmp_path / "messy.txt"
    messy.write_text("\n".join([
        good[0], good[1] + "\r", "",  # CRLF ending and a blank line: fine
        "good/0002.png no tab here",  # no tab
        "good/0003.png\t",  # empty label
        "../outside.png\tabc",  # leaves the data dir
        "/etc/hostname\tabc",  # absolute
        "good/missing.png\tabc",  # missing image
        "corrupt.png\tabc",  # undecodable image
        good[4] + "\u263a",  # a character outside the dictionary: dropped before comparing
    ]) + "\n", encoding="utf-8")
    out = tmp_path / "c.pkl"
    assert main(["export-center", str(ppocrv3_rec_onnx), "--label-file", str(messy), "--data-dir", str(root),
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "unreadable images (2)" in err and "missing.png: missing" in err and "not a decodable image" in err
    assert "label problems (skipped) (4)" in err
    for kind in ("no-tab", "empty-label", "outside-data-dir", "absolute-path"):
        assert kind in err
    assert "1 labels contain characters outside the dictionary" in err
    side = json.loads(Path(str(out) + ".json").read_text(encoding="utf-8"))
    assert side["samples_total"] == 5 and side["samples_used"] >= 2
    assert len(side["unreadable_images"]) == 2 and len(side["label_problems"]) == 4


def _one_line_error(capsys, command: str, fragment: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith(f"ncnnpass {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


@pytest.mark.real
def test_clear_errors(data, ppocrv3_rec_onnx, tmp_path, capsys):
    root, model = data["root"], str(ppocrv3_rec_onnx)

    def export(*extra: str, label: Path | None = None, out: str = "c.pkl", m: str = model) -> int:
        return main(["export-center", m, "--label-file", str(label or data["good"]), "--data-dir", str(root),
                     "-o", str(tmp_path / out), *extra])

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert export(label=empty) == 1
    _one_line_error(capsys, "export-center", "no usable samples")
    bad = tmp_path / "bad.txt"
    bad.write_text("just a path\nimg.png\t\n", encoding="utf-8")
    assert export(label=bad) == 1
    _one_line_error(capsys, "export-center", "no usable samples")
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("nope/a.png\tabc\nnope/b.png\tdef\n", encoding="utf-8")
    assert export(label=nothing) == 1
    _one_line_error(capsys, "export-center", "none of the 2 images exists")
    assert export(label=tmp_path / "no_such_labels.txt") == 1
    _one_line_error(capsys, "export-center", "No such file or directory")
    assert main(["export-center", model, "--label-file", str(data["good"]), "--data-dir",
                 str(tmp_path / "nope"), "-o", str(tmp_path / "c.pkl")]) == 1
    _one_line_error(capsys, "export-center", "data directory does not exist")

    # the dictionary must fit the model's classes
    small = tmp_path / "dict.txt"
    small.write_text("a\nb\nc\n", encoding="utf-8")
    assert export("--dict", str(small)) == 1
    _one_line_error(capsys, "export-center", "the model has 6625 classes but the dictionary")
    assert export("--no-use-space-char") == 1
    _one_line_error(capsys, "export-center", "add --use-space-char")

    # a model without a CTC head
    v3 = onnx.load(model)
    v3.graph.node[-1].op_type = "Sigmoid"
    del v3.graph.node[-1].attribute[:]
    no_head = tmp_path / "no_head.onnx"
    onnx.save(v3, str(no_head))
    assert export(m=str(no_head)) == 1
    _one_line_error(capsys, "export-center", "no CTC head found")

    # options
    assert export("--shard", "3/3", out="p.npz") == 1
    _one_line_error(capsys, "export-center", "0-based")
    assert export("--shard", "0/2", out="p.pkl") == 1
    _one_line_error(capsys, "export-center", "name it *.npz")
    static = onnx.load(model)
    for d, v in zip(static.graph.input[0].type.tensor_type.shape.dim[2:], (48, 320), strict=True):
        d.dim_value = v
    onnx.save(static, str(tmp_path / "static.onnx"))
    assert export("--image-shape", "3,32,320", m=str(tmp_path / "static.onnx")) == 1
    _one_line_error(capsys, "export-center", "does not fit the model input x (static height 48)")
    assert export("--image-shape", "1,48,320") == 1
    _one_line_error(capsys, "export-center", "only 3-channel")
    assert export(out=str(data["good"])) == 1
    _one_line_error(capsys, "export-center", "refusing to overwrite")
    assert not (tmp_path / "c.pkl").exists()


def test_label_paths_outside_data_dir_are_reported(tmp_path):
    (tmp_path / "data").mkdir()
    label = tmp_path / "l.txt"
    label.write_text("../x.png\tab\n/abs.png\tcd\nsub/../y.png\tef\n[\"p.png\", \"q.png\"]\tgh\n", encoding="utf-8")
    ls = read_label_files([str(label)], str(tmp_path / "data"))
    assert [p.kind for p in ls.problems] == ["outside-data-dir", "absolute-path"]
    assert [Path(s.path).name for s in ls.samples] == ["y.png", "p.png", "q.png"]
    followed = read_label_files([str(label)], str(tmp_path / "data"), allow_outside=True)
    assert len(followed.samples) == 5 and len(followed.problems) == 2


def test_sums_and_pickle_units():
    sums = CenterSums.zeros(5, 3)
    feats = np.arange(18, dtype=np.float32).reshape(6, 3)
    classes = np.array([4, 0, 4, 2, 0, 0])
    sums.add(feats, classes)
    expected = {0: feats[[1, 4, 5]].mean(0), 2: feats[3], 4: feats[[0, 2]].mean(0)}
    got = sums.centers()
    assert list(got) == [0, 2, 4] and sums.counts.tolist() == [3, 0, 1, 0, 2]
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32))
    loaded = pickle.loads(dumps_centers(got))
    assert list(loaded) == [0, 2, 4] and all(np.array_equal(loaded[k], got[k]) for k in got)
    with pytest.raises(CenterDataError, match="nothing to average"):
        from ncnnpass.passes.paddle.centers import write_centers

        write_centers("/tmp/never.pkl", CenterSums.zeros(5, 3), {}, {})


def test_the_pickle_and_its_sidecar_are_written_together(tmp_path, monkeypatch) -> None:
    """The centers pickle and its JSON sidecar are renamed as one step: when the sidecar cannot be written, the
    previous pickle stays (never a new pickle beside a stale sidecar), and no temporary file is left."""
    from ncnnpass.passes.paddle import center_files
    from ncnnpass.passes.paddle.centers import write_centers

    sums = CenterSums.zeros(5, 3)
    sums.add(np.ones((2, 3), dtype=np.float32), np.array([1, 3]))
    out = tmp_path / "centers.pkl"
    side = write_centers(out, sums, {"model": "m"}, {"samples": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["centers.pkl", "centers.pkl.json"]
    assert list(pickle.loads(out.read_bytes())) == [1, 3]
    before = (out.read_bytes(), side.read_bytes())
    sums.add(np.ones((1, 3), dtype=np.float32), np.array([4]))

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(center_files.json, "dumps", broken)
    with pytest.raises(OSError, match="disk full"):
        write_centers(out, sums, {"model": "m"}, {"samples": 3})
    assert (out.read_bytes(), side.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["centers.pkl", "centers.pkl.json"]


@pytest.mark.real
@pytest.mark.slow
def test_ppocrv4_paddle_dir_end_to_end(ppocrv4_rec_paddle_dir, ppocr_keys_v1, ppocrv4_rec_onnx, data, tmp_path):
    """Paddle inference directory -> paddle2onnx -> ctc-feats -> centers, checked like the v3 run."""
    out = tmp_path / "v4_center.pkl"
    assert main(["export-center", str(ppocrv4_rec_paddle_dir), "--dict", str(ppocr_keys_v1), "--label-file",
                 str(data["good"]), "--data-dir", str(data["root"]), "--no-progress", "-o", str(out)]) == 0
    side = json.loads(Path(str(out) + ".json").read_text(encoding="utf-8"))
    assert side["feat_dim"] == 120 and side["num_classes"] == 6625 and side["use_space_char"] is True
    assert side["samples_used"] >= 0.8 * side["samples_total"]  # measured 36/40
    v4 = onnx.load(str(ppocrv4_rec_onnx))
    characters = ["blank"] + [ln.rstrip("\r") for ln in ppocr_keys_v1.read_text(encoding="utf-8").split("\n")
                              if ln] + [" "]
    expected, counts, _ = reference_centers(v4, samples_of(data, "good"), characters)
    got = load_centers(out)
    assert set(got) == set(expected) and side["counts"] == {str(k): v for k, v in sorted(counts.items())}
    for k in got:  # v4 (SVTR neck) differs more between batched and one-image runs: measured 6.4e-6
        np.testing.assert_allclose(got[k], expected[k], rtol=CENTER_RTOL, atol=5e-5)
