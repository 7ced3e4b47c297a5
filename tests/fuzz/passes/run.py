"""Differential pass fuzzer: random pass sequences over real and generated ncnn graphs, judged against ncnn.

    python -m tests.fuzz.passes --iterations 10000 --jobs 2               # a campaign (mixed)
    python -m tests.fuzz.passes --iterations 2000 --generated --seed 7    # generated graphs only
    python -m tests.fuzz.passes --iterations 500 --real --start 500       # real models, cases 500..999
    python -m tests.fuzz.passes --seed 7 --replay 4711                    # one case, with its details
    python -m tests.fuzz.passes --seed 7 --replay 4711 --reduce           # ... reduced to a regression file

Run from the repository root. Case ``i`` comes from ``random.Random(f"{seed}:{i}")`` alone: a graph from
:mod:`.generate` or a real model in one of its forms (:mod:`.real`), and a sequence from :mod:`.sequences`.
Each case runs in a crash-tolerant worker (:mod:`.runner`) and is judged by :mod:`.oracle`. At the end:
cases by source and outcome, the failures with their replay commands, per (pass, rule) rewrite counts
with the rules never fired (generated graphs alone, and all), and the wall time. Exit status 1 when a case
failed or an input was invalid; ``--reduce`` writes each distinct failure, reduced, to ``--regressions``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import real
from .coverage import summary
from .oracle import Case, Outcome
from .reduce import Reducer, signature
from .runner import Pool

REGRESSIONS = Path(__file__).resolve().parent / "regressions"


@dataclass
class Tally:
    cases: int = 0
    by_source: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    fired: dict[str, Counter] = field(default_factory=lambda: {"generated": Counter(), "real": Counter()})
    failures: list[tuple[int, Outcome, str]] = field(default_factory=list)
    worst: dict[float, tuple[float, int]] = field(default_factory=dict)  # bound -> (largest error, case)
    seconds: float = 0.0

    def add(self, index: int, o: Outcome, source: str) -> None:
        kind = "real" if source.startswith("real") else "generated"
        self.cases += 1
        self.by_source[source.split("/")[0] if kind == "real" else kind] += 1
        self.statuses[(kind, o.status)] += 1
        self.fired[kind].update(o.rules)
        if o.status != "ok":
            self.failures.append((index, o, source))
        elif o.bound:
            self.worst[o.bound] = max(self.worst.get(o.bound, (0.0, -1)), (o.error, index))

    def fired_all(self) -> Counter:
        return self.fired["generated"] + self.fired["real"]


def available_models(names: list[str]) -> list[str]:
    """The real models that can be had (built on first use); missing ones are reported (fatal with CI=true)."""
    out = []
    for n in names:
        try:
            real.real_model(n)
            out.append(n)
        except Exception as exc:  # a fixture that cannot be fetched or converted here
            if os.environ.get("CI", "").lower() == "true":
                raise
            print(f"fuzz: real model {n} unavailable ({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr)
    return out


def campaign(seed: str, indices: range, mode: str, models: list[str], jobs: int = 1, timeout: float = 300.0,
             progress: bool = False) -> Tally:
    tally = Tally()
    t0 = time.perf_counter()
    config = {"seed": seed, "mode": mode, "real": models}
    with Pool(config, jobs, timeout) as pool:
        for k, (job, outcome, source) in enumerate(pool.run({"i": i} for i in indices), 1):
            tally.add(job["i"], outcome, source)
            if progress and k % 500 == 0:
                rate = k / (time.perf_counter() - t0)
                print(f"fuzz: {k}/{len(indices)} cases ({rate:.1f}/s), {len(tally.failures)} failing",
                      file=sys.stderr, flush=True)
    tally.seconds = time.perf_counter() - t0
    return tally


def report(t: Tally, seed: str, jobs: int) -> str:
    lines = [f"passfuzz: {t.cases} sequences in {t.seconds:.0f}s ({t.cases / max(t.seconds, 1e-9):.1f}/s, {jobs} "
             f"worker(s), seed {seed}): " + ", ".join(f"{n} {k}" for k, n in sorted(t.by_source.items()))]
    for (kind, status), n in sorted(t.statuses.items()):
        lines.append(f"  {n:>8}  {kind} {status}")
    for bound, (err, i) in sorted(t.worst.items()):
        lines.append(f"  largest error of passing cases under bound {bound:g}: {err:.3g} (case {i})")
    if t.by_source.get("generated"):
        _, never, table = summary(t.fired["generated"], "generated graphs")
        lines.append(table.splitlines()[0] + (f"; never fired: {', '.join(never)}" if never else ""))
    lines.append(summary(t.fired_all(), "all cases")[2])
    for i, o, source in t.failures[:30]:
        lines.append(f"  case {i} ({source}): {o.status} at {o.stage} [{o.kind}] {o.message[:300]}\n"
                     f"    replay: python -m tests.fuzz.passes --seed {seed} --replay {i}")
    return "\n".join(lines)


def regression_record(case: Case, o: Outcome, found_by: str) -> dict:
    digest = hashlib.sha256(json.dumps(case.to_json(), sort_keys=True).encode()).hexdigest()[:10]
    return {"id": f"{o.stage}-{o.kind.lower()}-{digest}", "cause": "", "found_by": found_by,
            "signature": list(signature(o)), "message": o.message, "case": case.to_json()}


def reduce_failure(case: Case, o: Outcome, models: list[str], timeout: float = 300.0,
                   max_trials: int = 400) -> tuple[Case, int]:
    """The reduced case (crash-safe: every trial runs in a worker) and the number of trials it took."""
    want = signature(o)
    with Pool({"seed": "reduce", "mode": "generated", "real": models}, 1, timeout) as pool:
        def still_fails(c: Case) -> bool:
            return signature(pool.one({"case": c.to_json()})[0]) == want

        r = Reducer(still_fails, max_trials)
        small = r.reduce(case)
    return small, r.trials


def _make(seed: str, i: int, mode: str, models: list[str]) -> Case:
    from .cases import Corpus, make_case

    return make_case(seed, i, mode, Corpus(list(models)))


def _replay(args, mode: str, models: list[str]) -> int:
    case = _make(args.seed, args.replay, mode, models)
    with Pool({"seed": args.seed, "mode": mode, "real": models}, 1, args.timeout) as pool:
        o, source = pool.one({"i": args.replay})
    print(f"case {args.replay} ({source}): passes {case.passes}, fold_storage {case.fold_storage}, "
          f"pass shapes {case.pass_shapes}, run shapes {case.run_shapes}")
    print(f"{o.status} {o.stage} [{o.kind}] {o.message}\n{o.detail}")
    print(f"rules fired: {o.rules}")
    if o.status != "ok" and args.reduce:
        small, trials = reduce_failure(case, o, models, args.timeout)
        rec = regression_record(small, o, f"python -m tests.fuzz.passes --seed {args.seed} --replay {args.replay}"
                                + ("" if mode == "mixed" else f" --{mode}"))
        out = Path(args.regressions) / f"{rec['id']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rec, indent=1) + "\n")
        layers = small.param.count("\n") - 2
        print(f"reduced in {trials} trials to {small.passes} on {layers} layers: {out}")
    return 0 if o.status == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.passes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="first case index (split a campaign over time)")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--real", action="store_true", help="real models only")
    src.add_argument("--generated", action="store_true", help="generated graphs only")
    ap.add_argument("--models", default=",".join(real.ALL), help="real models (default: all of them)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--replay", type=int, metavar="I", help="run case I only and show everything about it")
    ap.add_argument("--reduce", action="store_true", help="reduce failures and write regression files")
    ap.add_argument("--max-reduce", type=int, default=5, help="distinct failures to reduce in a campaign")
    ap.add_argument("--regressions", default=str(REGRESSIONS), help="where --reduce writes")
    ap.add_argument("--json", metavar="OUT", help="write the summary as JSON")
    args = ap.parse_args(argv)
    mode = "real" if args.real else "generated" if args.generated else "mixed"
    models = [] if mode == "generated" else available_models([m for m in args.models.split(",") if m])
    if mode == "real" and not models:
        print("fuzz: no real model available", file=sys.stderr)
        return 1
    if args.replay is not None:
        return _replay(args, mode, models)
    indices = range(args.start, args.start + args.iterations)
    t = campaign(args.seed, indices, mode, models, args.jobs, args.timeout, progress=True)
    print(report(t, args.seed, args.jobs))
    if args.json:
        share_gen, never_gen, _ = summary(t.fired["generated"], "generated")
        share_all, never_all, _ = summary(t.fired_all(), "all")
        Path(args.json).write_text(json.dumps({
            "seed": args.seed, "start": args.start, "iterations": args.iterations, "mode": mode, "jobs": args.jobs,
            "models": models, "seconds": t.seconds, "by_source": dict(t.by_source),
            "statuses": {f"{k} {s}": n for (k, s), n in t.statuses.items()},
            "coverage_generated": share_gen, "never_fired_generated": never_gen, "coverage_all": share_all,
            "never_fired_all": never_all, "fired_generated": dict(t.fired["generated"]),
            "fired_real": dict(t.fired["real"]), "worst_error_by_bound": {str(k): list(v) for k, v in t.worst.items()},
            "failures": [{"index": i, "source": s, "status": o.status, "stage": o.stage, "kind": o.kind,
                          "message": o.message} for i, o, s in t.failures]}, indent=1))
    if args.reduce:
        seen = set()
        for i, o, _ in t.failures:
            if signature(o) in seen or len(seen) >= args.max_reduce or o.status != "fail":
                continue
            seen.add(signature(o))
            case = _make(args.seed, i, mode, models)
            small, trials = reduce_failure(case, o, models, args.timeout)
            rec = regression_record(small, o, f"python -m tests.fuzz.passes --seed {args.seed} --replay {i}"
                                    + ("" if mode == "mixed" else f" --{mode}"))
            out = Path(args.regressions) / f"{rec['id']}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(rec, indent=1) + "\n")
            print(f"case {i}: reduced in {trials} trials to {small.passes}: {out}")
    return 1 if t.failures else 0
