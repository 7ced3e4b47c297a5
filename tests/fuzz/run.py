"""Mutation fuzzer for the ``.param`` parser, the ``.bin`` loader, the writer, the CLI and the pattern parser.

    python -m tests.fuzz.run --iterations 100000 --jobs 2      # the long run (see docs/guarantees.md)
    python -m tests.fuzz.run --iterations 2000 --seed 7        # a quick one
    python -m tests.fuzz.run --replay 4711 --seed 7            # re-run one iteration, print its traceback
    python -m tests.fuzz.run --differential --iterations 100000 --seed 1   # ncnn's loader vs ncnnpass

Run from the repository root. Every iteration ``i`` draws from ``random.Random(f"{seed}:{i}")``, so a
failure is reproduced by ``--replay i`` alone. Seeds are the real PP-OCRv3 rec models from pnnx (fp32 and
fp16 weights; fetched through ``tests/fixtures.py``, skipped with ``--no-real``), windows of them,
synthetic models covering the other weighted layer types and storage flags, every built-in rule
pass's pattern text, and an ``export-center --shard`` file (bytes and metadata mutated). The address space is capped (``--memory-mb``) so an unbounded allocation shows up
as a ``MemoryError`` escape, and every case has a time limit (``--timeout``). Exit status 1 when
anything escaped; failing inputs are saved under ``--save`` when given.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import Model, pattern_texts, real_model, shard_bytes, synthetic_model, windows
from .mutate import PARAM_MUTATORS, PATTERN_MUTATORS, SHARD_MUTATORS, mutate, mutate_bin, mutate_shard
from .targets import Escape, Timeout, cli_target, model_target, pattern_target, shard_target, time_limit


@dataclass
class Corpus:
    full: list[Model]
    small: list[Model]
    patterns: list[tuple[str, str]]
    pattern_graph: object = None
    shard: bytes = b""


@dataclass
class Result:
    iterations: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=list)
    slowest: tuple[float, int] = (0.0, -1)
    max_rss_mb: float = 0.0

    def merge(self, other: Result) -> None:
        self.iterations += other.iterations
        self.outcomes.update(other.outcomes)
        self.failures += other.failures
        self.slowest = max(self.slowest, other.slowest)
        self.max_rss_mb = max(self.max_rss_mb, other.max_rss_mb)


def _fixtures():
    try:
        import fixtures  # under pytest: tests/ is on sys.path
    except ImportError:
        from tests import fixtures
    return fixtures


def build_corpus(real: list[tuple[Path, Path]] | None = None, use_real: bool = True, windows_per_model: int = 40,
                 seed: int = 0) -> Corpus:
    """The seeds. ``real``: (param, bin) pairs; by default the PP-OCRv3 rec pnnx models (fp32, fp16)."""
    from ncnnpass.ir.loader import graph_from_text

    full: list[Model] = []
    if use_real:
        if real is None:
            fx = _fixtures()
            real = [fx.ppocrv3_rec_ncnn(False), fx.ppocrv3_rec_ncnn(True)]
        full = [real_model(p, b, f"pnnx-{k}") for k, (p, b) in enumerate(real)]
    rng = random.Random(seed)
    small = [synthetic_model(s) for s in range(4)]
    for m in full:
        small += windows(m, rng, windows_per_model)
    syn = small[0]
    graph = graph_from_text(syn.param.decode(), syn.bin)
    return Corpus(full, small, pattern_texts(), graph, shard_bytes())


def one(corpus: Corpus, seed: int | str, i: int, cli_every: int = 16) -> str:
    """Iteration ``i``: pick a seed input and a kind of mutation, run the target; returns the outcome."""
    rng = random.Random(f"{seed}:{i}")
    kind = rng.random()
    if kind < 0.20:
        name, text = rng.choice(corpus.patterns)
        return pattern_target(mutate(rng, text.encode(), PATTERN_MUTATORS), corpus.pattern_graph)
    if kind < 0.23:
        return "shard-" + shard_target(mutate_shard(rng, corpus.shard) if rng.random() < 0.6
                                       else mutate(rng, corpus.shard, SHARD_MUTATORS))
    pool = corpus.full if corpus.full and rng.random() < 0.15 else corpus.small
    m = rng.choice(pool)
    param, bin = m.param, m.bin
    if kind < 0.72:
        param = mutate(rng, param, PARAM_MUTATORS)
    elif kind < 0.92:
        bin = mutate_bin(rng, bin, m.array_starts)
    else:
        param = mutate(rng, param, PARAM_MUTATORS)
        bin = mutate_bin(rng, bin, m.array_starts)
    if rng.random() < 0.05:
        bin = None
    if pool is corpus.small and cli_every and i % cli_every == 0:
        return cli_target(param, bin)
    return model_target(param, bin)


def run_range(corpus: Corpus, seed: int | str, indices, timeout: float = 10.0, stop_after: int = 20) -> Result:
    res = Result()
    start = time.perf_counter()
    for i in indices:
        t = time.perf_counter()
        try:
            with time_limit(timeout):
                outcome = one(corpus, seed, i)
        except Escape as exc:
            res.failures.append({"iteration": i, "stage": exc.stage, "error": str(exc), "detail": exc.detail})
            outcome = f"ESCAPE:{exc.stage}"
        except Timeout as exc:
            res.failures.append({"iteration": i, "stage": "timeout", "error": str(exc), "detail": ""})
            outcome = "ESCAPE:timeout"
        except Exception:  # the harness itself (or an escape outside a guarded stage)
            tb = traceback.format_exc()
            res.failures.append({"iteration": i, "stage": "harness", "error": tb.strip().splitlines()[-1],
                                 "detail": tb})
            outcome = "ESCAPE:harness"
        dt = time.perf_counter() - t
        res.slowest = max(res.slowest, (dt, i))
        res.outcomes[outcome.split(":")[0] + ":" + outcome.split(":")[1] if ":" in outcome else outcome] += 1
        res.iterations += 1
        if len(res.failures) >= stop_after:
            break
    res.seconds = time.perf_counter() - start
    res.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def _cap_memory(mb: int) -> None:
    if mb:
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


def _worker(args) -> Result:
    corpus_args, seed, start, stop, step, timeout, memory_mb = args
    _cap_memory(memory_mb)
    corpus = build_corpus(**corpus_args)
    return run_range(corpus, seed, range(start, stop, step), timeout)


def save_failure(directory: Path, seed, failure: dict) -> None:
    """Write a failing iteration's traceback and its replay command (the input is re-derived from the seed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"iter-{failure['iteration']}.txt").write_text(
        f"replay: python -m tests.fuzz.run --seed {seed} --replay {failure['iteration']}\n\n{failure['detail']}")


def _differential(args: argparse.Namespace) -> int:
    """``--differential``: cases 0..iterations-1 of ``--seed`` (``--replay I``: case I only)."""
    from .differential import run_cases

    param, bin = _fixtures().ppocrv3_rec_ncnn(False)
    m = real_model(param, bin, "pnnx")
    wins = windows(m, random.Random(0), 40)
    start, count = (args.replay, 1) if args.replay is not None else (0, args.iterations)
    rep = run_cases(m.param, wins, count, seed=args.seed, start=start)
    print(rep.summary())
    for i, msg, log in rep.undocumented:
        print(f"case {i}: ncnn accepts ({log or 'no message'}), ncnnpass refuses: {msg[:300]}")
    return 1 if rep.undocumented or rep.written_refused else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=10000)
    ap.add_argument("--seed", default="0")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (iterations are split by index)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--memory-mb", type=int, default=2048, help="address-space cap per process (0: none)")
    ap.add_argument("--no-real", action="store_true", help="synthetic seeds only (no PP-OCRv3 download)")
    ap.add_argument("--replay", type=int, metavar="I", help="run iteration I only and show the result")
    ap.add_argument("--save", metavar="DIR", help="write each failure's traceback and replay command here")
    ap.add_argument("--json", metavar="OUT", help="write the summary as JSON")
    ap.add_argument("--differential", action="store_true",
                    help="judge mutated real .param/.bin files with ncnn's loader and ncnnpass (one process)")
    args = ap.parse_args(argv)
    if args.differential:
        return _differential(args)
    corpus_args = {"use_real": not args.no_real}
    if args.replay is not None:
        _cap_memory(args.memory_mb)
        corpus = build_corpus(**corpus_args)
        res = run_range(corpus, args.seed, [args.replay], args.timeout)
        print(dict(res.outcomes))
        for f in res.failures:
            print(f["detail"])
        return 1 if res.failures else 0
    t0 = time.perf_counter()
    jobs = max(1, args.jobs)
    work = [(corpus_args, args.seed, k, args.iterations, jobs, args.timeout, args.memory_mb) for k in range(jobs)]
    if jobs == 1:
        results = [_worker(work[0])]
    else:
        with mp.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(_worker, work)
    total = Result()
    for r in results:
        total.merge(r)
    total.seconds = time.perf_counter() - t0
    rate = total.iterations / total.seconds if total.seconds else 0.0
    print(f"fuzz: {total.iterations} inputs in {total.seconds:.1f}s ({rate:.0f}/s, {jobs} process(es), "
          f"seed {args.seed}); slowest case {total.slowest[0]:.2f}s (iteration {total.slowest[1]}); "
          f"peak RSS {total.max_rss_mb:.0f} MB per process")
    for outcome, n in sorted(total.outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>8}  {outcome}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "iterations": total.iterations, "seconds": total.seconds, "per_second": rate, "jobs": jobs,
            "seed": args.seed, "outcomes": dict(total.outcomes), "slowest": total.slowest,
            "peak_rss_mb": total.max_rss_mb, "failures": [{k: v for k, v in f.items() if k != "detail"}
                                                          for f in total.failures]}, indent=1))
    if total.failures:
        print(f"\n{len(total.failures)} escape(s):", file=sys.stderr)
        for f in total.failures[:20]:
            print(f"  iteration {f['iteration']} ({f['stage']}): {f['error']}\n"
                  f"    replay: python -m tests.fuzz.run --seed {args.seed} --replay {f['iteration']}",
                  file=sys.stderr)
        if args.save:
            for f in total.failures:
                save_failure(Path(args.save), args.seed, f)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
