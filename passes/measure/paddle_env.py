"""Cached side virtual environments for converters that cannot share the project's environment.

paddle2onnx 2.x pins an old onnx and needs paddlepaddle 3, so ncnnpass keeps it in a venv of its own
under :func:`default_cache_dir` (``$NCNNPASS_CACHE`` or ``~/.cache/ncnnpass``). :func:`ensure_side_env`
makes it once, under a file lock (several processes may ask at the same time), prints a line per step,
and marks it complete only after pip succeeded, so an interrupted install is resumed next time. When pip
fails (offline, no matching wheel), the :class:`ToolError` is one line naming the exact commands to run.
An environment variable can point to an existing environment instead (its python, or its directory).

``python -m ncnnpass.passes.measure.paddle_env paddle3`` provisions from a shell (``.ci/install`` does).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ncnnpass.ir.errors import ToolError
from ncnnpass.ir.runtime.external import default_cache_dir, file_lock, log

Progress = Callable[[str], None]
COMPLETE_MARKER = ".ncnnpass-complete"
PIP_TIMEOUT = 3600  # seconds for the whole pip install (about 1 GB of wheels)
PIP_PROGRESS_PREFIXES = ("Collecting", "Downloading", "Installing collected", "Successfully installed")


@dataclass(frozen=True)
class SideEnv:
    """What a side environment holds, where it lives and how users can point to their own."""

    name: str  #: directory name under the cache dir
    packages: tuple[str, ...]  #: pip requirement specifiers, installed in one ``pip install``
    purpose: str  #: shown in progress lines and errors
    override_var: str  #: environment variable naming an existing env (its python or its directory)

    def directory(self, cache_dir: str | os.PathLike | None = None) -> Path:
        return Path(cache_dir or default_cache_dir()) / self.name

    def install_commands(self, cache_dir: str | os.PathLike | None = None) -> str:
        """The shell commands that make this environment by hand (what the one-line errors show)."""
        env = self.directory(cache_dir)
        py = shlex.quote(str(env / "bin" / "python"))
        return (f"{shlex.quote(sys.executable)} -m venv {shlex.quote(str(env))} && "
                f"{py} -m pip install {' '.join(self.packages)}")


PADDLE3 = SideEnv(
    name="paddle2onnx-2.1.0-paddle-3.0.0-env",
    # paddle2onnx 2.1.0 works with paddlepaddle 3.0.0 only, and forgets to depend on packaging.
    packages=("paddlepaddle==3.0.0", "paddle2onnx==2.1.0", "packaging"),
    purpose="paddle2onnx 2.1.0 + paddlepaddle 3.0.0 (converts PaddleOCR 3.x inference.json models)",
    override_var="NCNNPASS_PADDLE3_PYTHON",
)

SIDE_ENVS = {"paddle3": PADDLE3}


def stderr_progress(message: str) -> None:
    """The default progress sink: one ``ncnnpass: ...`` line on stderr."""
    print(f"ncnnpass: {message}", file=sys.stderr, flush=True)


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def _override(spec: SideEnv) -> Path | None:
    value = os.environ.get(spec.override_var)
    if not value:
        return None
    path = Path(value).expanduser()
    python = env_python(path) if path.is_dir() else path
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise ToolError(f"{spec.override_var}={value} is not a python executable or a venv directory with "
                        "bin/python")
    return python


def ready_python(spec: SideEnv, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The python of a usable environment (override variable, or complete cached env), else None."""
    override = _override(spec)
    if override is not None:
        return override
    env = spec.directory(cache_dir)
    if (env / COMPLETE_MARKER).is_file() and env_python(env).is_file():
        return env_python(env)
    return None


def directory_size(path: Path) -> int:
    """Bytes in the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def _pip_failure(lines: list[str]) -> str:
    """The most telling line of a failed pip run (its last ERROR line, else its last line)."""
    errors = [ln.strip() for ln in lines if ln.strip().startswith("ERROR:")]
    last = errors[-1] if errors else next((ln.strip() for ln in reversed(lines) if ln.strip()), "no output")
    return last[:300]


def _pip_install(python: Path, spec: SideEnv, progress: Progress) -> None:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           *spec.packages]
    log.info("running %s", " ".join(cmd))
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                          stdin=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + PIP_TIMEOUT
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.strip().startswith(PIP_PROGRESS_PREFIXES):
                progress("  pip: " + line.strip()[:160])
            if time.monotonic() > deadline:
                proc.kill()
                lines.append(f"ERROR: pip install timed out after {PIP_TIMEOUT}s")
                break
        code = proc.wait()
    if code != 0 or (lines and lines[-1].startswith("ERROR: pip install timed out")):
        raise ToolError(_pip_failure(lines))


def ensure_side_env(spec: SideEnv, cache_dir: str | os.PathLike | None = None,
                    progress: Progress | None = None) -> Path:
    """Return the python of ``spec``'s environment, making it first if needed (locked, resumable).

    Raises :class:`ToolError` with a one-line message (what failed, and the exact commands to make the
    environment by hand, or the variable that points to one) when it cannot be made.
    """
    found = ready_python(spec, cache_dir)
    if found is not None:
        return found
    say = progress or stderr_progress
    env = spec.directory(cache_dir)
    with file_lock(str(env) + ".lock"):
        found = ready_python(spec, cache_dir)
        if found is not None:  # another process made it while we waited
            return found
        start = time.perf_counter()
        say(f"setting up a side environment for {spec.purpose} in {env} (once, about 1 GB; reused next time)")
        try:
            if not env_python(env).is_file():
                shutil.rmtree(env, ignore_errors=True)
                say(f"  creating the venv {env}")
                proc = subprocess.run([sys.executable, "-m", "venv", str(env)], capture_output=True, text=True,
                                      stdin=subprocess.DEVNULL)
                if proc.returncode != 0:
                    raise ToolError(_pip_failure((proc.stdout + proc.stderr).splitlines()))
            say(f"  pip install {' '.join(spec.packages)}")
            _pip_install(env_python(env), spec, say)
        except (ToolError, OSError) as exc:
            raise ToolError(f"could not set up {spec.purpose} in {env} ({exc}); when online run: "
                            f"{spec.install_commands(cache_dir)}   or set {spec.override_var} to the python "
                            "of an environment that has them") from None
        (env / COMPLETE_MARKER).write_text(" ".join(spec.packages) + "\n")
        size = directory_size(env)
        say(f"  side environment ready in {time.perf_counter() - start:.0f}s ({size / 1e9:.2f} GB): {env}")
        log.info("side env %s made in %.1fs, %d bytes", env, time.perf_counter() - start, size)
    return env_python(env)


def main(argv: list[str] | None = None) -> int:
    """``python -m ncnnpass.passes.measure.paddle_env NAME...``: provision side environments."""
    names = (argv if argv is not None else sys.argv[1:]) or list(SIDE_ENVS)
    for name in names:
        if name not in SIDE_ENVS:
            print(f"unknown side environment {name!r}; known: {', '.join(SIDE_ENVS)}", file=sys.stderr)
            return 2
        try:
            python = ensure_side_env(SIDE_ENVS[name])
        except ToolError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
