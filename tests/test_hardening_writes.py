"""Hardening: a killed ``ncnnpass`` never damages its inputs or a previous output (see docs/guarantees.md).

Real subprocesses are killed at moments found by watching the output directory: before any output
file exists, while the hidden temporary file of the 64 MB ``.bin`` grows, once it is complete (fsync),
and not at all. Afterwards the inputs are byte-identical, each output is either its previous content or
its complete new content, a new ``.param`` never sits next to an old ``.bin``, and the only other files
are the hidden ``.NAME.XXXXXXXX.tmp`` a SIGKILL can leave. SIGINT and SIGTERM remove the temporary file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

BIG_VALUES = 16 << 20  # 64 MiB of float32 weights: writing and fsyncing them takes a while
TEMP_RE = re.compile(r"^\.(.+)\.[0-9a-f]{8}\.tmp$")


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _model(directory: Path, name: str, values: int, fill: float) -> tuple[Path, Path]:
    """MemoryData (raw float32 ``values``) -> ReLU."""
    param, bin = directory / f"{name}.param", directory / f"{name}.bin"
    param.write_text(f"7767517\n2 2\nMemoryData md 0 1 m 0={values}\nReLU relu 1 1 m y\n")
    np.full(values, fill, np.float32).tofile(bin)
    return param, bin


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ncnnpass.cli.main", *args]


def _temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if TEMP_RE.match(p.name)]


def _kill_when(cmd: list[str], cwd: Path, ready: Callable[[], bool] | None, delay: float = 0.0,
               sig: int = signal.SIGKILL, timeout: float = 60) -> tuple[bool, bool, int]:
    """Start ``cmd``; when ``ready()`` holds (or at once if None) wait ``delay`` and send ``sig``.
    Returns (signal sent before the process ended, a temp file existed then, exit code)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while ready is not None and proc.poll() is None and not ready():
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{cmd} never reached the kill point")
        time.sleep(0.0005)
    if delay:
        time.sleep(delay)
    sent = proc.poll() is None
    mid_write = sent and bool(_temps(cwd))
    if sent:
        proc.send_signal(sig)
    proc.communicate(timeout=timeout)
    return sent, mid_write, proc.returncode


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    """Inputs (a 64 MiB model), the previous outputs, and the outputs of an uninterrupted run."""
    root = tmp_path_factory.mktemp("interrupted-run")
    src = root / "src"
    src.mkdir()
    inp = _model(src, "in", BIG_VALUES, 0.5)
    prev = _model(src, "prev", 4, -1.0)
    ref = root / "ref"
    ref.mkdir()
    subprocess.run(_cli("run", *map(str, inp), "-o", str(ref / "out.param"), str(ref / "out.bin")), check=True,
                   stdout=subprocess.DEVNULL)
    return {"in": inp, "prev": prev, "ref": (ref / "out.param", ref / "out.bin")}


def _phase_conditions(d: Path) -> dict[str, Callable[[], bool] | None]:
    def bin_temp(fraction: float) -> Callable[[], bool]:
        def ready() -> bool:
            return any(p.name.startswith(".out.bin.") and p.stat().st_size >= fraction * 4 * BIG_VALUES
                       for p in _temps(d) if p.exists())
        return ready

    return {
        "at start": None,
        "any temp file": lambda: bool(_temps(d)),
        "bin temp begun": bin_temp(0.0),
        "bin temp half": bin_temp(0.5),
        "bin temp complete (fsync)": bin_temp(1.0),
        "bin renamed": lambda: (d / "out.bin").stat().st_size == 4 * BIG_VALUES,
    }


@pytest.mark.parametrize("phase", ["at start", "any temp file", "bin temp begun", "bin temp half",
                                   "bin temp complete (fsync)", "bin renamed", "not killed"])
def test_sigkill_during_run_keeps_input_and_previous_output(run_setup, tmp_path, phase):
    work = tmp_path
    inp = run_setup["in"]
    hashes_in = [_sha(p) for p in inp]
    out_param, out_bin = work / "out.param", work / "out.bin"
    out_param.write_bytes(run_setup["prev"][0].read_bytes())
    out_bin.write_bytes(run_setup["prev"][1].read_bytes())
    old = (_sha(out_param), _sha(out_bin))
    new = tuple(_sha(p) for p in run_setup["ref"])
    cmd = _cli("run", *map(str, inp), "-o", "out.param", "out.bin")
    if phase == "not killed":
        assert subprocess.run(cmd, cwd=work, stdout=subprocess.DEVNULL).returncode == 0
    else:
        _kill_when(cmd, work, _phase_conditions(work)[phase])
    assert [_sha(p) for p in inp] == hashes_in, "an input changed"
    got = (_sha(out_param), _sha(out_bin))
    assert got[0] in (old[0], new[0]) and got[1] in (old[1], new[1]), f"{phase}: a partial output"
    assert not (got[0] == new[0] and got[1] == old[1]), f"{phase}: new .param next to the old .bin"
    strays = [p.name for p in work.iterdir() if p.name not in ("out.param", "out.bin")]
    assert all(TEMP_RE.match(n) and TEMP_RE.match(n).group(1) in ("out.param", "out.bin") for n in strays), strays
    if phase == "not killed":
        assert got == new and not strays


def test_sigkill_hits_the_write_itself(run_setup, tmp_path):
    """The kill points above are not vacuous: killing when the .bin temp is half written leaves it there,
    and both outputs as they were."""
    (tmp_path / "out.param").write_bytes(run_setup["prev"][0].read_bytes())
    (tmp_path / "out.bin").write_bytes(run_setup["prev"][1].read_bytes())
    sent, mid_write, _ = _kill_when(_cli("run", *map(str, run_setup["in"]), "-o", "out.param", "out.bin"),
                                    tmp_path, _phase_conditions(tmp_path)["bin temp half"])
    assert sent and mid_write
    assert _sha(tmp_path / "out.bin") == _sha(run_setup["prev"][1])
    assert _sha(tmp_path / "out.param") == _sha(run_setup["prev"][0])


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_remove_the_temporary_file(run_setup, tmp_path, sig, code):
    (tmp_path / "out.param").write_bytes(run_setup["prev"][0].read_bytes())
    (tmp_path / "out.bin").write_bytes(run_setup["prev"][1].read_bytes())
    sent, mid_write, rc = _kill_when(_cli("run", *map(str, run_setup["in"]), "-o", "out.param", "out.bin"),
                                     tmp_path, _phase_conditions(tmp_path)["bin temp begun"], sig=sig)
    assert sent and mid_write
    assert rc == code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "out.param"]
    assert _sha(tmp_path / "out.bin") == _sha(run_setup["prev"][1])


def test_output_permissions_follow_the_umask_or_the_replaced_file(run_setup, tmp_path):
    inp = run_setup["prev"]
    env = {**os.environ}
    old_umask = os.umask(0o022)
    try:
        subprocess.run(_cli("run", *map(str, inp), "-o", "a.param", "a.bin"), cwd=tmp_path, check=True,
                       stdout=subprocess.DEVNULL, env=env)
        assert (tmp_path / "a.param").stat().st_mode & 0o777 == 0o644  # was 0o600 (mkstemp's)
        os.chmod(tmp_path / "a.bin", 0o640)
        subprocess.run(_cli("run", *map(str, inp), "-o", "a.param", "a.bin"), cwd=tmp_path, check=True,
                       stdout=subprocess.DEVNULL, env=env)
        assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old_umask)


# -- export-center: the centers pickle and its JSON sidecar ---------------------------------------------

@pytest.fixture(scope="module")
def centers_setup(tmp_path_factory, ppocrv3_rec_onnx):
    from support.text_images import random_texts, write_dataset

    root = tmp_path_factory.mktemp("interrupted-centers")
    label = write_dataset(root / "data", random_texts(12, seed=5), seed=5)
    ref = root / "ref"
    ref.mkdir()
    cmd = _cli("export-center", str(ppocrv3_rec_onnx), "--label-file", str(label), "--data-dir",
               str(root / "data"), "--no-progress", "-o", "c.pkl")
    subprocess.run(cmd, cwd=ref, check=True, stderr=subprocess.DEVNULL)
    return {"cmd": cmd, "label": label, "model": ppocrv3_rec_onnx, "ref": ref / "c.pkl"}


@pytest.mark.parametrize("phase", ["early", "model loaded", "temp file", "not killed"])
def test_sigkill_during_export_center_keeps_previous_centers(centers_setup, tmp_path, phase):
    prev_pkl = pickle.dumps({0: np.zeros(64, np.float32)})
    prev_json = b'{"previous": true}\n'
    (tmp_path / "c.pkl").write_bytes(prev_pkl)
    (tmp_path / "c.pkl.json").write_bytes(prev_json)
    inputs = [centers_setup["model"], centers_setup["label"]]
    hashes_in = [_sha(p) for p in inputs]
    cmd = centers_setup["cmd"]
    if phase == "not killed":
        assert subprocess.run(cmd, cwd=tmp_path, stderr=subprocess.DEVNULL).returncode == 0
    elif phase == "temp file":
        _kill_when(cmd, tmp_path, lambda: bool(_temps(tmp_path)))
    else:
        _kill_when(cmd, tmp_path, None, delay=0.3 if phase == "early" else 1.2)
    assert [_sha(p) for p in inputs] == hashes_in
    pkl, side = (tmp_path / "c.pkl").read_bytes(), (tmp_path / "c.pkl.json").read_bytes()
    assert pkl in (prev_pkl, centers_setup["ref"].read_bytes()), "partial centers pickle"
    assert side == prev_json or json.loads(side)["format"] == "ncnnpass-centers/1", "partial sidecar"
    strays = [p.name for p in tmp_path.iterdir() if p.name not in ("c.pkl", "c.pkl.json")]
    assert all(TEMP_RE.match(n) for n in strays), strays
    if phase == "not killed":
        assert pkl == centers_setup["ref"].read_bytes() and not strays
