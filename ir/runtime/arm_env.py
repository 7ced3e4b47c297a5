"""The emulated ARM runtime: the aarch64 ncnn wheel under qemu-user, provisioned and cached by ncnnpass.

Parts (all from Debian's and PyPI's packages):

- ``qemu-aarch64-static`` (Debian ``qemu-user-static``); binfmt is not needed: qemu is called explicitly;
- an arm64 root with python3 + numpy (``mmdebstrap --variant=extract``), cached under
  ``default_cache_dir()/arm/root-<suite>``;
- the aarch64 ncnn wheel of exactly the installed x86 ncnn version, unzipped under
  ``default_cache_dir()/arm/ncnn-<version>-<pytag>``.

``python -m ncnnpass.ir.runtime.arm_env`` provisions it (what ``.ci/install`` runs) and prints the paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ncnnpass.ir.errors import ToolError

from .external import apt_install, default_cache_dir, file_lock, installed_ncnn_version, run_tool
from .external import say as _say

Progress = Callable[[str], None] | None

ROOT_PACKAGES = "python3,python3-numpy,libgomp1,libstdc++6"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DONE = ".complete"
CHECKED = ".checked"


@dataclass(frozen=True)
class ArmRuntime:
    """Paths of a provisioned emulated ARM runtime."""

    qemu: Path
    root: Path
    site: Path
    python: Path
    ncnn_version: str

    def command(self, cpu: str = "cortex-a76") -> list[str]:
        """argv prefix that runs the root's Python as ``cpu`` (append a script and its arguments)."""
        return [str(self.qemu), "-cpu", cpu, "-L", str(self.root), str(self.python)]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_", "VIRTUAL_ENV"))}
        env.update(PYTHONPATH=str(self.site), PYTHONSAFEPATH="1", PYTHONNOUSERSITE="1")
        return env

    def worker_command(self, cpu: str, script: Path) -> tuple[list[str], dict[str, str]]:
        return [*self.command(cpu), "-u", str(script)], self.environment()


def arm_dir() -> Path:
    return default_cache_dir() / "arm"



def host_suite_and_mirror() -> tuple[str, str]:
    """The machine's Debian codename and apt mirror (bookworm and deb.debian.org elsewhere)."""
    info = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            k, _, v = line.partition("=")
            info[k] = v.strip().strip('"')
    except OSError:
        pass
    if info.get("ID") != "debian" or not info.get("VERSION_CODENAME"):
        return DEFAULT_SUITE, DEFAULT_MIRROR
    mirror = DEFAULT_MIRROR
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for src in sources:
        try:
            text = src.read_text()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.M) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s", text, re.M)
        if m:
            mirror = m.group(1)
            break
    return info["VERSION_CODENAME"], mirror


def _qemu() -> Path | None:
    found = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    return Path(found) if found else None


def _root_path() -> Path:
    return arm_dir() / f"root-{host_suite_and_mirror()[0]}"


def _root_python(root: Path) -> Path | None:
    found = sorted(p for p in (root / "usr/bin").glob("python3.*") if re.fullmatch(r"python3\.\d+", p.name))
    return found[-1] if found else None


def _site_path(version: str, pytag: str) -> Path:
    return arm_dir() / f"ncnn-{version}-{pytag}"


def _pytag(python: Path) -> str:
    return "cp" + python.name.removeprefix("python").replace(".", "")


def arm_runtime_status() -> str | None:
    """None when the ARM runtime is ready to use, else one line saying what is missing."""
    if _qemu() is None:
        return "qemu-aarch64-static is missing (Debian package qemu-user-static; run .ci/install)"
    root = _root_path()
    python = _root_python(root)
    if not (root / DONE).exists() or python is None:
        return f"the arm64 root {root} is not provisioned (run .ci/install or ensure_arm_runtime())"
    try:
        version = installed_ncnn_version()
    except ToolError as exc:
        return str(exc)
    site = _site_path(version, _pytag(python))
    if not (site / DONE).exists():
        return f"the aarch64 ncnn {version} wheel is not provisioned in {site} (run .ci/install)"
    if not (site / CHECKED).exists():
        return f"the emulated ncnn in {site} has not passed its import check (run .ci/install)"
    return None




def _build_root(root: Path, progress: Progress) -> None:
    suite, mirror = host_suite_and_mirror()
    _say(progress, f"building the arm64 root {root} (mmdebstrap {suite} from {mirror}, ~30 s)")
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    run_tool(["mmdebstrap", "--variant=extract", "--arch=arm64", f"--include={ROOT_PACKAGES}", suite, str(tmp),
              mirror], what="mmdebstrap", timeout=1800)
    # the extract variant runs no maintainer scripts: recreate the alternatives numpy needs
    lib = tmp / "usr/lib/aarch64-linux-gnu"
    for name, sub in (("libblas.so.3", "blas"), ("liblapack.so.3", "lapack")):
        if (lib / sub / name).exists() and not (lib / name).exists():
            (lib / name).symlink_to(f"{sub}/{name}")
    if _root_python(tmp) is None:
        raise ToolError(f"mmdebstrap built {tmp} without a python3.X interpreter")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    (root / DONE).write_text(f"{suite} {mirror}\n")


def _fetch_wheel(site: Path, version: str, pytag: str, progress: Progress) -> None:
    pyver = pytag[2] + "." + pytag[3:]
    _say(progress, f"downloading the aarch64 ncnn {version} wheel for Python {pyver}")
    with tempfile.TemporaryDirectory(prefix="ncnnpass-arm-wheel-") as d:
        run_tool([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                  "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
                  "--python-version", pyver, "-d", d, f"ncnn=={version}"], what="pip download", timeout=900)
        wheels = sorted(Path(d).glob("ncnn-*.whl"))
        if not wheels:
            raise ToolError(f"pip found no aarch64 wheel of ncnn=={version} for Python {pyver}")
        if f"-{pytag}-" not in wheels[0].name:
            raise ToolError(f"the aarch64 wheel {wheels[0].name} does not match the root's Python ({pytag})")
        tmp = site.with_name(site.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(tmp)
        # zipfile drops the executable bits; the bundled shared libraries only need to be readable
        shutil.rmtree(site, ignore_errors=True)
        tmp.rename(site)
    (site / DONE).write_text(wheels[0].name + "\n")


def _check(rt: ArmRuntime, progress: Progress) -> None:
    _say(progress, "checking the emulated runtime (import ncnn under qemu)")
    cmd, env = rt.command(), rt.environment()
    proc = subprocess.run([*cmd, "-c", "import ncnn, numpy; print(ncnn.__version__)"], capture_output=True,
                          text=True, env=env, timeout=600, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or proc.stdout.strip() != rt.ncnn_version:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ToolError(f"the emulated ncnn does not import (exit {proc.returncode}): {tail[0]}")


def ensure_arm_runtime(progress: Progress = None) -> ArmRuntime:
    """Provision (once; cached, lock-protected) and return the emulated ARM runtime.

    Installs qemu-user-static/mmdebstrap with apt-get when missing and running as root; otherwise
    raises :class:`ToolError` saying in one line what is missing."""
    version = installed_ncnn_version()
    if arm_runtime_status() is None:
        return _runtime(version)
    start = time.perf_counter()
    with file_lock(arm_dir() / ".lock"):
        root = _root_path()
        need = [] if _qemu() else ["qemu-user-static"]
        if not (root / DONE).exists() and shutil.which("mmdebstrap") is None:
            need.append("mmdebstrap")
        if need:
            apt_install(progress, need, "the ARM runtime")
        if not (root / DONE).exists():
            _build_root(root, progress)
        python = _root_python(root)
        site = _site_path(version, _pytag(python))
        if not (site / DONE).exists():
            _fetch_wheel(site, version, _pytag(python), progress)
        rt = _runtime(version)
        marker = site / CHECKED
        if not marker.exists():
            _check(rt, progress)
            marker.write_text("ok\n")
    _say(progress, f"ARM runtime ready in {time.perf_counter() - start:.0f}s ({arm_dir()})")
    return rt


def _runtime(version: str) -> ArmRuntime:
    root = _root_path()
    python = _root_python(root)
    qemu = _qemu()
    if python is None or qemu is None:
        raise ToolError(arm_runtime_status() or "the ARM runtime is incomplete")
    return ArmRuntime(qemu, root, _site_path(version, _pytag(python)), python, version)


def main() -> int:
    try:
        rt = ensure_arm_runtime(progress=lambda m: print(f"arm runtime: {m}", flush=True))
    except ToolError as exc:
        print(f"arm runtime: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"arm runtime: qemu {rt.qemu}, root {rt.root}, ncnn {rt.ncnn_version} in {rt.site}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
