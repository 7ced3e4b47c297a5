"""A fuzz worker process: judges cases in-process (ncnn included) and reports over a pipe.

    python -m tests.fuzz.passes.worker      # started by :class:`tests.fuzz.passes.runner.Pool`

Protocol, one JSON object per line: the parent first sends ``{"seed", "mode", "real"}``, then jobs
``{"i": index}`` (case ``i`` of the campaign, derived here) or ``{"case": Case.to_json()}``. The worker
answers ``{"stage": name}`` before each stage (so a crash is attributed to one) and ``{"result": outcome,
"source": ...}`` at the end. Its C-level stdout is pointed at stderr: only the protocol uses the pipe.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything ncnn prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    from .cases import Corpus, make_case
    from .oracle import Case, check_case

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    config = json.loads(sys.stdin.readline())
    corpus = Corpus(list(config.get("real") or []))
    for line in sys.stdin:
        job = json.loads(line)
        if "i" in job:
            send({"stage": "make"})
            case = make_case(config["seed"], int(job["i"]), config["mode"], corpus)
        else:
            case = Case.from_json(job["case"])
        outcome = check_case(case, lambda stage: send({"stage": stage}))
        send({"result": asdict(outcome), "source": case.source, "id": case.id})


if __name__ == "__main__":
    main()
