"""A crash-tolerant pool of fuzz workers (:mod:`.worker`): an ncnn crash or hang is a finding, not a dead fuzzer.

Each worker runs one case at a time in its own process. When it dies, the case it was on becomes a
``crash`` outcome at the stage it had announced (``invalid`` if that was the reference run of the
unmodified model), when it does not answer within ``timeout`` a ``hang``; either way the worker restarts
for the next case. A worker whose ncnn reports heap corruption without dying is restarted too, and its
case fails. Workers run with ``OMP_WAIT_POLICY=passive`` (ncnn's OpenMP threads otherwise spin on a
shared 2-core machine) and an address-space cap.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from .oracle import Outcome

REPO = Path(__file__).resolve().parents[3]
CORRUPTION = ("FATAL ERROR", "double free", "corrupted", "free(): invalid")


def _limit_memory(mb: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


class Worker:
    def __init__(self, config: dict, timeout: float, memory_mb: int) -> None:
        self.config = config
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen | None = None
        self.err = None
        self.buf = b""
        self.job: dict | None = None
        self.stage = ""
        self.deadline = 0.0
        self.err_at = 0

    def start(self) -> None:
        env = dict(os.environ, OMP_WAIT_POLICY="passive", PYTHONHASHSEED="0")
        self.err = tempfile.TemporaryFile()
        mb = self.memory_mb
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.passes.worker"], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     preexec_fn=(lambda: _limit_memory(mb)) if mb else None)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf = b""
        self.proc.stdin.write((json.dumps(self.config) + "\n").encode())
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None
        if self.err is not None:
            self.err.close()
            self.err = None

    def submit(self, job: dict) -> None:
        if self.proc is None:
            self.start()
        self.job = job
        self.stage = "start"
        self.deadline = time.monotonic() + self.timeout
        self.err.seek(0, os.SEEK_END)
        self.err_at = self.err.tell()
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # noticed as EOF when reading

    def stderr_tail(self, limit: int = 300) -> str:
        if self.err is None:
            return ""
        self.err.seek(self.err_at)
        text = self.err.read().decode("utf-8", "replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return " | ".join(lines[-3:])[-limit:]

    def lost(self, kind: str) -> Outcome:
        """The outcome of the case in flight when the worker died (``crash``) or stopped answering."""
        code = None
        if self.proc is not None and kind == "crash":
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit {code}"
        if kind == "hang":
            why = f"no answer within {self.timeout:.0f}s"
        tail = self.stderr_tail()
        status = "invalid" if self.stage in ("make", "reference") else "fail"
        out = Outcome(status, self.stage, kind, f"worker {kind} ({why}) during {self.stage}" +
                      (f"; stderr: {tail}" if tail else ""))
        self.stop()
        return out


class Pool:
    """``jobs`` workers; :meth:`run` yields ``(job, outcome, source)`` as cases finish (any order). Workers
    stay up between calls until :meth:`close` (use ``with``)."""

    def __init__(self, config: dict, jobs: int = 1, timeout: float = 300.0, memory_mb: int = 3072) -> None:
        self.workers = [Worker(config, timeout, memory_mb) for _ in range(max(1, jobs))]

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for w in self.workers:
            w.stop()
            w.job = None

    def one(self, job: dict) -> tuple[Outcome, str]:
        """Run one job and wait for it."""
        for _, outcome, source in self.run([job]):
            return outcome, source
        raise AssertionError("no result")  # pragma: no cover

    def run(self, jobs: Iterable[dict]) -> Iterator[tuple[dict, Outcome, str]]:
        todo = deque(jobs)
        sel = selectors.DefaultSelector()
        busy: dict[int, Worker] = {}
        try:
            while todo or busy:
                for w in self.workers:
                    if w.job is None and todo:
                        w.submit(todo.popleft())
                        busy[w.proc.stdout.fileno()] = w
                        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                now = time.monotonic()
                wait = max(0.0, min(w.deadline for w in busy.values()) - now) if busy else 0.0
                events = sel.select(timeout=min(wait, 1.0))
                finished: list[tuple[Worker, Outcome | None, str]] = []
                for key, _ in events:
                    w = key.data
                    done = self._read(w)
                    if done is not None:
                        finished.append((w, *done))
                for w in list(busy.values()):
                    if w.job is not None and time.monotonic() > w.deadline and all(f[0] is not w for f in finished):
                        finished.append((w, None, "hang"))
                for w, outcome, source in finished:
                    job = w.job
                    sel.unregister(w.proc.stdout)
                    del busy[w.proc.stdout.fileno()]
                    if outcome is None:
                        outcome = w.lost(source or "crash")
                        source = ""
                    elif any(m in w.stderr_tail(10_000) for m in CORRUPTION):
                        outcome = Outcome("fail", "run-after", "memory",
                                          f"ncnn reported heap corruption: {w.stderr_tail()}", rules=outcome.rules)
                        w.stop()
                    w.job = None
                    yield job, outcome, source
        finally:
            sel.close()
            for w in self.workers:
                if w.job is not None:  # interrupted mid-case: that worker's answer would be stale
                    w.stop()
                    w.job = None

    @staticmethod
    def _read(w: Worker) -> tuple[Outcome | None, str] | None:
        """Consume what the worker wrote; ``(outcome, source)`` when its case is done (``(None, "crash")``:
        the worker died)."""
        try:
            chunk = os.read(w.proc.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            return None
        if not chunk:
            return None, "crash"
        w.buf += chunk
        while b"\n" in w.buf:
            line, w.buf = w.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "stage" in msg:
                w.stage = msg["stage"]
            elif "result" in msg:
                return Outcome(**msg["result"]), msg.get("source", "")
        return None
