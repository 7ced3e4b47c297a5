"""``gap-fc-to-conv`` on small models built through the IR, compared in real ncnn.

Tolerance: the rewrite copies weights byte for byte and only changes how ncnn sums (1x1 Convolution
instead of InnerProduct), so outputs agree to float rounding: atol 1e-5 on O(1) values (measured ~1e-7).
"""

from __future__ import annotations

import numpy as np
import pytest

from ncnnpass.ir import Graph
from ncnnpass.passes import apply_passes
from ncnnpass.passes.engine.testing import assert_equivalent, fill_weights, model, run

ATOL = 1e-5

# An SE block as pnnx writes it (PP-OCR style); W == C on purpose (the 1-D broadcast ambiguity).
SE = """
Input in0 0 1 in 0=16 1=5 2=3
Convolution conv 1 1 in x 0=16 1=3 4=1 5=1 6=432
HardSwish hs 1 1 x xs 0=0.166666672 1=0.5
Pooling gap 1 1 xs g 0=1 4=1
InnerProduct fc1 1 1 g h 0=4 1=1 2=64 9=1
InnerProduct fc2 1 1 h s 0=16 1=1 2=64
HardSigmoid hsig 1 1 s a 0=0.166666672 1=0.5
BinaryOp mul 2 1 xs a out 0=2
"""


def se_model(extra: str = "", storage: str = "fp32", body: str = SE) -> Graph:
    g = model(body + extra)
    return fill_weights(g, seed=1, storage=storage)


def rewrite(g: Graph) -> tuple[Graph, object]:
    after = g.copy()
    report = apply_passes(after, ["gap-fc-to-conv"])
    assert not after.check(), after.check()
    return after, report


def test_se_block_becomes_adaptive_pool_and_convolutions() -> None:
    g = se_model()
    after, report = rewrite(g)
    assert report["gap-fc-to-conv"] > 0
    assert after.types() == {"Input": 1, "Convolution": 3, "HardSwish": 1, "Pooling": 1, "HardSigmoid": 1,
                             "BinaryOp": 1}
    pool = after.layer("gap")
    assert dict(pool.params) == {0: 1, 7: 1, 8: 1}
    fc1, fc2 = after.layer("fc1"), after.layer("fc2")
    assert (fc1.type, fc1.get("num_output"), fc1.get("kernel_w"), fc1.get("weight_data_size"), fc1.get(9)) == \
        ("Convolution", 4, 1, 64, 1)
    assert fc2.get(9) == 0 and 9 not in fc2.params
    assert_equivalent(g, after, atol=ATOL)


def test_fixes_fp16_innerproduct_numerics_under_default_options() -> None:
    g = se_model()
    after, _ = rewrite(g)
    x = {"in": np.random.default_rng(3).uniform(-1, 1, (3, 5, 16)).astype(np.float32)}
    exact = run(g, x, "fp32")["out"]
    before_default = run(g, x, "default")["out"]
    after_default = run(after, x, "default")["out"]
    # on CPUs with F16C ncnn rounds InnerProduct weights to fp16 by default; the rewrite avoids it
    assert np.abs(after_default - exact).max() <= ATOL
    assert np.abs(after_default - exact).max() <= np.abs(before_default - exact).max()


def test_fp16_weights_are_kept_byte_for_byte() -> None:
    g = se_model(storage="fp16")
    after, _ = rewrite(g)
    for name in ("fc1", "fc2"):
        old, new = g.layer(name).weights, after.layer(name).weights
        assert new["weight"].storage == "fp16"
        assert new["weight"].encode() == old["weight"].encode()
        assert new["bias"].encode() == old["bias"].encode()
    assert g.to_bin_bytes() == after.to_bin_bytes()  # same arrays, same order
    assert_equivalent(g, after, atol=ATOL)


@pytest.mark.parametrize("act", ["9=1", "9=2 10=1,0.1", "9=3 10=2,-0.5,0.5", "9=4", "9=5", "9=6 10=2,0.2,0.5"])
def test_fused_activations_are_kept(act: str) -> None:
    body = SE.replace("InnerProduct fc1 1 1 g h 0=4 1=1 2=64 9=1", f"InnerProduct fc1 1 1 g h 0=4 1=1 2=64 {act}")
    body = body.replace("2=64 9=-23310", "2=64 -23310")
    body = body.replace(" 10=", " -23310=")
    g = se_model(body=body)
    after, _ = rewrite(g)
    fc1 = after.layer("fc1")
    assert fc1.type == "Convolution"
    assert fc1.get(9) == g.layer("fc1").get(9) and fc1.get(10) == g.layer("fc1").get(10)
    assert_equivalent(g, after, atol=ATOL)


def test_chain_of_three_innerproducts_without_bias() -> None:
    body = SE.replace("InnerProduct fc2 1 1 h s 0=16 1=1 2=64",
                      "InnerProduct fc2 1 1 h h2 0=8 2=32 9=1\nInnerProduct fc3 1 1 h2 s 0=16 1=1 2=128")
    g = se_model(body=body)
    after, _ = rewrite(g)
    assert after.count_by_type("InnerProduct") == 0 and after.count_by_type("Flatten") == 0
    assert "bias" not in after.layer("fc2").weights and after.layer("fc2").get("bias_term") == 0
    assert_equivalent(g, after, atol=ATOL)


# -- consumers that depend on the 1-D shape ----------------------------------------------------------
CLASSIFIER = """
Input in0 0 1 in 0=6 1=4 2=3
Convolution conv 1 1 in x 0=8 1=1 5=1 6=24
Pooling gap 1 1 x g 0=1 4=1
InnerProduct fc 1 1 g h 0=6 1=1 2=48 9=1
"""


@pytest.mark.parametrize("tail, flatten", [
    ("Softmax sm 1 1 h out 0=0", True),                            # axis-dependent consumer
    ("", True),                                                    # h itself is the graph output
    ("Reshape rs 1 1 h out 0=3 1=2", True),                        # rank-dependent
    ("InnerProduct fc2 1 1 h q 0=6 1=1 2=36\nConcat cat 2 1 q g out 0=0", True),   # concat of 1-D
    ("MemoryData md 0 1 k 0=6\nBinaryOp add 2 1 h k out 0=0", True),    # 1-D (+) 1-D
    ("Sigmoid sg 1 1 h out", True),                                # element-wise then output
])
def test_unsafe_consumers_keep_a_flatten(tail: str, flatten: bool) -> None:
    g = se_model(body=CLASSIFIER + tail)
    after, _ = rewrite(g)
    assert after.count_by_type("InnerProduct") <= 1 and after.layer("fc").type == "Convolution"
    assert (after.count_by_type("Flatten") > 0) == flatten
    assert after.outputs == g.outputs
    assert_equivalent(g, after, atol=ATOL)


def test_pooled_blob_shared_with_an_unsafe_consumer() -> None:
    g = se_model(body=CLASSIFIER + "Softmax sm 1 1 g p 0=0\nConcat cat 2 1 h p out 0=0")
    after, _ = rewrite(g)
    assert after.layer("fc").type == "Convolution"
    sm = after.layer("sm")
    assert after.blobs[sm.inputs[0]].producer.type == "Flatten"
    assert_equivalent(g, after, atol=ATOL)


def test_broadcast_along_w_is_not_mistaken_for_per_channel() -> None:
    # x is 8 x 5 x 16; the vector has 16 values, so ncnn broadcasts it along W, not per channel
    body = """
Input in0 0 1 in 0=16 1=5 2=3
Convolution conv 1 1 in x 0=8 1=1 5=1 6=24
Convolution conv2 1 1 in x2 0=16 1=1 5=1 6=48
Pooling gap 1 1 x2 g 0=1 4=1
InnerProduct fc 1 1 g s 0=16 1=1 2=256
BinaryOp mul 2 1 x s out 0=2
"""
    g = se_model(body=body)
    after, _ = rewrite(g)
    mul = after.layer("mul")
    assert after.blobs[mul.inputs[1]].producer.type == "Flatten"
    assert_equivalent(g, after, atol=ATOL, seeds=(0, 1))


def test_int8_and_param_only_models() -> None:
    g = model(CLASSIFIER.replace("2=48 9=1", "2=48 8=1 9=1") + "Softmax sm 1 1 h out 0=0")
    report = apply_passes(g, ["gap-fc-to-conv"])
    assert report["gap-fc-to-conv"] == 0 and g.layer("gap").get(4) == 1  # int8: untouched
    g = model(CLASSIFIER + "Softmax sm 1 1 h out 0=0")  # no .bin: converts the structure
    apply_passes(g, ["gap-fc-to-conv"])
    assert g.layer("fc").type == "Convolution" and g.layer("fc").weights == {}
    assert not g.check()


def test_repair_pipeline_on_se_block_is_idempotent() -> None:
    g = se_model()
    after = g.copy()
    first = apply_passes(after, "repair")
    again = apply_passes(after, "repair")
    assert first.changed and not again.changed


def test_onnx2ncnn_style_names_split_layers_and_shape_hints() -> None:
    """The seed's own lines (onnx2ncnn names with dots, an explicit Split, ncnnoptimize shape hints)."""
    body = """
Input x 0 1 x 0=12 1=4 2=3
Convolution p2o.Conv.23 1 1 x batch_norm_50.tmp_4 0=16 1=1 5=1 6=48 -23330=4,3,12,4,16
Split splitncnn_1 1 2 batch_norm_50.tmp_4 batch_norm_50.tmp_4_splitncnn_0 batch_norm_50.tmp_4_splitncnn_1
Pooling p2o.GlobalAveragePool.0 1 1 batch_norm_50.tmp_4_splitncnn_1 p2o.GlobalAveragePool.1 0=1 4=1 -23330=4,1,16,1,1
InnerProduct p2o.Conv.24 1 1 p2o.GlobalAveragePool.1 relu_2.tmp_0 0=4 1=1 2=64 9=1 -23330=4,1,4,1,1
InnerProduct p2o.Conv.25 1 1 relu_2.tmp_0 conv2d_110.tmp_0 0=16 1=1 2=64 -23330=4,1,16,1,1
HardSigmoid p2o.HardSigmoid.0 1 1 conv2d_110.tmp_0 hardsigmoid_0.tmp_0 0=1.666667e-01
BinaryOp p2o.Mul.0 2 1 batch_norm_50.tmp_4_splitncnn_0 hardsigmoid_0.tmp_0 out 0=2
"""
    g = se_model(body=body)
    after, _ = rewrite(g)
    assert after.layer("p2o.Conv.24").type == "Convolution" and after.count_by_type("Flatten") == 0
    assert all(30 not in after.layer(n).params for n in ("p2o.GlobalAveragePool.0", "p2o.Conv.24", "p2o.Conv.25"))
    assert 30 in after.layer("p2o.Conv.23").params  # untouched layers keep theirs
    text = after.to_param_text()
    assert "Split" in text and "p2o.GlobalAveragePool.0" in text
    assert_equivalent(g, after, atol=ATOL)
