"""Batches of ncnn runs on an execution target (the emulated phone), spread over a few sessions.

Each session of :func:`ncnnpass.ir.targets.open_target` is one worker process; an emulated inference
takes seconds, so :class:`TargetPool` keeps ``workers`` sessions and runs independent jobs on them in
parallel. A job whose net crashes the runtime or fails comes back with ``error`` set (the worker restarts),
never as an exception.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import RuntimeBridgeError
from ncnnpass.ir.targets import Target, open_target


@dataclass
class Job:
    """One net run on one or more input samples."""

    graph: Graph
    samples: Sequence[Mapping[str, np.ndarray]]
    extract: Sequence[str] | None = None  # None: the graph's outputs
    options: str | Mapping[str, bool] = "default"


@dataclass
class JobResult:
    outputs: list[dict[str, np.ndarray]]  # per sample: blob -> array
    error: str | None = None  # crash or ncnn failure, one line

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class TargetPool:
    """``workers`` sessions of one target; :meth:`run` spreads jobs over them."""

    target: str = "arm"
    workers: int = 2
    seconds: float = 0.0  # wall time spent in :meth:`run`
    runs: int = 0  # jobs run
    _sessions: list[Target] = field(default_factory=list, repr=False)

    def _ensure(self) -> None:
        while len(self._sessions) < self.workers:
            self._sessions.append(open_target(self.target))

    def run(self, jobs: Sequence[Job], progress: Callable[[str], None] | None = None) -> list[JobResult]:
        """Run every job; results in job order."""
        if not jobs:
            return []
        start = time.perf_counter()
        self._ensure()
        free: queue.Queue[Target] = queue.Queue()
        for s in self._sessions:
            free.put(s)

        def one(job: Job) -> JobResult:
            session = free.get()
            try:
                outs = session.run_many(job.graph, list(job.samples), job.extract, options=job.options,
                                        light_mode=False)
                return JobResult(outs)
            except RuntimeBridgeError as exc:
                return JobResult([], str(exc))
            finally:
                free.put(session)

        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(one, jobs))
        took = time.perf_counter() - start
        self.seconds += took
        self.runs += len(jobs)
        if progress:
            progress(f"{len(jobs)} job(s) on {self.target} in {took:.1f} s")
        return results

    def close(self) -> None:
        for s in self._sessions:
            s.close()
        self._sessions.clear()

    def __enter__(self) -> TargetPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
