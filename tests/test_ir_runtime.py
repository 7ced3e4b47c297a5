"""The ncnn run bridge on the real PP-OCRv3 model: options, every-blob extraction, shape inference."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from ncnnpass.ir import Graph, RuntimeBridgeError, runtime

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def v3(ppocrv3_rec_onnx):
    import fixtures

    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec")
    return Graph.load(param, bin), ppocrv3_rec_onnx


def test_infer_shapes(v3) -> None:
    # pnnx bakes the conversion shape into Reshape params (0=120 1=40), so only 1x3x48x320 is valid
    # for this file; ncnn aborts the process on other widths, which is why we never guess shapes.
    g, _ = v3
    shapes = runtime.infer_shapes(g, (3, 48, 320))
    assert shapes["in0"] == (3, 48, 320)
    assert shapes["out0"] == (40, 6625)  # T = W / 8 time steps of 6625 classes
    assert set(shapes) == set(g.blobs)  # every blob of the graph got a shape
    assert g.blobs["out0"].shape == (40, 6625)
    gap = g.find("Pooling", where=lambda ly: ly.get("global_pooling") == 1)[0]
    assert len(shapes[gap.outputs[0]]) == 1  # global pooling gives a 1-D blob in ncnn


def test_infer_shapes_follows_the_input_size() -> None:
    g = Graph()
    g.add_layer("Input", "in", [], ["x"], params={0: 8, 1: 8, 2: 4})
    g.add_layer("Pooling", "pool", ["x"], ["y"], params={0: 1, 1: 2, 2: 2})
    g.add_layer("Pooling", "gap", ["y"], ["z"], params={0: 1, 4: 1})
    for (c, h, w), pooled in (((4, 8, 8), (4, 4, 4)), ((3, 6, 10), (3, 3, 5))):
        shapes = runtime.infer_shapes(g, (c, h, w))
        assert shapes == {"x": (c, h, w), "y": pooled, "z": (c,)}


def test_options_and_all_blobs(v3) -> None:
    g, onnx_path = v3
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, 320)).astype(np.float32)
    ref = ort.InferenceSession(str(onnx_path)).run(None, {"x": x})[0][0]
    fp32 = runtime.run(g, x, options="fp32")["out0"]
    default = runtime.run(g, x, options="default")["out0"]
    # measured: fp32 options ~5e-6, default ~2e-4 (fp16 InnerProduct weights on x86 F16C)
    assert np.abs(fp32 - ref).max() < 2e-5
    assert np.abs(default - ref).max() > np.abs(fp32 - ref).max()
    everything = runtime.run(g, x, outputs="all", options="fp32", light_mode=False)
    assert set(g.blobs) <= set(everything)
    assert np.array_equal(everything["out0"], fp32)


def test_bad_requests_are_project_errors(v3) -> None:
    g, _ = v3
    with pytest.raises(RuntimeBridgeError, match="preset"):
        runtime.run(g, np.zeros((3, 48, 320), np.float32), options="no-such-preset")
    with pytest.raises(RuntimeBridgeError, match="no field"):
        runtime.make_options({"use_magic": True})
    with pytest.raises(RuntimeBridgeError):
        runtime.run(g, np.zeros((3, 48, 320), np.float32), outputs=["no_such_blob"])
