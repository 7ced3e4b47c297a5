"""The real models the fuzzer runs sequences on, as pnnx writes them and in other converters' shapes.

Models: every pnnx conversion the tests fetch (``tests/fixtures.py``): PP-OCRv3 and v4 rec (``fp16=0`` and
``fp16=1``, static width 320), and ``convert``'s pnnx output (dynamic sizes) of PP-OCRv5 rec, PP-OCRv3/v4/v5
det and the v2 direction classifier, cached under the fixtures cache as ``passfuzz_<name>``. Dynamic models
run at small sizes (det 64x64) to keep a sequence cheap, and at a second size too: a pass told one input
shape must leave a dynamic model right at every size (unless told ``static=1``).

Forms (:func:`shaped`, edits through the graph API that keep the model's values; see
tests/test_repair_hand_shaped.py for the same forms made by hand on PP-OCRv3):

* ``pnnx``: the file as pnnx wrote it;
* ``onnx2ncnn``: fused activations written as standalone layers, SE InnerProducts on the 1-D pooled blob as
  1x1 Convolutions (ncnn's deprecated 1-D path), some scalar BinaryOps as a one-value MemoryData operand,
  ONNX-style blob and layer names;
* ``ncnnoptimize``: ONNX-style names, tab-separated columns (what ncnnoptimize leaves of onnx2ncnn's output
  for these models: InnerProducts after global pooling, fused activations);
* ``mean`` / ``mean-keepdims``: global average Pooling as a mean ``Reduction`` over h,w (PPLCNetV4's SE form),
  without or with keepdims (then only where InnerProducts alone read the pooled blob).
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncnnpass.ir import Graph

FORMS = ("pnnx", "onnx2ncnn", "ncnnoptimize", "mean", "mean-keepdims")


@dataclass(frozen=True)
class RealModel:
    name: str
    param: Path
    bin: Path
    shape: tuple[int, int, int]
    second: tuple[int, int, int] | None = None  # dynamic models: another size they run at


def _fixtures():
    try:
        import fixtures  # under pytest, tests/ is on sys.path
    except ImportError:
        from tests import fixtures
    return fixtures


# name -> (source getter name in tests/fixtures.py or zoo name, run shape, a second shape it runs at)
CONVERTED = {
    "ppocrv5-rec": ("ppocrv5_rec_paddle_dir", (3, 48, 160), (3, 48, 96)),
    "ppocrv3-det": ("ppocrv3_det_onnx", (3, 64, 64), (3, 96, 64)),
    "ppocrv4-det": ("ppocrv4_det_paddle_dir", (3, 64, 64), (3, 96, 64)),
    "ppocrv5-det": ("zoo:ppocrv5-det", (3, 64, 64), (3, 96, 64)),
    "ppocrv2-cls": ("ppocrv2_cls_paddle_dir", (3, 48, 192), (3, 48, 96)),
}
FIXED = {  # pnnx fixtures of tests/fixtures.py (static width: they run at 3x48x320 only)
    "ppocrv3-rec": ("ppocrv3_rec_ncnn", False), "ppocrv3-rec-fp16": ("ppocrv3_rec_ncnn", True),
    "ppocrv4-rec": ("ppocrv4_rec_ncnn", False), "ppocrv4-rec-fp16": ("ppocrv4_rec_ncnn", True),
}
ALL = (*FIXED, *CONVERTED)


def converted(name: str) -> tuple[Path, Path]:
    """``convert``'s pnnx output for a zoo model (built once, then cached)."""
    from ncnnpass.passes.toolchain import model_zoo
    from ncnnpass.passes.toolchain.convert import convert

    fx = _fixtures()
    getter = CONVERTED[name][0]
    if getter.startswith("zoo:"):
        src = model_zoo.fetch(getter[4:], fx.cache_dir())[0]
    else:
        src = getattr(fx, getter)()

    def build(target: Path) -> None:
        work = target.parent / f".{target.name}-work"
        result = convert(str(src), work, report=False, shape=None)
        target.mkdir()
        for made, f in zip(result.before, ("model.ncnn.param", "model.ncnn.bin"), strict=True):
            shutil.copyfile(made, target / f)
        shutil.rmtree(work)

    out = model_zoo.cached(fx.cache_dir(), f"passfuzz_{name}_pnnx", build)
    return out / "model.ncnn.param", out / "model.ncnn.bin"


def real_model(name: str) -> RealModel:
    if name in FIXED:
        getter, fp16 = FIXED[name]
        param, bin_ = getattr(_fixtures(), getter)(fp16)
        return RealModel(name, Path(param), Path(bin_), (3, 48, 320))
    param, bin_ = converted(name)
    return RealModel(name, param, bin_, *CONVERTED[name][1:])


# -- forms -------------------------------------------------------------------------------------------------
ACT_LAYERS = {1: "ReLU", 2: "ReLU", 3: "Clip", 4: "Sigmoid", 5: "Mish", 6: "HardSwish"}
FUSING = ("Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "InnerProduct",
          "Convolution1D")


def _unfuse_activations(g: Graph) -> None:
    for ly in list(g.layers):
        code = int(ly.params.get(9, 0)) if ly.type in FUSING else 0
        if not code:
            continue
        vals = list(ly.params.get(10, []) or [])
        out = ly.outputs[0]
        pre = g.unique_blob_name(f"{out}_pre")
        ly.params.pop(9, None)
        ly.params.pop(10, None)
        ly.outputs = (pre,)
        params: dict[int, object] = {}
        if code == 2:
            params = {0: float(vals[0])}
        elif code == 3:
            params = {0: float(vals[0]), 1: float(vals[1])}
        elif code == 6:
            params = {0: float(vals[0]), 1: float(vals[1])}
        g.add_layer(ACT_LAYERS[code], inputs=[pre], outputs=[out], params=params, after=ly)


def _one_d(g: Graph) -> set[str]:
    """Blobs that are 1-D by structure: global pooling, then InnerProducts and element-wise layers on it."""
    from ncnnpass.passes.engine import is_elementwise

    flat: set[str] = set()
    for ly in g.topo_order():
        if ly.type == "Pooling" and int(ly.get("global_pooling")):
            flat.add(ly.outputs[0])
        elif ly.type in ("InnerProduct", "Convolution") and ly.inputs and ly.inputs[0] in flat:
            flat.add(ly.outputs[0])
        elif is_elementwise(ly) and ly.inputs[0] in flat:
            flat.add(ly.outputs[0])
    return flat


def _vector_convs(g: Graph) -> None:
    flat = _one_d(g)
    for ly in list(g.layers):
        if ly.type != "InnerProduct" or ly.inputs[0] not in flat or int(ly.get("int8_scale_term")):
            continue
        n, wsize, bias = int(ly.get("num_output")), int(ly.get("weight_data_size")), int(ly.get("bias_term"))
        p: dict[int, object] = {0: n, 1: 1, 5: bias, 6: wsize}
        for k in (9, 10, 31):
            if k in ly.params:
                p[k] = ly.params[k]
        weights = dict(ly.weights)
        ins, outs, name, at = ly.inputs, ly.outputs, ly.name, g.position(ly)
        g.remove(ly, reconnect=False)
        g.add_layer("Convolution", name=name, inputs=ins, outputs=outs, params=p, weights=weights, index=at)


def _memorydata_scalars(g: Graph, rng: random.Random) -> None:
    for ly in list(g.layers):
        if ly.type != "BinaryOp" or len(ly.inputs) != 1 or not int(ly.params.get(1, 0)) or rng.random() < 0.5:
            continue
        value = np.float32(ly.get("b"))
        md_out = g.unique_blob_name(f"{ly.name}_const")
        md = g.add_layer("MemoryData", inputs=[], outputs=[md_out], params={0: 1},
                         weights={"data": np.array([value], np.float32)}, before=ly)
        op = int(ly.params.get(0, 0))
        ly.params.pop(1, None)
        ly.params.pop(2, None)
        mirror = {1: 7, 7: 1, 3: 8, 8: 3, 6: 9, 9: 6}
        if rng.random() < 0.5 or op not in (0, 2, *mirror):
            ly.inputs = (ly.inputs[0], md.outputs[0])
        else:  # constant first: the operation mirrored
            ly.params[0] = mirror.get(op, op)
            ly.inputs = (md.outputs[0], ly.inputs[0])


def _onnx_names(g: Graph, rng: random.Random) -> None:
    keep = set(g.inputs)
    for k, ly in enumerate(list(g.layers)):
        if ly.type != "Input":
            ly.name = g.unique_layer_name(f"p2o.{ly.type}.{k}")
    for k, name in enumerate(list(g.blobs)):
        if name not in keep:
            g.rename_blob(name, f"{rng.choice(('conv2d', 'tmp', 'batch_norm'))}_{k}.tmp_0")


def _mean_reductions(g: Graph, keepdims: bool) -> None:
    for ly in list(g.layers):
        if ly.type != "Pooling" or not int(ly.get("global_pooling")) or int(ly.get("pooling_type")) != 1:
            continue
        readers = g.blobs[ly.outputs[0]].consumers
        if keepdims and (not readers or any(c.type != "InnerProduct" for c in readers)):
            continue
        ins, outs, name, at = ly.inputs, ly.outputs, ly.name, g.position(ly)
        g.remove(ly, reconnect=False)
        g.add_layer("Reduction", name=name, inputs=ins, outputs=outs,
                    params={0: 3, 1: 0, 3: [1, 2], 4: int(keepdims), 5: 1}, index=at)


def shaped(model_param: str, model_bin: bytes, form: str, seed: int = 0) -> tuple[str, bytes]:
    """The model in ``form`` (see the module docstring), as ``.param`` text and ``.bin`` bytes."""
    if form == "pnnx":
        return model_param, model_bin
    rng = random.Random(f"{form}:{seed}")
    g = Graph.from_text(model_param, model_bin)
    if form == "onnx2ncnn":
        _unfuse_activations(g)
        _vector_convs(g)
        _memorydata_scalars(g, rng)
        _onnx_names(g, rng)
    elif form == "ncnnoptimize":
        _onnx_names(g, rng)
    elif form in ("mean", "mean-keepdims"):
        _mean_reductions(g, form == "mean-keepdims")
    else:
        raise ValueError(form)
    text = g.to_param_text()
    if form == "ncnnoptimize":
        text = "\n".join("\t".join(line.split()) if k > 1 else line
                         for k, line in enumerate(text.split("\n")))
    return text, g.to_bin_bytes()
