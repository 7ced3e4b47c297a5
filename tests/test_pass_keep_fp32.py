"""``keep-fp32``: featmask bits by type, name or pattern, and what they do in ncnn."""

from __future__ import annotations

import numpy as np
import pytest

from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import fill_weights, model, run

BODY = """
Input in0 0 1 in 0=64 1=1 2=1
InnerProduct fc1 1 1 in a 0=64 1=1 2=4096
Pooling gap 1 1 a g 0=1 4=1
InnerProduct fc2 1 1 a b 0=64 1=1 2=4096
InnerProduct head 1 1 b out 0=32 1=1 2=2048
"""


def test_by_type_name_and_pattern() -> None:
    g = model(BODY)
    assert apply_passes(g, ["keep-fp32[types=InnerProduct]"])["keep-fp32"] == 3
    # the default bits 7 (no fp16/bf16) plus bit 4 from the every-path placement: 31=23
    assert {ly.name: ly.featmask for ly in g.layers} == {"in0": 0, "fc1": 23, "gap": 0, "fc2": 23, "head": 23}
    assert apply_passes(g, ["keep-fp32[types=InnerProduct]"])["keep-fp32"] == 0  # idempotent
    g = model(BODY)
    apply_passes(g, ["keep-fp32[names=fc*,bits=no_fp16_storage]"])
    assert {ly.name: ly.featmask for ly in g.layers if ly.featmask} == {"fc1": 18, "fc2": 18}
    g = model(BODY)
    apply_passes(g, ["keep-fp32[names=fc*,bits=no_fp16_storage,safe=0]"])  # exactly as asked, unsafe on Vulkan
    assert {ly.name: ly.featmask for ly in g.layers if ly.featmask} == {"fc1": 2, "fc2": 2}
    g = model(BODY)
    apply_passes(g, ["keep-fp32[pattern=InnerProduct x 1 1 p q ... ; InnerProduct y 1 1 q r 0=32 ...]"])
    assert {ly.name for ly in g.layers if ly.featmask} == {"fc2", "head"}
    g = model(BODY)
    apply_passes(g, ["keep-fp32[types=InnerProduct,names=head,bits=0x80]"])
    assert {ly.name: ly.featmask for ly in g.layers if ly.featmask} == {"head": 128}
    assert "31=128" in g.to_param_text()


def test_needs_a_selection_and_valid_bits() -> None:
    with pytest.raises(Exception, match="needs types="):
        apply_passes(model(BODY), ["keep-fp32"])
    with pytest.raises(Exception, match="bad bits"):
        apply_passes(model(BODY), ["keep-fp32[types=InnerProduct,bits=fast]"])
    with pytest.raises(Exception, match="unknown layer type"):
        apply_passes(model(BODY), ["keep-fp32[types=Innerproduct]"])
    with pytest.raises(Exception, match="has no option"):
        apply_passes(model(BODY), ["keep-fp32[type=InnerProduct]"])


@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_featmask_makes_innerproduct_exact_under_default_options(storage: str) -> None:
    g = fill_weights(model(BODY), seed=0, storage=storage, scale=1.0)
    x = {"in": np.random.default_rng(0).uniform(-1, 1, (1, 1, 64)).astype(np.float32)}
    exact = run(g, x, "fp32")["out"]
    kept = g.copy()
    apply_passes(kept, "keep-fp32[types=InnerProduct]")
    # with fp16 storage off per layer, default options give the fp32 result (summation order aside)
    assert np.abs(run(kept, x, "default")["out"] - exact).max() <= 1e-4
