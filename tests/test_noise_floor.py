"""The reference's own noise floor (passes/precision/noise_floor.py): the perturbations, and on PP-OCRv3 rec
the floor's numbers against an independent onnxruntime run and greedy CTC decode."""

from __future__ import annotations

import fixtures
import numpy as np
import pytest

from ncnnpass.passes.precision import Criteria
from ncnnpass.passes.precision.noise_floor import FP16_UNIT_ROUNDOFF, input_noise_floor, perturbed


def test_perturbations_are_one_fp16_rounding_and_seeded() -> None:
    x = np.linspace(-3, 3, 10001, dtype=np.float32).reshape(1, 1, 1, -1)
    r = perturbed(x, "round")
    assert r.dtype == np.float32 and np.array_equal(r, x.astype(np.float16).astype(np.float32))
    nz = np.abs(x) > 1e-4  # fp16 normals (linspace leaves a tiny value where 0 would be)
    assert np.all(np.abs(r - x)[nz] / np.abs(x)[nz] <= FP16_UNIT_ROUNDOFF * (1 + 1e-6))
    a = perturbed(x, "noise", np.random.default_rng(3), roundings=2.0)
    b = perturbed(x, "noise", np.random.default_rng(3), roundings=2.0)
    assert np.array_equal(a, b) and not np.array_equal(a, x)
    rel = np.abs(a - x)[nz] / np.abs(x)[nz]
    assert rel.max() <= 2 * FP16_UNIT_ROUNDOFF * (1 + 1e-5) and rel.max() > FP16_UNIT_ROUNDOFF  # uses the range
    assert np.all(perturbed(np.zeros((1, 3, 4, 5)), "noise", np.random.default_rng(0)) == 0)  # zero padding stays
    with pytest.raises(ValueError):
        perturbed(x, "noise")


def _greedy(probs: np.ndarray) -> tuple[tuple[int, ...], float]:
    """Class ids and confidence as PaddleOCR's CTCLabelDecode: argmax per frame, repeats merged, blank (0)
    dropped, confidence the mean probability of the kept frames (None for an empty line)."""
    p = probs.reshape(-1, probs.shape[-1])
    ids = p.argmax(1)
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    keep &= ids != 0
    return tuple(ids[keep].tolist()), float(p[keep, ids[keep]].mean()) if keep.any() else None


@pytest.mark.real
def test_noise_floor_matches_an_independent_run() -> None:
    import onnxruntime as ort

    from ncnnpass.passes.measure.model_info import read_model_info
    from ncnnpass.passes.precision.evaluator import prepare_parts, reference_outputs

    onnx = str(fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX"))
    info = read_model_info(onnx)
    part = prepare_parts(info, calibration=1, held_out=12, seed=5)["held-out"]
    part.references = reference_outputs(part.inputs, onnx=onnx)
    floor = input_noise_floor(part, "rec", onnx=onnx, dictionary=info.dictionary, seeds=2)
    assert floor.samples == 12 and len(floor.noisy) == 2
    # independently: a fresh session, the input rounded to fp16, greedy CTC by hand
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    changes, same = [], 0
    for i in part.inputs:
        ref = sess.run(None, {name: i.tensor.astype(np.float32)})[0]
        got = sess.run(None, {name: i.tensor.astype(np.float16).astype(np.float32)})[0]
        (ri, rc), (gi, gc) = _greedy(ref), _greedy(got)
        same += ri == gi
        assert rc is not None and gc is not None  # built-in lines are never blank
        changes.append(abs(rc - gc))
    n = floor.rounded.numbers
    assert n["identical"] == same
    assert n["max_conf_change"] == pytest.approx(max(changes), abs=2e-6)  # onnxruntime runs are deterministic
    assert n["max_conf_change"] > 0  # one rounding of the input does move the output
    # a tolerance below the floor is named as such; a loose one is met
    strict = input_noise_floor(part, "rec", onnx=onnx, dictionary=info.dictionary,
                               criteria=Criteria(conf_tolerance=1e-9))
    assert not strict.ok and "stricter than the model's own noise floor" in strict.summary()
    loose = input_noise_floor(part, "rec", onnx=onnx, dictionary=info.dictionary,
                              criteria=Criteria(conf_tolerance=0.5))
    assert loose.ok == (loose.rounded.numbers["identical"] == 12 and all(
        v.numbers["identical"] == 12 and v.numbers["drop_score_crossings"] == 0 for v in loose.verdicts))
