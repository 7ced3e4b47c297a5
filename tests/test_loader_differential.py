"""Differential loader test: >= 10k mutated real PP-OCRv3 pnnx files, judged by ncnn's loader (pip ncnn,
in a worker process) and by ncnnpass. Where ncnn loads and ncnnpass refuses, the reason must be one of
the divergences documented in docs/guarantees.md; every model both accept is written back and the
written text must load in ncnn. Fixed seed: the same cases on every run.

Longer runs: ``python -m tests.fuzz.run --differential --iterations 100000 --seed 1``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from fixtures import ppocrv3_rec_ncnn, require
from fuzz.corpus import real_model, windows
from fuzz.differential import DOCUMENTED, documented_reason, run_cases
from fuzz.ncnn_oracle import NcnnOracle

REPO = Path(__file__).resolve().parents[1]
CASES = 10_000


@pytest.fixture(scope="module")
def real():
    param, bin_ = require(ppocrv3_rec_ncnn, "PP-OCRv3 rec converted by pnnx")
    m = real_model(param, bin_, "pnnx")
    return m, windows(m, random.Random(0), 40)


def test_every_documented_divergence_is_in_the_guarantees():
    doc = (REPO / "docs" / "guarantees.md").read_text()
    for key in DOCUMENTED:
        assert f"`{key}`" in doc, key
    assert documented_reason("m.param:5:16: blob 'x' is produced twice: by 'a' (line 4) and 'b'") == "two-blobs-one-name"
    assert documented_reason("m.param:4:13: header says 3 blobs but the layers use 4") is None


def test_oracle_survives_a_crash_and_tells_accept_from_refuse():
    with NcnnOracle(timeout=20) as oracle:
        ok = oracle.judge(b"7767517\n2 2\nInput in 0 1 in\nReLU r 1 1 in out\n")
        bad = oracle.judge(b"7767517\n2 2\nInput in 0 1 in\nrelu r 1 1 in out\n")
        assert ok.accepted and not bad.accepted and "relu" in bad.log
        oracle.proc.kill()  # as if ncnn had crashed on the previous case
        oracle.proc.wait()
        assert oracle.judge(b"7767517\n1 1\nInput in 0 1 in\n").status in ("crash", "ok")
        assert oracle.judge(b"7767517\n1 1\nInput in 0 1 in\n").accepted


@pytest.mark.real
@pytest.mark.slow
def test_ncnnpass_accepts_what_ncnn_accepts_on_mutated_real_files(real):
    model, wins = real
    rep = run_cases(model.param, wins, CASES, seed=0)
    print(rep.summary())
    assert rep.cases == CASES
    assert not rep.undocumented, rep.summary()
    assert not rep.written_refused, rep.written_refused[:5]
    # the mutations reach every kind of outcome (else the test proves nothing)
    assert rep.counts[(True, True)] > CASES // 10 and rep.counts[(False, False)] > CASES // 10
    assert sum(rep.documented.values()) > 0 and rep.counts[(False, True)] > 0
    # the oddities ncnn tolerates each occur among the files both accept (as warnings)
    for kind in ("duplicate-layer-name", "unproduced-blob", "blob-count", "ignored-lines"):
        assert rep.warning_kinds[kind] > 0, (kind, rep.warning_kinds)
    # warnings about what ncnn refuses never fire on a file ncnn accepts; they do fire on refused ones
    assert rep.warning_kinds["one-blob-layer"] == 0 and rep.warning_kinds["byte-order-mark"] == 0
    assert re.search(r"one_blob_only", " ".join(rep.stricter_ncnn)), rep.stricter_ncnn
    assert rep.warned_when_ncnn_refused > rep.counts[(False, True)] // 2, rep.summary()
