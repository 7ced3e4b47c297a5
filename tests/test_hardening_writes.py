"""Hardening: a stopped ``ncnnpass`` never damages its inputs or a previous output (see docs/guarantees.md).

Real subprocesses are stopped at named phases of a write by the test-only fault point
(``NCNNPASS_TEST_WRITE_FAULT``, in ``ncnnpass.ir.fileio``), never by timing: ``PHASE:wait`` makes the
process say on stderr that it reached PHASE and block reading stdin; the test then sends the signal and
closes stdin. ``PHASE:SIGKILL`` makes the process kill itself there. Afterwards the inputs are
byte-identical and the outputs are the previous pair or the new pair, byte for byte, never one of each.
SIGINT and SIGTERM leave no temporary file; SIGKILL leaves only hidden ``.NAME.XXXXXXXX.tmp`` files.
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
import textwrap
from pathlib import Path

import fixtures
import numpy as np
import pytest

from ncnnpass.ir.fileio import FAULT_ENV, WRITE_PHASES

TEMP_RE = re.compile(r"^\.(.+)\.[0-9a-f]{8}\.tmp$")
# The phases of a .param/.bin save in the order it reaches them; from between-renames on, the new pair is
# committed: SIGINT/SIGTERM there act after the second rename.
PAIR_PHASES = WRITE_PHASES
COMMITTED = ("between-renames", "committed")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}  # the CLI's codes (bin/main.py, docs/guarantees.md)


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ncnnpass.cli.main", *args]


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if TEMP_RE.match(p.name))


def _stop_at(cmd: list[str], cwd: Path, fault: str, sig: int | None = None, timeout: float = 300) -> tuple[int, str]:
    """Run ``cmd`` with the fault ``fault`` armed. For a ``wait`` fault, block until the process reports
    the phase on stderr, send ``sig`` (if any), then close its stdin so that a held signal can act.
    Returns (exit status, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, FAULT_ENV: fault}, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        err = []
        if fault.endswith(":wait"):
            marker = f"{FAULT_ENV}: {fault.split(':')[0].split('@')[0]} "
            for raw in proc.stderr:
                err.append(raw.decode(errors="replace"))
                if err[-1].startswith(marker):
                    break
            else:
                proc.wait(timeout)
                pytest.fail(f"{fault} was never reached (exit {proc.returncode}):\n{''.join(err)}")
            if sig is not None:
                proc.send_signal(sig)
        proc.stdin.close()
        rest = proc.stderr.read().decode(errors="replace")
        proc.wait(timeout)
        return proc.returncode, "".join(err) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- run: a real model pair over a previous real pair ------------------------------------------------------

@pytest.fixture(scope="module")
def pair_setup(tmp_path_factory):
    """Inputs: PP-OCRv3 rec from pnnx. Previous outputs: PP-OCRv4 rec from pnnx (another real pair). New
    outputs: an uninterrupted ``ncnnpass run`` of the inputs."""
    inp = tuple(fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec"))
    prev = tuple(fixtures.require(lambda: fixtures.ppocrv4_rec_ncnn(False), "pnnx conversion of PP-OCRv4 rec"))
    ref = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(_cli("run", *map(str, inp), "-o", "out.param", "out.bin"), cwd=ref, check=True,
                   stdout=subprocess.DEVNULL)
    new = (_sha(ref / "out.param"), _sha(ref / "out.bin"))
    old = (_sha(prev[0]), _sha(prev[1]))
    assert new[0] != old[0] and new[1] != old[1]  # so that "previous" and "new" tell apart
    return {"in": inp, "prev": prev, "old": old, "new": new, "in_sha": [_sha(p) for p in inp]}


def _previous_outputs(setup, work: Path) -> list[str]:
    (work / "out.param").write_bytes(setup["prev"][0].read_bytes())
    (work / "out.bin").write_bytes(setup["prev"][1].read_bytes())
    return _cli("run", *map(str, setup["in"]), "-o", "out.param", "out.bin")


def _outputs(work: Path) -> tuple[str | None, str | None]:
    return _sha(work / "out.param"), _sha(work / "out.bin")


@pytest.mark.real
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", PAIR_PHASES)
def test_signal_at_each_write_phase(pair_setup, tmp_path, phase, sig):
    """SIGINT/SIGTERM sent by another process while ``run`` is stopped at ``phase``: exit 130/143, no
    temporary file, the previous pair intact before the commit and the new pair complete from it on."""
    cmd = _previous_outputs(pair_setup, tmp_path)
    rc, err = _stop_at(cmd, tmp_path, f"{phase}:wait", sig)
    assert rc == EXIT[sig], err
    assert ("interrupted" if sig == signal.SIGINT else "terminated") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "out.param"]
    assert _outputs(tmp_path) == (pair_setup["new"] if phase in COMMITTED else pair_setup["old"]), phase
    assert [_sha(p) for p in pair_setup["in"]] == pair_setup["in_sha"]


@pytest.mark.real
@pytest.mark.parametrize("phase", PAIR_PHASES)
def test_sigkill_at_each_write_phase(pair_setup, tmp_path, phase):
    """SIGKILL cannot be held: before the first rename the previous pair stays and the temporary files
    stay too; between the renames (a window of one system call) the new .bin sits next to the previous
    .param, never the other way round; after them the new pair is complete."""
    rc, _ = _stop_at(_previous_outputs(pair_setup, tmp_path), tmp_path, f"{phase}:SIGKILL")
    assert rc == -signal.SIGKILL
    old, new = pair_setup["old"], pair_setup["new"]
    expected = {"between-renames": (old[0], new[1]), "committed": new}.get(phase, old)
    assert _outputs(tmp_path) == expected, phase
    left = {"between-renames": [".out.param"], "committed": []}.get(phase, [".out.bin", ".out.param"])
    assert [n.rsplit(".", 2)[0] for n in _temps(tmp_path)] == left
    assert [_sha(p) for p in pair_setup["in"]] == pair_setup["in_sha"]


@pytest.mark.real
def test_waiting_at_a_fault_without_a_signal_changes_nothing(pair_setup, tmp_path):
    """The ``wait`` fault only stops the process: released without a signal, the run writes the new pair."""
    rc, err = _stop_at(_previous_outputs(pair_setup, tmp_path), tmp_path, "between-renames@out.param:wait")
    assert rc == 0, err
    assert _outputs(tmp_path) == pair_setup["new"] and not _temps(tmp_path)


def test_a_malformed_fault_is_a_one_line_error(tmp_path):
    (tmp_path / "a.param").write_text("7767517\n1 1\nInput in 0 1 data\n")
    (tmp_path / "a.bin").write_bytes(b"")
    rc, err = _stop_at(_cli("run", "a.param", "a.bin", "-o", "b.param", "b.bin"), tmp_path, "mid-write:SIGINT")
    assert rc == 1 and err.count("\n") == 1 and f"{FAULT_ENV}='mid-write:SIGINT'" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.param"]


_HELD_ACROSS_THREADS = textwrap.dedent("""
    import os, signal, sys, threading
    from ncnnpass.ir import fileio

    go, done = threading.Event(), threading.Event()

    def other_thread():  # started before the write, with SIGINT unblocked (as numpy's BLAS threads are)
        go.wait()
        signal.raise_signal(signal.SIGINT)  # delivered to this thread; Python's handler runs in the main one
        done.set()

    threading.Thread(target=other_thread, daemon=True).start()
    d = sys.argv[1]
    moves = [(os.path.join(d, f"t{i}"), os.path.join(d, f"f{i}")) for i in (1, 2)]
    for src, dst in moves:
        open(src, "w").write("new"); open(dst, "w").write("old")
    real = os.replace

    def replace(src, dst):
        real(src, dst)
        if dst == moves[0][1]:  # between the renames
            go.set(); done.wait()
            sum(range(1000))  # bytecodes: the main thread runs the Python handler here

    os.replace = replace
    try:
        fileio.rename_together(moves)
    except KeyboardInterrupt:
        print("KeyboardInterrupt after", [open(dst).read() for _, dst in moves])
""")


def test_a_signal_taken_by_another_thread_is_held_too(tmp_path):
    """The kernel hands a process-directed signal to any thread that does not block it (numpy's BLAS
    threads): holding means swapping the Python handler, which runs in the main thread, not masking."""
    out = subprocess.run([sys.executable, "-c", _HELD_ACROSS_THREADS, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "KeyboardInterrupt after ['new', 'new']", out.stderr


def test_output_permissions_follow_the_umask_or_the_replaced_file(tmp_path):
    (tmp_path / "in.param").write_text("7767517\n2 2\nMemoryData md 0 1 m 0=4\nReLU relu 1 1 m y\n")
    np.full(4, -1.0, np.float32).tofile(tmp_path / "in.bin")
    cmd = _cli("run", "in.param", "in.bin", "-o", "a.param", "a.bin")
    old_umask = os.umask(0o022)
    try:
        subprocess.run(cmd, cwd=tmp_path, check=True, stdout=subprocess.DEVNULL)
        assert (tmp_path / "a.param").stat().st_mode & 0o777 == 0o644  # was 0o600 (mkstemp's)
        os.chmod(tmp_path / "a.bin", 0o640)
        subprocess.run(cmd, cwd=tmp_path, check=True, stdout=subprocess.DEVNULL)
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
    return {"cmd": cmd, "label": label, "model": ppocrv3_rec_onnx, "ref": ref / "c.pkl",
            "ref_side": ref / "c.pkl.json"}


# The pickle and its sidecar are renamed together (passes/paddle/center_files.py): stopped before the renames
# both are the previous ones, after them both are new; never a new pickle next to the previous sidecar.
CENTER_FAULTS = {
    "temps-created@c.pkl:SIGKILL": ("old", "old"),
    "temps-synced@c.pkl:wait": ("old", "old"),
    "committed@c.pkl:wait": ("new", "new"),
}


@pytest.mark.real
@pytest.mark.parametrize("fault", [*CENTER_FAULTS, "not stopped"])
def test_export_center_stopped_keeps_previous_centers(centers_setup, tmp_path, fault):
    prev_pkl = pickle.dumps({0: np.zeros(64, np.float32)})
    prev_json = b'{"previous": true}\n'
    (tmp_path / "c.pkl").write_bytes(prev_pkl)
    (tmp_path / "c.pkl.json").write_bytes(prev_json)
    inputs = [centers_setup["model"], centers_setup["label"]]
    hashes_in = [_sha(p) for p in inputs]
    if fault == "not stopped":
        rc = subprocess.run(centers_setup["cmd"], cwd=tmp_path, stderr=subprocess.DEVNULL).returncode
        want = ("new", "new")
    else:
        rc, err = _stop_at(centers_setup["cmd"], tmp_path, fault, signal.SIGINT)
        want = CENTER_FAULTS[fault]
    assert rc == {"not stopped": 0, "wait": 130, "SIGKILL": -signal.SIGKILL}[fault.rpartition(":")[2]]
    assert [_sha(p) for p in inputs] == hashes_in
    pkl, side = (tmp_path / "c.pkl").read_bytes(), (tmp_path / "c.pkl.json").read_bytes()
    assert pkl == (prev_pkl if want[0] == "old" else centers_setup["ref"].read_bytes())
    if want[1] == "old":
        assert side == prev_json
    else:
        assert json.loads(side)["format"] == "ncnnpass-centers/1"
    strays = [p.name for p in tmp_path.iterdir() if p.name not in ("c.pkl", "c.pkl.json")]
    assert all(TEMP_RE.match(n) for n in strays) and (fault.endswith("SIGKILL") or not strays), strays


# -- convert: the model pairs in its output directory -------------------------------------------------

@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("fault,pair,want", [
    ("between-renames@pnnx/model.ncnn.param", "pnnx", "new"),  # pnnx's pair, moved in from its temp dir
    ("temps-synced@out/model.ncnn.param", "", "old"),  # the verified pair, written by Graph.save
    ("between-renames@out/model.ncnn.param", "", "new"),
], ids=["pnnx-between-renames", "final-temps-synced", "final-between-renames"])
def test_convert_interrupted_at_a_model_pair(ppocrv3_rec_onnx, pair_setup, tmp_path, fault, pair, want):
    """SIGINT while ``convert`` is stopped at one of its two model pairs (OUTDIR/pnnx/ and OUTDIR/): exit
    130; before the commit the previous pair stays, from the first rename on the new pair is complete;
    no temporary file or directory is left in OUTDIR."""
    from ncnnpass.ir import Graph

    where = tmp_path / "out" / pair
    where.mkdir(parents=True)
    param, bin = where / "model.ncnn.param", where / "model.ncnn.bin"
    param.write_bytes(pair_setup["prev"][0].read_bytes())
    bin.write_bytes(pair_setup["prev"][1].read_bytes())
    cmd = _cli("convert", str(ppocrv3_rec_onnx), "-o", "out", "--no-report", "--static-width")
    rc, err = _stop_at(cmd, tmp_path, f"{fault}:wait", signal.SIGINT)
    assert rc == 130, err
    got = (_sha(param), _sha(bin))
    if want == "new":
        assert got[0] != pair_setup["old"][0] and got[1] != pair_setup["old"][1]
        g = Graph.load(param, bin)  # a pair: the .param reads the .bin to its last byte (strict)
        assert len(g.layers) > 50
    else:
        assert got == pair_setup["old"]
    out = tmp_path / "out"
    assert not [p for p in out.rglob(".*")], sorted(str(p.relative_to(out)) for p in out.rglob("*"))
