"""What ``convert`` measures and keeps beyond the random-input figures: real text, and the model's facts.

- :func:`keep_facts`: ``OUTDIR/inference.yml`` (copied from a Paddle export: kind, dictionary, the
  detector's resize) and ``OUTDIR/dictionary.txt`` (a recogniser's characters, wherever they came from:
  ``inference.yml``, the ONNX metadata, a zoo model's dictionary file), so an output directory is a
  complete model for ``ncnnpass ocr`` and ``compare``.
- :func:`task_rows`: the converter's output (``before``) and the rewritten model (``after``), both ncnn x86
  under default options, against onnxruntime on the built-in held-out data (or ``--images``) with the
  kind's task metric (:mod:`ncnnpass.passes.measure.task_eval`); the table's real-text rows come from
  :func:`ncnnpass.passes.measure.task_eval.headline`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ncnnpass.ir import Graph
from ncnnpass.ir.fileio import atomic_write
from ncnnpass.passes.measure.ctc_decode import read_dictionary
from ncnnpass.passes.measure.model_files import DICTIONARY_FILE, FACTS_FILE
from ncnnpass.passes.measure.model_info import ModelInfo
from ncnnpass.passes.measure.task_data import TaskRequest
from ncnnpass.passes.measure.task_eval import Side, TaskCriteria, evaluate, headline

__all__ = ["keep_facts", "task_rows"]


def keep_facts(source: Path, outdir: Path, info: ModelInfo, dictionary: Path | None = None) -> None:
    """Copy the source's ``inference.yml`` and write the dictionary next to ``model.onnx`` (see the module
    docstring); a zoo model's ``dictionary`` file fills ``info.dictionary`` when the facts had none."""
    yml = source / FACTS_FILE if source.is_dir() else None
    if yml is not None and yml.is_file():
        shutil.copyfile(yml, outdir / FACTS_FILE)
    else:
        (outdir / FACTS_FILE).unlink(missing_ok=True)  # an earlier conversion's facts in a reused OUTDIR
    if info.dictionary is None and dictionary is not None and dictionary.is_file():
        info.dictionary = read_dictionary(dictionary)
        info.sources.append(dictionary.name)
    if info.dictionary:
        atomic_write(outdir / DICTIONARY_FILE, "".join(f"{c}\n" for c in info.dictionary))
    else:
        (outdir / DICTIONARY_FILE).unlink(missing_ok=True)


def task_rows(before: Graph, after: Graph, onnx_path: Path, info: ModelInfo, request: TaskRequest, *,
              pipeline: str, model_dir: Path | None, static_width: int | None,
              progress: Callable[[str], None]) -> tuple[dict, list[str]]:
    """(the task report as JSON-ready data with a ``rows`` table, warnings): ``before`` and ``after`` on
    x86 under default options against onnxruntime (see the module docstring)."""
    task = request.load(info, target="x86", model_dir=model_dir, static_width=static_width)
    after_label = f"after {pipeline}"
    report = evaluate(task, [Side.onnxruntime(onnx_path), Side.ncnn(before, label="pnnx output"),
                             Side.ncnn(after, label=after_label)], progress=lambda m: progress(f"    {m}"))
    b, a = report.pair("pnnx output"), report.pair(after_label)
    warnings = []
    if task.data.skipped or (task.coverage is not None and not task.coverage.complete):
        warnings += [line.removeprefix("data: ") for line in task.describe()]
    rows = []
    if b.result is not None and a.result is not None:
        what = "pages" if task.kind == "det" else "lines"
        source = "built-in held-out" if task.builtin else "--images"
        rows = [(f"{name} vs onnxruntime ({len(task.inputs)} {source} {what})" if i == 0 else name, x, y)
                for i, ((name, x), (_, y)) in enumerate(zip(headline(b.result), headline(a.result), strict=True))]
        worse = TaskCriteria().failures(a)
        if worse and not TaskCriteria().failures(b):
            warnings.append(f"on real text the rewritten model differs from onnxruntime where the converter's output "
                            f"did not: {'; '.join(worse)}")
    data = report.to_dict()
    data["rows"] = rows
    data["text"] = report.render()
    return data, warnings
