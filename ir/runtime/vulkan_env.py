"""The Vulkan runtime: the pip ncnn wheel's Vulkan path on Mesa's lavapipe (a Vulkan device on the CPU).

Parts (Debian packages, nothing else):

- ``mesa-vulkan-drivers``: lavapipe's ICD manifest (``/usr/share/vulkan/icd.d/lvp_icd.<arch>.json``) and the
  driver library it names;
- ``libvulkan1``: the Vulkan loader ``libvulkan.so.1`` (ncnn falls back to it when the manifest's driver
  does not load).

The pip ncnn wheel carries Vulkan (glslang built in). ncnn reads the manifest named by ``VK_ICD_FILENAMES``
(or ``VK_DRIVER_FILES``) itself and loads the driver it names directly (``src/simplevk.cpp``), so pointing
that variable at lavapipe's manifest selects the device, whatever else the machine has. A probe in a
subprocess (a driver may crash) checks that ncnn sees the device and records its name and fp16 support
under ``default_cache_dir()/vulkan``.

``python -m ncnnpass.ir.runtime.vulkan_env`` provisions it (what ``.ci/install`` runs) and prints the device.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ncnnpass.ir.errors import ToolError

from .external import apt_install, default_cache_dir, file_lock, installed_ncnn_version
from .external import say as _say

Progress = Callable[[str], None] | None

PACKAGES = ("mesa-vulkan-drivers", "libvulkan1")
ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
#: Environment variables that select a Vulkan driver; the worker gets only lavapipe's.
DRIVER_VARIABLES = ("VK_ICD_FILENAMES", "VK_DRIVER_FILES", "NCNN_VULKAN_DRIVER", "VK_ADD_DRIVER_FILES")
PROBE = r"""
import json, sys, ncnn
n = ncnn.get_gpu_count()
devs = [ncnn.get_gpu_info(i).device_name() for i in range(n)]
print(json.dumps({"count": n, "devices": devs, "ncnn": ncnn.__version__}), flush=True)
"""
# ncnn logs each device at instance creation: "[0 llvmpipe (LLVM 15.0.6, 256 bits)]  ... fp16-p/s/u/a=1/1/1/1"
_FP16_LINE = re.compile(r"fp16-p/s/u/a=(\d)/(\d)/(\d)/(\d)")


@dataclass(frozen=True)
class VulkanRuntime:
    """A provisioned lavapipe device as ncnn sees it."""

    icd: Path  # lavapipe's ICD manifest
    driver: Path  # the driver library the manifest names
    device: str  # ncnn's device name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
    fp16: dict[str, bool]  # what the device supports: packed, storage, uniform, arithmetic
    ncnn_version: str

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with lavapipe as the only Vulkan driver."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in DRIVER_VARIABLES}
        env.update(VK_ICD_FILENAMES=str(self.icd), VK_DRIVER_FILES=str(self.icd))
        return env

    def worker_command(self, script: Path) -> tuple[list[str], dict[str, str]]:
        """argv and environment that run ``script`` (the ncnn worker) with this Python on lavapipe."""
        return [sys.executable, "-u", str(script)], dict(self.environment(), PYTHONSAFEPATH="1")

    def describe(self) -> str:
        bits = "/".join(str(int(self.fp16.get(k, False))) for k in ("packed", "storage", "uniform", "arithmetic"))
        return f"{self.device} (lavapipe, fp16 packed/storage/uniform/arithmetic {bits})"


def vulkan_dir() -> Path:
    return default_cache_dir() / "vulkan"



def _arch_tag() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def find_lavapipe_icd() -> Path | None:
    """lavapipe's ICD manifest for this machine's architecture, or None."""
    arch = _arch_tag()
    for d in ICD_DIRS:
        for p in sorted(Path(d).glob("lvp_icd*.json")):
            if arch in p.name or p.name == "lvp_icd.json":
                return p
    return None


def icd_driver(icd: Path) -> Path | None:
    """The driver library a manifest names (absolute, or relative to the manifest), if it exists."""
    try:
        lib = json.loads(icd.read_text())["ICD"]["library_path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path = Path(lib)
    if not path.is_absolute():
        if "/" in lib:
            path = icd.parent / lib
        else:  # a bare file name: the dynamic linker's search path
            found = _ldconfig_path(lib)
            return found
    return path if path.exists() else None


def _ldconfig_path(name: str) -> Path | None:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.strip().startswith(name + " ") and "=>" in line:
            return Path(line.split("=>")[-1].strip())
    return None


def vulkan_loader_present() -> bool:
    """Whether the Vulkan loader ``libvulkan.so.1`` (Debian libvulkan1) can be found."""
    return ctypes.util.find_library("vulkan") is not None or _ldconfig_path("libvulkan.so.1") is not None


def _marker() -> Path:
    return vulkan_dir() / "device.json"


def _read_marker(icd: Path, version: str) -> dict | None:
    try:
        data = json.loads(_marker().read_text())
    except (OSError, ValueError):
        return None
    if data.get("icd") != str(icd) or data.get("ncnn") != version or not data.get("device"):
        return None
    return data


def vulkan_runtime_status() -> str | None:
    """None when the Vulkan target is ready to use, else one line saying what is missing."""
    icd = find_lavapipe_icd()
    if icd is None or icd_driver(icd) is None:
        return ("Mesa's lavapipe Vulkan driver is missing (Debian package mesa-vulkan-drivers; "
                "run .ci/install or python -m ncnnpass.ir.runtime.vulkan_env)")
    if not vulkan_loader_present():
        return "the Vulkan loader libvulkan.so.1 is missing (Debian package libvulkan1; run .ci/install)"
    try:
        version = installed_ncnn_version()
    except ToolError as exc:
        return str(exc)
    if _read_marker(icd, version) is None:
        return (f"ncnn {version} has not been checked on lavapipe ({icd}); run "
                "python -m ncnnpass.ir.runtime.vulkan_env")
    return None




def probe(icd: Path, timeout: float = 300) -> dict:
    """Ask ncnn, in a subprocess with only lavapipe visible, which devices it sees.

    Returns ``{"device": name, "fp16": {...}, "ncnn": version}``; raises :class:`ToolError` in one line
    when ncnn finds no device or the driver crashes."""
    env = {k: v for k, v in os.environ.items() if k not in DRIVER_VARIABLES}
    env.update(VK_ICD_FILENAMES=str(icd), VK_DRIVER_FILES=str(icd), PYTHONSAFEPATH="1")
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        raise ToolError(f"ncnn's Vulkan probe on lavapipe timed out after {timeout:.0f}s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()][-1:] or ["no output"]
        raise ToolError(f"ncnn's Vulkan probe failed on lavapipe (exit {proc.returncode}): {tail[0]}")
    info = json.loads(lines[-1])
    if info["count"] < 1:
        err = " | ".join(ln.strip() for ln in proc.stderr.splitlines() if ln.strip())[-300:]
        raise ToolError(f"ncnn finds no Vulkan device with lavapipe's manifest {icd}" + (f": {err}" if err else ""))
    m = _FP16_LINE.search(proc.stderr)
    flags = [bool(int(g)) for g in m.groups()] if m else [False] * 4
    return {"device": info["devices"][0], "ncnn": info["ncnn"],
            "fp16": dict(zip(("packed", "storage", "uniform", "arithmetic"), flags, strict=True))}


def ensure_vulkan_runtime(progress: Progress = None) -> VulkanRuntime:
    """Provision (once; cached, lock-protected) and return the lavapipe device for ncnn's Vulkan path.

    Installs mesa-vulkan-drivers/libvulkan1 with apt-get when missing and running as root; otherwise raises
    :class:`ToolError` saying in one line what to install."""
    version = installed_ncnn_version()
    if vulkan_runtime_status() is None:
        return _runtime(version)
    start = time.perf_counter()
    with file_lock(vulkan_dir() / ".lock"):
        icd = find_lavapipe_icd()
        need = []
        if icd is None or icd_driver(icd) is None:
            need.append("mesa-vulkan-drivers")
        if not vulkan_loader_present():
            need.append("libvulkan1")
        if need:
            apt_install(progress, need, "the Vulkan target")
            icd = find_lavapipe_icd()
            if icd is None or icd_driver(icd) is None:
                raise ToolError("mesa-vulkan-drivers is installed but lavapipe's manifest (lvp_icd.*.json) "
                                f"is not in {', '.join(ICD_DIRS)}")
        if _read_marker(icd, version) is None:
            _say(progress, f"checking ncnn {version} on lavapipe ({icd})")
            info = probe(icd)
            info["icd"] = str(icd)
            vulkan_dir().mkdir(parents=True, exist_ok=True)
            tmp = _marker().with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=1) + "\n")
            tmp.replace(_marker())
    rt = _runtime(version)
    _say(progress, f"Vulkan runtime ready in {time.perf_counter() - start:.0f}s: {rt.describe()}")
    return rt


def _runtime(version: str) -> VulkanRuntime:
    icd = find_lavapipe_icd()
    driver = icd_driver(icd) if icd is not None else None
    data = _read_marker(icd, version) if icd is not None else None
    if icd is None or driver is None or data is None:
        raise ToolError(vulkan_runtime_status() or "the Vulkan runtime is incomplete")
    return VulkanRuntime(icd, driver, data["device"], dict(data["fp16"]), version)


def main() -> int:
    try:
        rt = ensure_vulkan_runtime(progress=lambda m: print(f"vulkan runtime: {m}", flush=True))
    except ToolError as exc:
        print(f"vulkan runtime: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"vulkan runtime: {rt.describe()}; manifest {rt.icd}, driver {rt.driver}, ncnn {rt.ncnn_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
