"""Atomic file writes and the never-overwrite-the-input rule."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import NcnnpassError


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwrite(out: str | os.PathLike, inputs: list[str | os.PathLike], overwrite: bool) -> None:
    """Raise unless ``out`` is not one of ``inputs`` or the caller explicitly allowed it."""
    if overwrite:
        return
    for src in inputs:
        if src is not None and same_file(out, src):
            raise NcnnpassError(f"refusing to overwrite the input file {out} (pass overwrite=True / --overwrite)")


def _create_temp(directory: Path, name: str) -> tuple[int, str]:
    """A new hidden file next to the target. Not ``tempfile.mkstemp``: its mode 0o600 would end up on
    the output, unreadable for other users whatever their umask says."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise NcnnpassError(f"cannot create a temporary file in {directory}")  # pragma: no cover


_HELD = (signal.SIGINT, getattr(signal, "SIGTERM", signal.SIGINT))


def _sigmask(how: int, signals) -> set | None:
    """``signal.pthread_sigmask`` where it exists (POSIX); returns the previous mask."""
    if signals is None or not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(how, signals)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; on success fsync and rename it over ``path``.

    If the body raises (or the process dies) the previous ``path`` is left untouched. The temporary
    file (``.NAME.XXXXXXXX.tmp``) is removed, except after SIGKILL or a power cut, which can leave it.
    A new output gets mode 0o666 minus the umask; a replaced one keeps its mode.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise NcnnpassError(f"output directory does not exist: {directory}")
    # SIGINT/SIGTERM are held while the temp file is created, so that the handler below always knows it
    mask = _sigmask(signal.SIG_BLOCK, ())  # (a query: blocks nothing)
    tmp = None
    try:
        _sigmask(signal.SIG_BLOCK, _HELD)
        fd, tmp = _create_temp(directory, path.name)
        _sigmask(signal.SIG_SETMASK, mask)
        with os.fdopen(fd, mode) as fh:
            with contextlib.suppress(FileNotFoundError):  # a replaced file keeps its permissions
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    finally:
        _sigmask(signal.SIG_SETMASK, mask)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + rename)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, "wb") as fh:
        fh.write(data)
