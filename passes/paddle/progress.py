"""Progress display on stderr for long runs over image sets."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A small progress display on stderr: a redrawn bar on a terminal, a line every 30 s otherwise."""

    def __init__(self, total: int, desc: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if (self.tty and now - self.last >= 0.1) or (not self.tty and now - self.last >= 30):
            self.last = now
            self._draw(now, end="" if self.tty else "\n")

    def _draw(self, now: float, end: str) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 30)
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{self.desc}: [{bar:<30}] {self.done}/{self.total} ({rate:.1f} img/s){end}")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._draw(time.perf_counter(), end="\n")
