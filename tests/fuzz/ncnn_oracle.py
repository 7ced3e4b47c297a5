"""ncnn's own loader as an oracle, in a long-lived worker process that may crash.

The parent sends one case at a time (the ``.param`` bytes and optionally ``.bin`` bytes) and gets back
whether ``Net.load_param`` (and ``Net.load_model``) returned 0, plus the last line ncnn logged. A case that
kills the worker or gets no answer within the time limit is reported as ``crash``/``hang`` and the worker
is restarted; both count as "ncnn refuses" (ncnn did not produce a usable net).

    python -m tests.fuzz.ncnn_oracle --worker DIR     # the worker (started by :class:`NcnnOracle`)
"""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Verdict:
    status: str  # "ok", "param" (load_param refused), "model" (load_model refused), "crash", "hang"
    log: str = ""

    @property
    def accepted(self) -> bool:
        return self.status == "ok"


def _read_exact(fd: int, n: int, timeout: float) -> bytes | None:
    out = b""
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        chunk = os.read(fd, n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


class NcnnOracle:
    """Judges cases with the pip ``ncnn`` loader in a worker process (restarted after a crash)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.dir = tempfile.mkdtemp(prefix="ncnn-oracle-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.ncnn_oracle", "--worker", self.dir],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, bufsize=0)

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def judge(self, param: bytes, bin: bytes | None = None) -> Verdict:
        self.submit(param, bin)
        return self.result()

    def submit(self, param: bytes, bin: bytes | None = None) -> None:
        """Send a case; ncnn works on it while the caller does something else until :meth:`result`."""
        self._failed: Verdict | None = None
        if self.proc is None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        blen = -1 if bin is None else len(bin)
        try:
            self.proc.stdin.write(struct.pack("<qq", len(param), blen) + param + (bin or b""))
        except BrokenPipeError:
            self._stop()
            self.restarts += 1
            self._failed = Verdict("crash", "worker died")

    def result(self) -> Verdict:
        if self._failed is not None:
            return self._failed
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        head = _read_exact(fd, 5, self.timeout)
        if head is None:
            status = "hang" if self.proc.poll() is None else "crash"
            self._stop()
            self.restarts += 1
            return Verdict(status, "")
        code, n = head[0], struct.unpack("<I", head[1:])[0]
        log = _read_exact(fd, n, self.timeout) or b""
        return Verdict({0: "ok", 1: "param", 2: "model"}[code], log.decode("utf-8", "replace"))

    def close(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        self._stop()
        for f in Path(self.dir).glob("*"):
            f.unlink()
        os.rmdir(self.dir)

    def __enter__(self) -> NcnnOracle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _worker(directory: str) -> None:
    import ncnn

    param_path, bin_path, log_path = (os.path.join(directory, n) for n in ("m.param", "m.bin", "log"))
    log_fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log_fd, 2)  # ncnn logs to stderr: keep the last line as the reason
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = inp.read(16)
        if len(head) < 16:
            return
        plen, blen = struct.unpack("<qq", head)
        param = inp.read(plen)
        data = inp.read(blen) if blen >= 0 else None
        with open(param_path, "wb") as fh:
            fh.write(param)
        os.lseek(log_fd, 0, os.SEEK_SET)
        os.ftruncate(log_fd, 0)
        net = ncnn.Net()
        code = 0
        if net.load_param(param_path) != 0:
            code = 1
        elif data is not None:
            with open(bin_path, "wb") as fh:
                fh.write(data)
            if net.load_model(bin_path) != 0:
                code = 2
        del net
        os.lseek(log_fd, 0, os.SEEK_SET)
        logged = os.read(log_fd, 1 << 16).strip().splitlines()
        msg = logged[-1][:300] if logged else b""
        out.write(bytes([code]) + struct.pack("<I", len(msg)) + msg)
        out.flush()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(sys.argv[2])
    else:
        sys.exit(__doc__)
