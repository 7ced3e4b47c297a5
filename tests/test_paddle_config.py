"""paddle-config: seed 000's config edits on Distillation / MultiHead / plain CTC PaddleOCR configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ncnnpass.cli.main import main
from ncnnpass.passes.paddle.config import PaddleConfigError, edit_config, edit_config_file

# Written for these tests after the structure of PaddleOCR's rec_svtrv2_ch_distillation.yml /
# ch_PP-OCRv4_rec_distill.yml: Teacher + Student, each a MultiHead with a CTC branch (svtr neck) and an
# NRTR branch, losses with DistillationNRTRLoss, MultiScaleDataSet for Train, SimpleDataSet for Eval.
DISTILL = """\
# distillation config used by the ncnnpass tests
Global:
  use_gpu: true
  character_dict_path: ppocr/utils/test_keys.txt   # relative to the PaddleOCR root
  max_text_length: &max_text_length 25
  use_space_char: true
Architecture:
  model_type: rec
  name: DistillationModel
  algorithm: Distillation
  Models:
    Teacher:
      pretrained: ./output/teacher/best_accuracy
      freeze_params: true
      return_all_feats: true
      model_type: rec
      algorithm: SVTR_LCNet
      Transform:
      Backbone:
        name: SVTRv2
        dims: [128, 256, 384]
      Head:
        name: MultiHead
        head_list:
          - CTCHead:
              Neck:
                name: svtr
                dims: 256
                depth: 2
                hidden_dims: 256
                kernel_size: [1, 3]
                use_guide: True
              Head:
                fc_decay: 0.00001  # keep me: teacher CTC
          - NRTRHead:
              nrtr_dim: 384
              num_decoder_layers: 2
              max_text_length: *max_text_length
    Student:
      pretrained:
      freeze_params: false
      return_all_feats: true
      model_type: rec
      algorithm: SVTR_LCNet
      Transform:
      Backbone:
        name: RepSVTR
      Head:
        name: MultiHead
        head_list:
          - CTCHead:
              Neck:
                name: svtr
                dims: 256
                depth: 2
                hidden_dims: 256
                kernel_size: [1, 3]
                use_guide: True
              Head:
                fc_decay: 0.00001
          - NRTRHead:
              nrtr_dim: 384
              num_decoder_layers: 2
              max_text_length: *max_text_length
Loss:
  name: CombinedLoss
  loss_config_list:
  - DistillationDKDLoss:
      weight: 0.1
      model_name_pairs:
      - - Student
        - Teacher
      key: head_out
      multi_head: true
      dis_head: gtc
  - DistillationCTCLoss:
      weight: 1.0
      model_name_list:
      - Student
      key: head_out
      multi_head: true
  - DistillationNRTRLoss:
      weight: 1.0
      model_name_list:
      - Student
      key: head_out
      multi_head: true
PostProcess:
  name: DistillationCTCLabelDecode
  model_name:
  - Student
  key: head_out
  multi_head: true
Train:
  dataset:
    name: MultiScaleDataSet
    ds_width: false
    data_dir: ./train_data/
    label_file_list:
    - ./train_data/train_list.txt   # keep me: train list
    - ./train_data/extra_list.txt
    transforms:
    - DecodeImage:
        img_mode: BGR
        channel_first: false
  sampler:
    name: MultiScaleSampler
    scales: [[320, 32], [320, 48], [320, 64]]
    first_bs: &bs 192
  loader:
    shuffle: true
    batch_size_per_card: *bs
Eval:
  dataset:
    name: MultiScaleDataSet
    data_dir: ./val_data
    label_file_list:
    - ./val_data/val_list.txt
    ratio_list: [0.5]
    transforms:
    - RecResizeImg:
        image_shape: [3, 48, 320]
  loader:
    shuffle: false
    batch_size_per_card: 128
"""

MULTIHEAD_SAR = """\
Global:
  character_dict_path: keys.txt
  use_space_char: false
Architecture:
  model_type: rec
  algorithm: SVTR_LCNet
  Backbone: {name: MobileNetV1Enhance, scale: 0.5}
  Head:
    name: MultiHead
    head_list:
      - CTCHead:
          Neck: {name: svtr, dims: 64}
      - SARHead:
          enc_dim: 512
Loss:
  name: MultiLoss
  loss_config_list:
    - CTCLoss:
    - SARLoss:
PostProcess:
  name: CTCLabelDecode
Train:
  dataset: {name: SimpleDataSet, data_dir: ./d, label_file_list: [./d/train.txt]}
Eval:
  dataset: {name: SimpleDataSet, data_dir: ./e, label_file_list: [./e/val.txt]}
"""

PLAIN_CTC = """\
Global:
  character_dict_path: keys.txt
  use_space_char: true
Architecture:
  model_type: rec
  algorithm: CRNN
  Head:
    name: CTCHead
    mid_channels: 96
    fc_decay: 0.00002
PostProcess:
  name: CTCLabelDecode
Train:
  dataset: {name: SimpleDataSet, data_dir: ./d, label_file_list: [./d/a.txt, ./d/b.txt]}
Eval:
  dataset: {name: SimpleDataSet, data_dir: ./e, label_file_list: [./e/val.txt]}
"""

KEYS = "a\nb\nc\nd\ne\n"  # 5 characters


def train_py_sizes(config: dict, char_num: int) -> dict:
    """What PaddleOCR's tools/train.py puts into each Distillation sub-model's MultiHead (plain re-statement)."""
    out = {}
    losses = config["Loss"]["loss_config_list"]
    for key, model in config["Architecture"]["Models"].items():
        if model["Head"]["name"] != "MultiHead":
            continue
        sizes = {"CTCLabelDecode": char_num}
        if list(losses[-1])[0] == "DistillationSARLoss":
            sizes["SARLabelDecode"] = char_num + 2
        elif any("DistillationNRTRLoss" in entry for entry in losses):
            sizes["NRTRLabelDecode"] = char_num + 3
        out[key] = sizes
    return out


@pytest.fixture
def paddleocr_tree(tmp_path) -> Path:
    root = tmp_path / "PaddleOCR"
    (root / "ppocr" / "utils").mkdir(parents=True)
    (root / "ppocr" / "utils" / "test_keys.txt").write_text(KEYS, encoding="utf-8")
    conf_dir = root / "configs" / "rec" / "SVTRv2"
    conf_dir.mkdir(parents=True)
    (conf_dir / "distill.yml").write_text(DISTILL, encoding="utf-8")
    return conf_dir / "distill.yml"


def test_distillation_config(paddleocr_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the dictionary is found relative to the config's ancestors
    out = tmp_path / "out.yml"
    result = edit_config_file(paddleocr_tree, out)
    assert result.layout == "distillation" and result.char_num == 5 + 1 + 1
    text = out.read_text(encoding="utf-8")
    cfg = yaml.safe_load(text)
    for key in ("Teacher", "Student"):
        head = cfg["Architecture"]["Models"][key]["Head"]
        assert head["head_list"][0]["CTCHead"]["Head"] == {"fc_decay": 0.00001, "return_feats": True}
        assert head["head_list"][1]["NRTRHead"]["max_text_length"] == 25
        assert head["out_channels_list"] == train_py_sizes(yaml.safe_load(DISTILL), 7)[key]
        assert head["out_channels_list"] == {"CTCLabelDecode": 7, "NRTRLabelDecode": 10}
    ev = cfg["Eval"]["dataset"]
    assert ev["name"] == "SimpleDataSet" and ev["data_dir"] == "./train_data/"
    assert ev["label_file_list"] == ["./train_data/train_list.txt", "./train_data/extra_list.txt"]
    assert ev["ratio_list"] == 1.0
    assert ev["transforms"] == [{"RecResizeImg": {"image_shape": [3, 48, 320]}}]
    assert cfg["Train"] == yaml.safe_load(DISTILL)["Train"]  # Train untouched
    # comments and anchors survive
    for kept in ("# distillation config used by the ncnnpass tests", "# keep me: teacher CTC",
                 "# keep me: train list", "&max_text_length 25", "*max_text_length", "&bs 192", "*bs"):
        assert kept in text, kept
    assert "&id" not in text  # no anchors invented for copied values
    assert any("MultiScaleDataSet" in n for n in result.notes)
    paths = [e.path for e in result.edits]
    assert "Architecture.Models.Student.Head.head_list[0].CTCHead.Head.return_feats" in paths
    assert "Eval.dataset.name" in paths

    again = edit_config(text, "out.yml", config_path=str(paddleocr_tree))
    assert again.edits == [] and again.text == text  # idempotent


def test_multihead_sar_and_plain_ctc(tmp_path):
    (tmp_path / "keys.txt").write_text(KEYS, encoding="utf-8")
    res = edit_config(MULTIHEAD_SAR, "mh.yml", config_path=str(tmp_path / "mh.yml"))
    cfg = yaml.safe_load(res.text)
    assert res.layout == "multihead" and res.char_num == 6
    assert cfg["Architecture"]["Head"]["out_channels_list"] == {"CTCLabelDecode": 6, "SARLabelDecode": 8}
    assert cfg["Architecture"]["Head"]["head_list"][0]["CTCHead"]["Head"] == {"return_feats": True}
    assert cfg["Loss"]["loss_config_list"][1] == {"SARLoss": {"ignore_index": 7}}
    assert cfg["Eval"]["dataset"] == {"name": "SimpleDataSet", "data_dir": "./d", "label_file_list": ["./d/train.txt"]}

    res = edit_config(PLAIN_CTC, "ctc.yml", config_path=str(tmp_path / "ctc.yml"))
    head = yaml.safe_load(res.text)["Architecture"]["Head"]
    assert res.layout == "ctc" and head["return_feats"] is True and head["out_channels"] == 7
    assert head["mid_channels"] == 96

    other = tmp_path / "other.txt"
    other.write_text("x\ny\n", encoding="utf-8")
    res = edit_config(PLAIN_CTC, "ctc.yml", dict_path=str(other))
    assert yaml.safe_load(res.text)["Architecture"]["Head"]["out_channels"] == 4


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.replace("Architecture:", "Architectur:"), "Architecture: missing"),
    (lambda t: t.replace("name: MultiHead", "name: AttentionHead"), "has no CTC branch"),
    (lambda t: t.replace("- CTCHead:", "- SRNHead:"), "unknown MultiHead branch 'SRNHead'"),
    (lambda t: t.replace("name: DistillationCTCLabelDecode", "name: AttnLabelDecode"), "not a CTC/SAR/NRTR"),
    (lambda t: t.replace("test_keys.txt", "nope.txt"), "cannot find ppocr/utils/nope.txt"),
    (lambda t: t.replace("    label_file_list:\n    - ./train_data/train_list.txt   # keep me: train list\n"
                         "    - ./train_data/extra_list.txt\n", "    label_file_list: []\n"),
     "Train.dataset.label_file_list: missing"),
    (lambda t: t.replace("  Models:\n", "  Models: {}\n  Old:\n"), "no sub-models"),
    (lambda t: t.replace("use_gpu: true", "use_gpu: [true"), "not valid YAML"),
])
def test_configs_it_does_not_understand(paddleocr_tree, mutate, message):
    text = mutate(DISTILL)
    with pytest.raises(PaddleConfigError) as info:
        edit_config(text, str(paddleocr_tree), config_path=str(paddleocr_tree))
    assert message in str(info.value)
    assert str(info.value).startswith(str(paddleocr_tree))


def test_cli(paddleocr_tree, tmp_path, capsys):
    out = tmp_path / "o.yml"
    assert main(["paddle-config", str(paddleocr_tree), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "distillation config, CTC classes 7" in err and "return_feats" in err
    assert main(["paddle-config", str(paddleocr_tree), "-o", str(paddleocr_tree)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    broken = paddleocr_tree.parent / "b.yml"
    broken.write_text(DISTILL.replace("name: MultiHead", "name: AttentionHead"), encoding="utf-8")
    assert main(["paddle-config", str(broken), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ncnnpass paddle-config: error: {broken}:") and err.count("\n") == 1
    assert "Architecture.Models.Teacher.Head" in err
