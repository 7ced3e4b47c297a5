"""External processes and caches: run a tool with logging and a one-line failure, the cache directory of
provisioned runtimes, cross-process file locks.

Every command is logged with its timing on the ``ncnnpass.toolchain`` logger; failures raise
:class:`ncnnpass.ir.errors.ToolError` with the tail of the tool's output.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ncnnpass.ir.errors import ToolError

log = logging.getLogger("ncnnpass.toolchain")

__all__ = ["default_cache_dir", "file_lock", "log", "run_tool", "tail"]


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def run_tool(cmd: Sequence[str | os.PathLike], *, cwd: str | os.PathLike | None = None,
             timeout: float | None = 1800, what: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell), log it with its timing, raise ToolError with output's tail on failure."""
    argv = [str(c) for c in cmd]
    name = what or Path(argv[0]).name
    shown = " ".join("<script>" if "\n" in a else a for a in argv)
    log.info("running %s (cwd=%s)", shown, cwd or os.getcwd())
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ToolError(f"{name}: cannot execute {argv[0]}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{name}: timed out after {timeout:.0f}s: {shown}") from exc
    elapsed = time.perf_counter() - start
    log.info("%s finished in %.2fs with exit code %d", name, elapsed, proc.returncode)
    if proc.returncode != 0:
        output = tail((proc.stdout or "") + "\n" + (proc.stderr or ""))
        raise ToolError(f"{name} failed (exit code {proc.returncode}): {shown}\n{output}")
    return proc


def default_cache_dir() -> Path:
    """Where ncnnpass keeps tool environments: ``$NCNNPASS_CACHE`` or ``~/.cache/ncnnpass``."""
    env = os.environ.get("NCNNPASS_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ncnnpass"


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the body; works across processes."""
    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def installed_ncnn_version() -> str:
    """The version of the ncnn Python package (the side runtimes provision the same one)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ncnn")
    except PackageNotFoundError:
        raise ToolError("the ncnn Python package is not installed (pip install ncnn)") from None


def say(progress: Callable[[str], None] | None, msg: str) -> None:
    """``progress(msg)`` when there is a progress callback."""
    if progress is not None:
        progress(msg)


def apt_install(progress: Callable[[str], None] | None, packages: list[str], needed_by: str) -> None:
    """Install Debian ``packages`` with apt-get (as root); otherwise a ToolError naming them for ``needed_by``."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ToolError(f"{needed_by} needs the Debian package(s) {', '.join(packages)}: install them "
                        "(apt-get install, as root)")
    say(progress, f"installing {' '.join(packages)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_tool(["apt-get", "update", "-qq"], env=env, what="apt-get update", timeout=900)
    run_tool(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env,
             what="apt-get install", timeout=1800)
