"""The measurement core's data side: ``--images`` loading and its bad-input handling (exact messages), the
calibration/held-out split, label coverage, PaddleOCR's per-kind preprocessing, and the built-in data."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import fixtures
import numpy as np
import pytest

from ncnnpass.passes.measure.det_preprocess import DetResize, det_resize_for, det_resize_shape, det_tensor
from ncnnpass.passes.measure.image_sources import ImagesError, load_images
from ncnnpass.passes.measure.label_coverage import label_coverage
from ncnnpass.passes.measure.prepare import prepare_inputs
from ncnnpass.passes.measure.rec_preprocess import rec_batches, rec_tensor, resize_norm_img
from ncnnpass.passes.measure.samples import Provenance, Sample
from ncnnpass.passes.measure.split import split_samples


def _png(path: Path, w: int = 60, h: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), 230, np.uint8)
    cv2.putText(img, "ab", (2, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)
    return path


def test_folder_skips_unreadable_images_with_reasons(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "c.jpg")
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "d.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_images(tmp_path)
    assert [Path(s.path).name for s in data.samples] == ["a.png", "c.jpg"]
    assert data.form == "folder" and data.skipped == 2
    assert data.reasons == [f"{tmp_path / 'b.png'}: empty file", f"{tmp_path / 'd.jpg'}: not a decodable image"]
    assert "2 images from" in data.describe() and "2 skipped" in data.describe()
    assert data.samples[0].image().shape == (20, 60, 3)


def test_missing_path_and_nothing_usable_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ImagesError) as err:
        load_images(tmp_path / "nope")
    assert str(err.value) == f"--images {tmp_path / 'nope'}: no such file or directory"
    (tmp_path / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ImagesError) as err:
        load_images(tmp_path)
    assert str(err.value) == (f"--images {tmp_path}: no image files (1 skipped: {tmp_path / 'x.png'}: "
                              f"not a decodable image)")


def test_rec_label_file_lines_and_their_problems(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "1.png")
    _png(tmp_path / "img" / "2.png")
    (tmp_path / "img" / "bad.png").write_bytes(b"zzz")
    label = tmp_path / "rec_gt.txt"
    label.write_bytes("\n".join([
        "img/1.png\t中文 text", "img/2.png\tsecond\textra field", "no tab here", "img/3.png\tmissing",
        "img/bad.png\tbroken", "\timage-less", "img/1.png\t", "",
    ]).encode() + b"\nimg/1.png\t\xff\xfe\n")
    data = load_images(label)
    assert data.form == "rec-labels"
    assert [(s.text, s.provenance.line) for s in data.samples] == [("中文 text", 1), ("second", 2)]
    assert str(data.samples[0].provenance) == f"{label}:1 (img/1.png)"
    assert data.skipped == 6
    assert data.reasons == [
        f"{label}:3: no tab between image path and label",
        f"{label}:4: image img/3.png not found (looked in {tmp_path}, {tmp_path.parent})",
        f"{label}:5: img/bad.png: not a decodable image",
        f"{label}:6: empty image path",
        f"{label}:7: empty label",
    ]  # the 6th (line 9, not UTF-8) is counted, not listed
    assert data.describe().endswith("; ...")


def test_det_label_file_and_malformed_json(tmp_path: Path) -> None:
    # PPOCRLabel's layout: Label.txt inside the image folder, paths starting with the folder's name
    _png(tmp_path / "pics" / "p1.png", 200, 100)
    _png(tmp_path / "pics" / "p2.png", 200, 100)
    label = tmp_path / "pics" / "Label.txt"
    box = '{"transcription": "ab", "points": [[1, 2], [50, 2], [50, 20], [1, 20]]}'
    label.write_text("\n".join([
        f"pics/p1.png\t[{box}, {{\"transcription\": \"###\", \"points\": [[60, 5], [90, 5], [90, 15]]}}]",
        f"pics/p2.png\t[{box}",
        'pics/p2.png\t[{"transcription": "x"}]',
        'pics/p2.png\t[{"transcription": "x", "points": [[1, 2], [3]]}]',
        'pics/p2.png\t[{"transcription": 5, "points": [[1, 2], [3, 4], [5, 6]]}]',
        "pics/p2.png\t[]",
    ]), encoding="utf-8")
    data = load_images(label)
    assert data.form == "det-labels"
    assert len(data.samples) == 2 and data.samples[1].boxes == ()
    first = data.samples[0].boxes
    assert [b.text for b in first] == ["ab", "###"] and first[1].ignore and first[0].points.shape == (4, 2)
    assert data.reasons[0].startswith(f"{label}:2: det label is not valid JSON (")
    assert data.reasons[1:] == [f"{label}:3: det label item 1 has no \"points\"",
                                f"{label}:4: det label item 1: \"points\" must be a list of at least 3 [x, y] numbers",
                                f"{label}:5: det label item 1: \"transcription\" is not a string"]
    # an explicit data dir that does not hold the images
    other = tmp_path / "elsewhere"
    other.mkdir()
    with pytest.raises(ImagesError, match=r"no usable lines \(6 skipped: .*Label.txt:1: image pics/p1.png not found"):
        load_images(label, data_dir=other)


def test_label_characters_outside_the_dictionary_are_reported(tmp_path: Path) -> None:
    _png(tmp_path / "1.png")
    label = tmp_path / "gt.txt"
    label.write_text("1.png\tabé\n1.png\tab c\n1.png\tü é\n", encoding="utf-8")
    data = load_images(label)
    cov = label_coverage(data.samples, ["a", "b", "c"])  # + " " (use_space_char)
    assert cov.characters == {"é": 2, "ü": 1} and cov.affected == 2 and cov.labels == 3
    assert cov.describe() == (f"3 label characters outside the model's dictionary in 2 of 3 labels: 'é' x2, 'ü' x1 "
                              f"(first: {label}:1 (1.png); {label}:3 (1.png))")
    assert label_coverage(data.samples, ["a", "b", "c"], use_space_char=False).characters[" "] == 2


def _samples(n: int, offset: int = 0) -> list[Sample]:
    return [Sample(Provenance("rec-labels", "gt.txt", line=i, image=f"{i}.png", key=f"rec:{i}.png\tx"))
            for i in range(offset, offset + n)]


def test_split_is_seeded_and_stable_when_data_is_added() -> None:
    base = split_samples(_samples(400), 0.5, seed=7)
    assert 160 < len(base.held_out) < 240
    grown = split_samples(_samples(400) + _samples(300, offset=400), 0.5, seed=7)
    held = {s.provenance.key for s in grown.held_out}
    assert {s.provenance.key for s in base.held_out} <= held
    assert not {s.provenance.key for s in base.calibration} & held
    other = split_samples(_samples(400), 0.5, seed=8)
    assert {s.provenance.key for s in other.held_out} != {s.provenance.key for s in base.held_out}
    assert len(split_samples(_samples(50), 0.0).held_out) == 0 and len(split_samples(_samples(50), 1.0).calibration) == 0


def test_det_resize_rules_and_defaults(tmp_path: Path) -> None:
    assert det_resize_shape(1000, 2000) == (480, 960)  # max 960: longer side to 960, multiples of 32
    assert det_resize_shape(500, 700) == (512, 704)  # below the limit: only rounded to 32
    assert det_resize_shape(500, 700, DetResize(736, "min")) == (736, 1024)
    assert det_resize_shape(500, 700, DetResize(960, "resize_long")) == (672, 960)
    assert det_resize_shape(10, 5000, DetResize(64, "min")) == (32, 4000)  # 64 x 32000 > max_side_limit: 8 x 4000
    x, ratio = det_tensor(np.zeros((10, 20, 3), np.uint8))  # h + w < 64: padded to 32 x 32 first
    assert x.shape == (1, 3, 32, 32) and ratio == (1.0, 1.0)
    assert x[0, :, 0, 0] == pytest.approx([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rel=1e-6)
    (tmp_path / "inference.yml").write_text("PreProcess:\n  transform_ops:\n  - DetResizeForTest:\n"
                                            "      resize_long: 1280\n")
    assert det_resize_for(tmp_path) == DetResize(1280, "max")
    (tmp_path / "inference.yml").write_text("PreProcess:\n  transform_ops:\n  - DetResizeForTest:\n"
                                            "      limit_side_len: 64\n      limit_type: min\n")
    assert det_resize_for(tmp_path) == DetResize(64, "min")
    assert det_resize_for(None) == DetResize(960, "max")


def test_rec_input_width_follows_predict_rec() -> None:
    rng = np.random.default_rng(0)
    lines = [rng.integers(0, 255, (32, w, 3), dtype=np.uint8) for w in (40, 300, 90, 500)]
    one, content = rec_tensor(lines[1], (3, 48, 320))
    assert one.shape == (3, 48, 450) and content == 450  # own width: 48 * 300 / 32
    assert np.array_equal(one, resize_norm_img(lines[1], (3, 48, 320), eval_mode=True)[0])
    short, content = rec_tensor(lines[0], (3, 48, 320))
    assert short.shape == (3, 48, 320) and content == 60 and not short[:, :, 60:].any()  # zero pad (mid grey)
    fixed, content = rec_tensor(lines[3], (3, 48, 320), fixed_width=320)
    assert fixed.shape == (3, 48, 320) and content == 320  # squeezed into a static width
    batches = rec_batches(lines, (3, 48, 320), batch_size=2)
    assert [b[0] for b in batches] == [[0, 2], [1, 3]]  # sorted by aspect ratio
    assert batches[0][1].shape == (2, 3, 48, 320) and batches[1][1].shape == (2, 3, 48, 750)


def test_prepare_inputs_per_kind() -> None:
    from ncnnpass.passes.measure.samples import TextBox

    page = np.full((200, 300, 3), 240, np.uint8)
    boxes = (TextBox(np.float32([[10, 10], [110, 10], [110, 40], [10, 40]]), "abc"),
             TextBox(np.float32([[10, 60], [50, 60], [50, 70], [10, 70]]), "###"),
             TextBox(np.float32([[150, 20], [170, 20], [170, 120], [150, 120]]), "竖"))
    s = Sample(Provenance("det-labels", "Label.txt", line=1, image="p.png", key="k"), pixels=page, boxes=boxes)
    rec = prepare_inputs([s], "rec")
    assert [(r.sample.text, r.src_hw) for r in rec] == [("abc", (30, 100)), ("竖", (20, 100))]  # vertical: turned
    assert str(rec[1].sample.provenance) == "Label.txt:1 (p.png) box 2"
    assert rec[0].tensor.shape == (1, 3, 48, 320) and rec[0].content_width == 160
    cls = prepare_inputs([s], "cls")
    assert {c.tensor.shape for c in cls} == {(1, 3, 48, 192)}
    det = prepare_inputs([s], "det")
    assert det[0].tensor.shape == (1, 3, 192, 288) and det[0].src_hw == (200, 300)


def _need_builtin_assets():
    from ncnnpass.passes.measure.synth.fonts import fonts_for
    from ncnnpass.passes.measure.synth.words import chinese_words, english_words

    return fixtures.require(lambda: (fonts_for("latin"), fonts_for("cjk"), english_words(), chinese_words()),
                            "fonts and word lists for the built-in data (bash .ci/install: fonts-dejavu-core, "
                            "fonts-wqy-microhei, fonts-wqy-zenhei, fonts-arphic-*, wamerican, python3-jieba)")


@pytest.mark.slow
def test_builtin_lines_are_real_words_seeded_and_fast() -> None:
    from ncnnpass.passes.measure.synth import builtin_lines, builtin_pages

    _need_builtin_assets()
    t0 = time.perf_counter()
    lines = builtin_lines(200, seed=3)
    pages = builtin_pages(30, seed=3)
    took = time.perf_counter() - t0
    assert took < 30, f"built-in data took {took:.1f}s"
    texts = [s.text for s in lines.samples]
    lengths = [len(t) for t in texts]
    assert min(lengths) <= 3 and max(lengths) >= 30 and len(set(texts)) > 190
    scripts = {dict(s.provenance.params)["script"] for s in lines.samples}
    fonts = {dict(s.provenance.params)["font"] for s in lines.samples}
    assert scripts == {"zh", "latin"} and len(fonts) >= 8
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in t) for t in texts) > 80
    # seeded: line i is the same whatever n is, and another seed gives other lines
    again = builtin_lines(5, seed=3)
    assert all(np.array_equal(a.pixels, b.pixels) and a.text == b.text for a, b in zip(again.samples, lines.samples[:5], strict=True))
    assert builtin_lines(5, seed=4).samples[0].text != lines.samples[0].text
    assert str(lines.samples[0].provenance).startswith("builtin-lines seed 3 #0 (script=")
    boxes = sum(len(p.boxes) for p in pages.samples)
    assert boxes > 30 * 6 and all(p.pixels.shape[0] >= 560 for p in pages.samples)
    b = pages.samples[0].boxes[0]
    assert b.points.shape == (4, 2) and b.text


def test_builtin_text_fits_the_dictionary(ppocr_keys_v1: Path) -> None:
    from ncnnpass.passes.measure.ctc_decode import read_dictionary
    from ncnnpass.passes.measure.synth import builtin_lines

    _need_builtin_assets()
    keys = read_dictionary(ppocr_keys_v1)
    data = builtin_lines(60, seed=1, dictionary=keys)
    assert label_coverage(data.samples, keys).complete


def test_missing_fonts_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ncnnpass.passes.measure.synth import fonts

    monkeypatch.setattr(fonts, "_dirs", lambda: [str(tmp_path)])
    fonts.find_font.cache_clear()
    fonts.fonts_for.cache_clear()
    try:
        with pytest.raises(fonts.FontsMissing) as err:
            fonts.fonts_for("cjk")
        assert str(err.value) == (
            f"no CJK font for the built-in text lines (looked for ukai.ttc, uming.ttc, wqy-microhei.ttc, "
            f"wqy-zenhei.ttc under {tmp_path}): install Debian's fonts-wqy-microhei fonts-wqy-zenhei "
            f"fonts-arphic-uming fonts-arphic-ukai (bash .ci/install does), or give --images")
    finally:
        fonts.find_font.cache_clear()
        fonts.fonts_for.cache_clear()


def test_the_measurement_core_imports_only_what_it_may() -> None:
    """passes/measure sits below the engine and the tools (tests/test_layers.py checks the ncnnpass side): besides
    the IR and its runtime, numpy, OpenCV, Pillow, pyclipper, the standard library, onnx / PyYAML for model
    facts and onnxruntime for the reference runner (imported lazily)."""
    import ast
    import sys as _sys

    root = Path(__file__).resolve().parents[1] / "passes" / "measure"
    allowed = {"numpy", "cv2", "PIL", "pyclipper", "onnx", "onnxruntime", "yaml"} | set(_sys.stdlib_module_names)
    bad = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                ok = top in allowed or name.startswith(("ncnnpass.ir", "ncnnpass.passes.measure"))
                if not ok:
                    bad.append(f"{path.relative_to(root)}: {name}")
    assert not bad, bad


def test_prepare_for_model_follows_the_model_facts(tmp_path: Path) -> None:
    from ncnnpass.passes.measure.model_info import ModelInfo
    from ncnnpass.passes.measure.prepare import prepare_for_model

    line = Sample(Provenance("folder", "x.png", key="x"), pixels=np.full((20, 200, 3), 200, np.uint8))
    v2 = ModelInfo("rec", (3, 32, 320), (False, True))
    assert prepare_for_model([line], v2)[0].tensor.shape == (1, 3, 32, 320)
    static = ModelInfo("rec", (3, 48, 320), (False, False))
    assert prepare_for_model([line], static)[0].tensor.shape == (1, 3, 48, 320)
    assert prepare_for_model([line], ModelInfo("rec", (3, 48, 320), (False, True)))[0].tensor.shape == (1, 3, 48, 480)
    (tmp_path / "inference.yml").write_text("PreProcess:\n  transform_ops:\n  - DetResizeForTest:\n"
                                            "      limit_side_len: 64\n      limit_type: min\n")
    det = prepare_for_model([line], ModelInfo("det", (3, 640, 640), (True, True)), tmp_path)
    assert det[0].tensor.shape == (1, 3, 64, 640)
