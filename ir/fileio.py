"""Atomic file writes and the never-overwrite-the-input rule.

Every write goes to a hidden temporary file next to its target, is fsynced, and is renamed over the
target. Files written together (a ``.param`` and its ``.bin``) are renamed as one step: SIGINT and SIGTERM
are held from just before the first rename until after the last, so an interrupted write leaves either all
the previous files or all the new ones.

The test-only fault points (``NCNNPASS_TEST_WRITE_FAULT``, see docs/guarantees.md) stop a write at a named
phase so that interruption tests need no timing; unset, they do nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
from collections.abc import Iterator, Sequence
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


# -- test-only fault points ----------------------------------------------------------------------------

FAULT_ENV = "NCNNPASS_TEST_WRITE_FAULT"
# In the order a write reaches them. param-written and bin-written are reached by Graph.save only,
# between-renames only by writes of two or more files, and rename_together alone reaches commit-begins
# and between-renames.
WRITE_PHASES = ("temps-created", "param-written", "bin-written", "temps-synced", "commit-begins",
                "between-renames", "committed")
FAULT_ACTIONS = ("SIGINT", "SIGTERM", "SIGKILL", "wait")


def _parse_fault(value: str | None) -> tuple[str, str | None, str] | str | None:
    """``PHASE[@NAME]:ACTION`` -> (phase, file name or None, action); an error message if malformed."""
    if not value:
        return None
    where, _, action = value.rpartition(":")
    phase, _, name = where.partition("@")
    if phase not in WRITE_PHASES or action not in FAULT_ACTIONS:
        return (f"{FAULT_ENV}={value!r}: expected PHASE[@NAME]:ACTION with PHASE one of {', '.join(WRITE_PHASES)} "
                f"and ACTION one of {', '.join(FAULT_ACTIONS)}")
    return phase, name or None, action


_fault = _parse_fault(os.environ.get(FAULT_ENV))  # read once, when this module is imported


def fault_point(phase: str, targets: Sequence[str | os.PathLike], fh: BinaryIO | None = None) -> None:
    """Test only: act as ``NCNNPASS_TEST_WRITE_FAULT`` says when a write of ``targets`` reaches ``phase``.

    Without the variable this returns at once. With it, the first matching phase (of a write with a target
    whose path is NAME or ends in /NAME, if NAME is given) flushes ``fh`` and then raises the signal at this process, or (``wait``)
    prints one line on stderr and reads stdin until end of file, so that a test can send a signal to a
    process stopped at a known point. The fault fires once per process.
    """
    global _fault
    if _fault is None:
        return
    if isinstance(_fault, str):
        raise NcnnpassError(_fault)
    want, name, action = _fault
    paths = [os.fspath(t) for t in targets]
    if phase != want or (name is not None and not any(p == name or p.endswith(os.sep + name) for p in paths)):
        return
    _fault = None
    if fh is not None:
        fh.flush()
    if action == "wait":
        os.write(2, f"{FAULT_ENV}: {phase} {' '.join(paths)}: waiting\n".encode("utf-8", "surrogateescape"))
        while os.read(0, 4096):
            pass
    else:
        signal.raise_signal(getattr(signal, action))


# -- holding SIGINT and SIGTERM ------------------------------------------------------------------------

_HELD = tuple(dict.fromkeys(getattr(signal, s) for s in ("SIGINT", "SIGTERM") if hasattr(signal, s)))


def _act(previous, signum: int, frame) -> None:
    """Do what the handler ``previous`` does for ``signum``: call it, or (SIG_DFL) let the signal end the process."""
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


class _SignalsHeld:
    """Within the block, SIGINT and SIGTERM are recorded instead of acted on; leaving it restores their
    handlers and then acts on what was recorded, in arrival order: a Python handler runs (the CLI's raise
    KeyboardInterrupt or its SIGTERM exception), a default action ends the process. Ignored signals stay
    ignored. :meth:`deliver` acts on what was recorded so far without leaving the block.

    Python runs signal handlers in the main thread only, between bytecodes; swapping the handler (not the
    thread's signal mask) is what holds a signal that the kernel hands to another thread (numpy's BLAS
    threads). Once the block is left, the swapped-in handler acts as the one it replaced, so a signal that
    interrupts the restoring cannot leave a handler that forgets signals. Outside the main thread nothing
    is held (and no Python handler can interrupt that thread)."""

    def __init__(self) -> None:
        self.caught: list[int] = []
        self._previous: dict[int, object] = {}
        self._holding = False

    def _handle(self, signum: int, frame) -> None:
        if self._holding:
            self.caught.append(signum)
        else:
            _act(self._previous[signum], signum, frame)

    def __enter__(self) -> _SignalsHeld:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._holding = True
        try:
            for s in _HELD:
                previous = signal.getsignal(s)
                if previous not in (signal.SIG_IGN, None):
                    self._previous[s] = previous  # first: restoring it is harmless if the swap never happens
                    signal.signal(s, self._handle)
        except BaseException:  # a signal already due acted before its handler was swapped
            self.__exit__()
            raise
        return self

    def deliver(self) -> None:
        """Act now on the signals recorded so far (as a rule this raises); keep holding later ones."""
        self._holding = False
        try:
            caught, self.caught = self.caught, []
            for s in caught:
                signal.raise_signal(s)
        finally:
            self._holding = bool(self._previous)

    def __exit__(self, *exc) -> None:
        self._holding = False
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        caught, self.caught = self.caught, []
        for s in caught:
            signal.raise_signal(s)


def rename_together(moves: Sequence[tuple[str | os.PathLike, str | os.PathLike]]) -> None:
    """``os.replace`` each (source, target) in order as one step against SIGINT and SIGTERM: one that
    arrives before the first rename acts before it, one that arrives later acts after the last.
    (SIGKILL or a power cut between two renames can still leave some done and some not.)"""
    targets = [t for _, t in moves]
    with _SignalsHeld() as held:
        fault_point("commit-begins", targets)
        held.deliver()  # a signal that came since the hold began acts now, before any rename
        for i, (src, target) in enumerate(moves):
            if i:
                fault_point("between-renames", targets)
            os.replace(src, target)


# -- atomic writes -------------------------------------------------------------------------------------

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


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], mode: str = "wb") -> Iterator[list[BinaryIO]]:
    """Open a temporary file next to each of ``paths``; when the body succeeds, fsync them all and rename
    them over their targets, in the order given, with :func:`rename_together`.

    If the body raises, or SIGINT/SIGTERM arrive before the renames, every previous file is left untouched
    and every temporary file (``.NAME.XXXXXXXX.tmp``) is removed; SIGKILL or a power cut can leave them.
    A new output gets mode 0o666 minus the umask; a replaced one keeps its mode.
    """
    targets = [Path(p) for p in paths]
    for target in targets:
        if not target.parent.is_dir():
            raise NcnnpassError(f"output directory does not exist: {target.parent}")
    temps: list[str] = []
    files: list[BinaryIO] = []
    try:
        for target in targets:
            with _SignalsHeld():  # so that the cleanup below always knows the temporary file and its handle
                fd, tmp = _create_temp(target.parent, target.name)
                temps.append(tmp)
                files.append(os.fdopen(fd, mode))
            with contextlib.suppress(FileNotFoundError):  # a replaced file keeps its permissions
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        fault_point("temps-created", targets)
        yield files
        for fh in files:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        fault_point("temps-synced", targets)
        rename_together(list(zip(temps, targets, strict=True)))
        temps.clear()
        fault_point("committed", targets)
    except BaseException:
        for fh in files:
            with contextlib.suppress(OSError):
                fh.close()
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path``; on success fsync and rename it over ``path``
    (:func:`atomic_files` with one file)."""
    with atomic_files([path], mode) as (fh,):
        yield fh


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same directory + rename)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, "wb") as fh:
        fh.write(data)
