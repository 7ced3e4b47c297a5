"""Every pass alone and every pipeline on every real model the suite has (issue 15, "Must show"): after each,
the IR verifier is clean (and was after every pass, ``verify_each``), ``Graph.copy()`` writes the same
text and bytes, a save/load round trip through files gives the same text and bytes, and ``check()`` is
empty.

Models: the pnnx fixtures of PP-OCRv3/v4 rec (``fp16=0`` and ``1``, static width), ``convert``'s pnnx output
of PP-OCRv5 rec, PP-OCRv3/v4/v5 det and the v2 classifier (dynamic sizes), and PP-OCRv3 rec edited into
the onnx2ncnn/ncnnoptimize/PPLCNetV4 shapes of tests/test_repair_hand_shaped.py. Each model is loaded once
and copied per pass; shapes are small where the model allows it (det 64x64) to keep shape inference cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fixtures
import pytest
from test_repair_hand_shaped import hand_shaped

from ncnnpass.ir import Graph
from ncnnpass.ir.verifier import verify_graph
from ncnnpass.passes import PIPELINES, apply_passes, list_passes

pytestmark = [pytest.mark.real, pytest.mark.slow]

# keep-fp32 needs a selector; the other passes run with their defaults. The option variants (each costs
# shape inferences) run on one recognizer and one detector.
SPECS_OF = {"keep-fp32": ["keep-fp32[types=InnerProduct|Convolution]"]}
VARIANTS = ["keep-fp32[names=*,bits=no_fp16_storage,safe=1]", "adaptive-avgpool-lowering[static=1]",
            "adaptive-avgpool-lowering[direction=raise]"]
WITH_VARIANTS = ("v3-rec", "v5-det")
REC = (3, 48, 320)


def every_spec(model: str) -> list[str]:
    """Every registered pass alone (with the options it needs), every pipeline, and for some models the
    option variants. Terminal passes measure on a device (repair-for-target: minutes per model on the
    emulated phone); tests/test_target_repair.py checks the graphs they write."""
    out = [s for p in list_passes() if not p.terminal for s in SPECS_OF.get(p.name, [p.name])]
    return out + list(PIPELINES) + (VARIANTS if model in WITH_VARIANTS else [])


def _fixed(fp16: bool, getter: Callable[[bool], tuple[Path, Path]]) -> Callable[[], tuple[str, bytes]]:
    def load() -> tuple[str, bytes]:
        param, bin_ = getter(fp16)
        return Path(param).read_text(), Path(bin_).read_bytes()
    return load


def _converted(name: str) -> Callable[[], tuple[str, bytes]]:
    def load() -> tuple[str, bytes]:
        param, bin_ = fixtures.converted_pnnx(name)
        return param.read_text(), bin_.read_bytes()
    return load


def _hand(form: str) -> Callable[[], tuple[str, bytes]]:
    def load() -> tuple[str, bytes]:
        param, bin_ = fixtures.ppocrv3_rec_ncnn(False)
        return hand_shaped(Path(param), form), Path(bin_).read_bytes()
    return load


MODELS: dict[str, tuple[Callable[[], tuple[str, bytes]], tuple[int, int, int]]] = {
    "v3-rec": (_fixed(False, fixtures.ppocrv3_rec_ncnn), REC),
    "v3-rec-fp16": (_fixed(True, fixtures.ppocrv3_rec_ncnn), REC),
    "v4-rec": (_fixed(False, fixtures.ppocrv4_rec_ncnn), REC),
    "v4-rec-fp16": (_fixed(True, fixtures.ppocrv4_rec_ncnn), REC),
    "v5-rec": (_converted("ppocrv5-rec"), (3, 48, 160)),
    "v3-det": (_converted("ppocrv3-det"), (3, 64, 64)),
    "v4-det": (_converted("ppocrv4-det"), (3, 64, 64)),
    "v5-det": (_converted("ppocrv5-det"), (3, 64, 64)),
    "v2-cls": (_converted("ppocrv2-cls"), (3, 48, 192)),
    **{f"v3-rec-{form}": (_hand(form), REC) for form in ("seed", "onnx2ncnn", "mean", "mean-keepdims",
                                                           "mean-keepdims-conv")},
}


def integrity_failures(g: Graph, what: str, tmp: Path) -> list[str]:
    """What is wrong with ``g`` after ``what``: verifier problems, copy and file round trip, check()."""
    out = [f"{what}: verify: {p}" for p in verify_graph(g)]
    text, data = g.to_param_text(), g.to_bin_bytes()
    c = g.copy()
    if (c.to_param_text(), c.to_bin_bytes()) != (text, data):
        out.append(f"{what}: copy() writes other files")
    param, bin_ = tmp / "m.param", tmp / "m.bin"
    g.save(str(param), str(bin_), overwrite=True)
    loaded = Graph.load(str(param), str(bin_))
    if (param.read_text(), bin_.read_bytes()) != (text, data) or \
            (loaded.to_param_text(), loaded.to_bin_bytes()) != (text, data):
        out.append(f"{what}: save/load round trip differs")
    out += [f"{what}: check: {p}" for p in g.check()]
    return out


@pytest.mark.parametrize("model", list(MODELS))
def test_every_pass_and_pipeline_keeps_the_graph_sound(model: str, tmp_path: Path) -> None:
    load, shape = MODELS[model]
    text, data = fixtures.require(load, f"real model {model}")
    base = Graph.from_text(text, data, file=model)
    assert integrity_failures(base, "as loaded", tmp_path) == []
    written = base.to_param_text(), base.to_bin_bytes()
    failures: list[str] = []
    changed = []
    for spec in every_spec(model):
        g = base.copy()
        try:
            report = apply_passes(g, spec, input_shape=shape, verify_each=True)
        except Exception as exc:  # noqa: BLE001 - every failure is collected and reported together
            failures.append(f"{spec}: {type(exc).__name__}: {exc}")
            continue
        if report.changed:
            changed.append(spec)
        failures += integrity_failures(g, spec, tmp_path)
    assert failures == [], "\n".join(failures)
    assert (base.to_param_text(), base.to_bin_bytes()) == written  # copies only: the model is as loaded
    print(f"{model}: {len(base.layers)} layers; changed by {', '.join(changed) or 'nothing'}")
    assert "optimize" in changed or model.endswith("mean-keepdims-conv")
