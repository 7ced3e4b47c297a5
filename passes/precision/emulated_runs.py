"""Batches of ncnn runs on an execution target (the emulated phone), spread over a few sessions.

Each session of :func:`ncnnpass.ir.runtime.targets.open_target` is one worker process; an emulated inference
takes seconds, so :class:`TargetPool` keeps ``workers`` sessions and runs independent jobs on them in
parallel. A job whose net crashes the runtime or fails comes back with ``error`` set (the worker restarts),
never as an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import RuntimeBridgeError
from ncnnpass.ir.runtime.targets import Target
from ncnnpass.ir.runtime.targets import TargetPool as SessionPool


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
    """``workers`` sessions of one target (opened at the first :meth:`run`); :meth:`run` spreads jobs over
    them with :meth:`ncnnpass.ir.runtime.targets.TargetPool.spread`, counting runs and wall time."""

    target: str = "arm"
    workers: int = 2
    seconds: float = 0.0  # wall time spent in :meth:`run`
    runs: int = 0  # jobs run
    _pool: SessionPool | None = field(default=None, repr=False)

    def run(self, jobs: Sequence[Job], progress: Callable[[str], None] | None = None) -> list[JobResult]:
        """Run every job; results in job order."""
        if not jobs:
            return []
        start = time.perf_counter()
        if self._pool is None:
            self._pool = SessionPool(self.target, self.workers)

        def one(session: Target, job: Job) -> JobResult:
            try:
                return JobResult(session.run_many(job.graph, list(job.samples), job.extract, options=job.options,
                                                  light_mode=False))
            except RuntimeBridgeError as exc:
                return JobResult([], str(exc))

        results = self._pool.spread(jobs, one)
        took = time.perf_counter() - start
        self.seconds += took
        self.runs += len(jobs)
        if progress:
            progress(f"{len(jobs)} job(s) on {self.target} in {took:.1f} s")
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> TargetPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
