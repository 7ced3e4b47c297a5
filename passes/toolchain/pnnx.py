"""Run pnnx (the ncnn project's converter) on an ONNX model and keep only the ncnn files."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ncnnpass.ir.errors import ToolError
from ncnnpass.ir.fileio import rename_together
from ncnnpass.ir.runtime.external import log, run_tool

INSTALL_HINT = "pip install --no-deps pnnx   (without --no-deps pip also pulls torch, several GB)"


def _ensure_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise ToolError(f"pnnx binary {path} is not executable and chmod failed: {exc}") from exc


def _from_package() -> Path | None:
    """The binary inside the installed ``pnnx`` package, found without importing it (that imports torch)."""
    try:
        spec = importlib.util.find_spec("pnnx")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pnnx"
        if candidate.is_file():
            return candidate
    return None


def _is_python_wrapper(path: Path) -> bool:
    """True for the ``pnnx`` console script pip puts on PATH: it imports torch, so it is not the converter."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return True
    return head.startswith(b"#!") and b"python" in head.split(b"\n", 1)[0]


def find_pnnx() -> str:
    """Path of the pnnx binary: ``$PNNX``, then ``PATH``, then the installed ``pnnx`` package.

    The ``pnnx`` Python console script that pip installs on PATH is skipped (it imports torch).
    """
    env = os.environ.get("PNNX")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ToolError(f"PNNX={env} does not name a file; unset it or install pnnx: {INSTALL_HINT}")
        _ensure_executable(path)
        return str(path)
    on_path = shutil.which("pnnx")
    if on_path and not _is_python_wrapper(Path(on_path)):
        return on_path
    packaged = _from_package()
    if packaged is not None:
        _ensure_executable(packaged)
        return str(packaged)
    raise ToolError(f"pnnx not found (looked at $PNNX, PATH and the pnnx Python package); install it: {INSTALL_HINT}")


def run_pnnx(onnx_path: str | os.PathLike, out_dir: str | os.PathLike,
             input_shape: Sequence[int] = (1, 3, 48, 320), fp16: bool = False,
             timeout: float = 1800, input_shape2: Sequence[int] | None = None) -> tuple[Path, Path]:
    """Convert ``onnx_path`` with pnnx; return ``(param, bin)`` placed in ``out_dir``.

    ``input_shape2`` (pnnx ``inputshape2``) is a second input shape: pnnx then writes the dims that
    differ between the two as expressions (``Reshape 6="0w,120"``), so the model runs at any size;
    with one shape pnnx bakes it into Reshape params and ncnn corrupts memory at other widths.

    pnnx writes many side files next to its input, so it runs on a copy in a private temporary
    directory; only ``<stem>.ncnn.param`` and ``<stem>.ncnn.bin`` are moved (atomically) to ``out_dir``.
    """
    src = Path(onnx_path)
    if not src.is_file():
        raise ToolError(f"ONNX model not found: {src}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exe = find_pnnx()
    stem = src.stem
    shape = ",".join(str(int(d)) for d in input_shape)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".pnnx-", dir=out) as tmp:
        work = Path(tmp) / src.name
        shutil.copyfile(src, work)
        args = [exe, work.name, f"inputshape=[{shape}]"]
        if input_shape2 is not None:
            args.append(f"inputshape2=[{','.join(str(int(d)) for d in input_shape2)}]")
        run_tool([*args, f"fp16={1 if fp16 else 0}"], cwd=tmp, what="pnnx")
        produced = [Path(tmp) / f"{stem}.ncnn.param", Path(tmp) / f"{stem}.ncnn.bin"]
        missing = [p.name for p in produced if not p.is_file()]
        if missing:
            raise ToolError(f"pnnx exited 0 but did not write {', '.join(missing)} for {src}")
        results = [out / p.name for p in produced]
        # one step against SIGINT/SIGTERM, the .bin first as in Graph.save (the temp dir is in out_dir)
        rename_together(list(zip(produced, results, strict=True))[::-1])
    log.info("pnnx %s -> %s (fp16=%d) in %.2fs", src, out, int(fp16), time.perf_counter() - start)
    return results[0], results[1]
