"""The README's Python examples run as written (on the real PP-OCRv3 model) and its tables are current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.real
@pytest.mark.parametrize("index", range(2))
def test_python_examples_run(index: int, ppocrv3_rec_ncnn, tmp_path: Path, monkeypatch) -> None:
    param, bin = ppocrv3_rec_ncnn
    code = _python_blocks()[index]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rec.ncnn.param").symlink_to(param)
    (tmp_path / "rec.ncnn.bin").symlink_to(bin)
    namespace: dict = {}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    saved = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".param", ".bin") and not p.is_symlink())
    assert saved, "the example wrote no model"


def test_every_pass_and_pipeline_is_listed() -> None:
    from ncnnpass.passes import PIPELINES, list_passes

    text = README.read_text(encoding="utf-8")
    for p in list_passes():
        assert f"| `{p.name}` |" in text, p.name
    for name in PIPELINES:
        assert f"| `{name}` |" in text, name


def test_every_command_is_listed() -> None:
    from ncnnpass.cli.main import build_parser

    text = README.read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"| `{name} " in text, name
