"""ARM-safe featmask placement: the rule as code, and what the emulated ARM runtime does with and without it."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures import require

from ncnnpass.ir.featmask import (
    featmask_safe_closure,
    make_featmask_safe,
    split_masked,
    unsafe_edges,
)
from ncnnpass.ir.runtime import Job, TargetPool
from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import fill_weights, model, run
from ncnnpass.passes.precision.sensitivity import rel_error

# a -> {c2 (kept fp32), c3}; b -> {c4 (kept fp32), add}; add2 (kept fp32) reads the unmasked add
BODY = """
Input in0 0 1 in 0=16 1=16 2=8
Convolution c1 1 1 in a 0=16 1=3 4=1 5=1 6=1152
Convolution c2 1 1 a b 0=16 1=1 5=1 6=256
Convolution c3 1 1 a c 0=16 1=1 5=1 6=256
Convolution c4 1 1 b d 0=16 1=1 5=1 6=256
BinaryOp add 2 1 b c e 0=0
BinaryOp add2 2 1 d e out 0=0
"""
KEPT = ("c2", "c4", "add2")


def _graph(masked=KEPT):
    g = fill_weights(model(BODY), seed=0, scale=0.5)
    for n in masked:
        g.layer(n).featmask = 7
    return g


def test_rule_finds_every_unsafe_input_and_the_fix_removes_them() -> None:
    g = _graph()
    bad = {(ly.name, i) for ly, i, _ in unsafe_edges(g, paths=("arm",))}
    # c2 reads a (fp16 producer c1); c4 reads b through an unmasked Split; add2 reads e (fp16 producer add)
    assert bad == {("c2", 0), ("c4", 0), ("add2", 1)}
    # on Vulkan each 31=7 layer stays on the GPU and reads fp16 data as fp32
    assert {(ly.name, i) for ly, i, _ in unsafe_edges(g, paths=("vulkan",))} == {("c2", -1), ("c4", -1), ("add2", -1)}
    edits = make_featmask_safe(g)
    assert len(edits.boundaries) == 2 and edits.masked_splits == ["b"] and sorted(edits.off_gpu) == ["add2", "c2", "c4"]
    assert {g.layer(n).featmask for n in ("c2", "c4", "add2")} == {23}
    assert unsafe_edges(g) == [] and split_masked(g, "b")
    assert not make_featmask_safe(g)  # idempotent
    text = g.to_param_text()
    assert text.count("Dropout") == 2
    assert any(line.startswith("Split") and line.rstrip().endswith("31=23") for line in text.splitlines())
    # the boundaries sit in front of the masked readers only; unmasked readers keep the fp16 blob
    assert g.layer("c3").inputs == ("a",) and g.layer("c2").inputs != ("a",)


def test_input_and_masked_producers_need_no_boundary() -> None:
    g = _graph(masked=("c1", "c2", "c4"))  # c1 reads the net input (fp32); c2, c4 read masked producers
    edits = make_featmask_safe(g)
    assert edits.boundaries == [] and set(edits.masked_splits) == {"a", "b"}
    assert unsafe_edges(g) == []


def test_boundaries_change_nothing_on_x86() -> None:
    g = _graph()
    x = {"in": np.random.default_rng(1).uniform(-1, 1, (8, 16, 16)).astype(np.float32)}
    before = run(g, x, "default")["out"]
    make_featmask_safe(g)
    np.testing.assert_array_equal(run(g, x, "default")["out"], before)


def test_closure_masks_every_fp16_ancestor() -> None:
    g = _graph(masked=())
    assert featmask_safe_closure(g, ["add2"]) == {"add2", "c4", "c2", "add", "c3", "c1"}
    assert featmask_safe_closure(g, ["c1"]) == {"c1"}


def test_keep_fp32_places_arm_safe_by_default() -> None:
    g = fill_weights(model(BODY), seed=0)
    apply_passes(g, ["keep-fp32[names=c2|c4|add2]"])
    assert unsafe_edges(g) == []
    g = fill_weights(model(BODY), seed=0)
    apply_passes(g, ["keep-fp32[names=c2|c4|add2,safe=0]"])
    assert len(unsafe_edges(g, paths=("arm",))) == 3 and len(unsafe_edges(g)) == 6


@pytest.fixture(scope="module")
def arm_pool():
    from ncnnpass.ir.runtime.arm_env import ensure_arm_runtime

    require(lambda: ensure_arm_runtime(), "the emulated ARM runtime (qemu-user + aarch64 ncnn)")
    with TargetPool("arm", workers=1) as pool:
        yield pool


def test_emulated_arm_corrupts_unsafe_masks_and_runs_safe_ones(arm_pool) -> None:
    """On the emulated Cortex-A76: masked layers fed fp16 blobs return garbage (or crash); the same masks
    with the boundaries are exact to the fp32 reference within fp16 error of the unmasked layers."""
    raw = _graph()
    safe = _graph()
    make_featmask_safe(safe)
    plain = _graph(masked=())
    x = {"in": np.random.default_rng(2).uniform(-1, 1, (8, 16, 16)).astype(np.float32)}
    ref = run(plain, x, "fp32")["out"]
    r_raw, r_safe, r_plain = arm_pool.run([Job(g, [x], ["out"]) for g in (raw, safe, plain)])
    assert r_safe.ok and r_plain.ok, (r_safe.error, r_plain.error)
    err_safe, err_plain = rel_error(r_safe.outputs[0]["out"], ref), rel_error(r_plain.outputs[0]["out"], ref)
    print(f"relative error: fp16 {err_plain:.3g}, kept fp32 safely {err_safe:.3g}")
    assert 0 < err_plain < 0.1  # fp16 everywhere: half-precision error, not garbage
    assert err_safe <= err_plain  # runs cleanly; c1 (still fp16) dominates the remaining error
    raw_err = rel_error(r_raw.outputs[0]["out"], ref) if r_raw.ok else float("inf")
    print(f"unsafe placement: {r_raw.error or raw_err}")
    assert raw_err > 1.0  # the unsafe placement is broken: garbage, NaN or a crash


def test_optimize_keeps_the_arm_cast_boundaries() -> None:
    """eliminate-dropout (in ``optimize``, after keep-fp32) removes plain identity Dropouts but not the
    unmasked Dropout that casts fp16 to fp32 in front of a masked layer."""
    g = fill_weights(model("""
Input in0 0 1 in 0=8 1=8 2=3
Convolution c1 1 1 in a 0=4 1=3 4=1 5=1 6=108
Dropout d0 1 1 a a2 0=1.0
Convolution c2 1 1 a2 b 0=4 1=3 4=1 5=1 6=144
InnerProduct fc 1 1 b out 0=4 1=1 2=256
"""), seed=0)
    apply_passes(g, "optimize", input_shape=(3, 8, 8))
    assert not g.find("Dropout", where=lambda d: d.name == "d0")
    fc = g.find("InnerProduct")[0]
    assert fc.featmask & 2
    guard = g.blobs[fc.inputs[0]].producer
    assert guard.type == "Dropout" and not guard.featmask & 2
    assert unsafe_edges(g) == []
