"""``ncnnpass convert --target arm``: the before/after table gains rows measured on the emulated phone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures import require

from ncnnpass.cli.main import main
from ncnnpass.ir.runtime.arm_env import arm_runtime_status


@pytest.mark.real
@pytest.mark.slow
def test_convert_cls_with_phone_rows(tmp_path: Path, capsys) -> None:
    require(arm_runtime_status() is None, f"the emulated ARM runtime: {arm_runtime_status()}")
    out = tmp_path / "cls"
    code = main(["convert", "ppocrv2-cls", "-o", str(out), "--target", "arm", "--no-report"])
    text = capsys.readouterr().out
    assert code == 0, text
    rows = [ln for ln in text.splitlines() if "on arm cortex-a76 (emulated)" in ln]
    assert len(rows) == 2, text
    phone = json.loads((out / "convert.json").read_text())["phone"]
    assert phone["target"] == "arm"
    # fp32 options on the phone reach the x86 fp32 floor (~1e-7 here); fp16 on the phone costs far more
    assert phone["after"]["fp32"] < 1e-5
    assert phone["after"]["default"] > 10 * phone["after"]["fp32"]
    assert phone["before"]["default"] > 1e-5
