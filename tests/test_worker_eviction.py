"""The worker's ncnn pools: a buffer a run does not give back (a layer wrote past a blob, over the refcount ncnn
keeps after its data) is reported in that run's request, not when a later load evicts the net (the shared
x86 worker once failed an unrelated test so); a failed allocation's null entry in a pool is not reported."""

from __future__ import annotations

from collections import OrderedDict

import ncnn
import numpy as np
import pytest

from ncnnpass.ir import RuntimeBridgeError, runtime
from ncnnpass.ir.loader import graph_from_text
from ncnnpass.ir.runtime import worker

H = "7767517\n"
# Concat sizes its output from its first input (w=4) and copies all of the second (w=8): 16 bytes past the
# output's data, over its refcount, inside the padding ncnn allocates after each buffer (no heap damage)
OVERRUN = H + "3 3\nInput a 0 1 a 0=4 1=1 2=1\nInput b 0 1 b 0=8 1=1 2=1\nConcat c 2 1 a b y 0=0\n"
OVERRUN_FEEDS = {"a": np.zeros((1, 1, 4), np.float32), "b": np.ones((1, 1, 8), np.float32)}
# w=-5 h=-7 c=-3: the allocation fails (-100) and leaves a null entry in the pool's list
FAILED_ALLOC = H + "2 2\nInput in 0 1 x 0=8 1=8 2=3\nReshape r 1 1 x y 0=-5 1=-7 2=-3\n"


def relu(i: int) -> str:
    return H + f"2 2\nInput in 0 1 x 0=8 1=8 2=3\nReLU r{i} 1 1 x y\n"


def load(nets: OrderedDict, key: str, text: str) -> None:
    worker._handle(ncnn, nets, {"op": "load", "key": key, "graph_outputs": ["y"]}, {"param": text.encode()})


def evict(nets: OrderedDict, key: str) -> None:
    for i in range(worker.MAX_CACHED_NETS):
        load(nets, f"relu{i}", relu(i))
    assert key not in nets


def test_a_buffer_a_run_keeps_is_reported_by_that_run_and_the_eviction_is_silent(capfd) -> None:
    nets: OrderedDict = OrderedDict()
    load(nets, "overrun", OVERRUN)
    capfd.readouterr()
    reply, out = worker._handle(ncnn, nets, {"op": "run", "key": "overrun"}, OVERRUN_FEEDS)
    assert reply["ok"] and dict(out)["y"].shape == (2, 1, 4)
    err = capfd.readouterr().err
    assert "pool allocator destroyed too early" in err and "(nil)" not in err
    evict(nets, "overrun")
    assert "FATAL" not in capfd.readouterr().err


def test_a_failed_allocation_is_the_run_error_only(capfd) -> None:
    nets: OrderedDict = OrderedDict()
    load(nets, "bad", FAILED_ALLOC)
    capfd.readouterr()
    with pytest.raises(worker.NcnnCallError, match="error -100"):
        worker._handle(ncnn, nets, {"op": "run", "key": "bad"}, {"x": np.zeros((3, 8, 8), np.float32)})
    assert "FATAL" not in capfd.readouterr().err
    evict(nets, "bad")
    assert "FATAL" not in capfd.readouterr().err


@pytest.mark.slow  # two worker starts: ~2 s
def test_the_isolated_worker_fails_the_run_that_overran_and_not_the_next_nets() -> None:
    with runtime.open_target("isolated", progress=None) as t:
        with pytest.raises(RuntimeBridgeError, match="reported memory corruption"):
            t.run(graph_from_text(OVERRUN, b""), OVERRUN_FEEDS)
        x = np.ones((3, 8, 8), np.float32)
        for i in range(worker.MAX_CACHED_NETS + 1):  # a fresh worker: loads and evictions are clean
            assert np.array_equal(t.run(graph_from_text(relu(i), b""), x)["y"], x)
