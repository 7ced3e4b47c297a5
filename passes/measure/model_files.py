"""A model as the task measurements take it: its ONNX (the reference), its ncnn files and its facts.

Two ways to name one (``ncnnpass ocr --det/--rec/--cls``, :func:`model_files`):

- a ``convert`` output directory: ``OUTDIR/model.onnx`` and ``OUTDIR/model.ncnn.param``/``.bin`` (the
  repaired model; ``OUTDIR/pnnx/`` holds the converter's), with the facts ``convert`` keeps there
  (``inference.yml`` copied from a Paddle export, ``dictionary.txt``);
- explicit files ``MODEL.onnx,MODEL.param[,MODEL.bin]`` (the ``.bin`` defaults to the ``.param``'s name).

Facts (:func:`model_facts`): :func:`.model_info.read_model_info` on the folder when it holds an
``inference.yml`` (kind, dictionary, the detector's resize), else on the ONNX (output rank, the
``character`` metadata); the dictionary is, in this order, the one given (``--dict``), the facts',
``dictionary.txt`` next to the ONNX.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ncnnpass.ir.errors import NcnnpassError

from .ctc_decode import read_dictionary
from .model_info import ModelInfo, read_model_info

__all__ = ["ModelFiles", "model_facts", "model_files", "graph_facts", "kind_from_shapes", "DICTIONARY_FILE", "FACTS_FILE"]

DICTIONARY_FILE = "dictionary.txt"
FACTS_FILE = "inference.yml"


@dataclass
class ModelFiles:
    onnx: Path
    param: Path
    bin: Path
    info: ModelInfo
    model_dir: Path | None = None  #: where the facts file is (a detector's resize), if any
    static_width: int | None = None  #: the one input width the ncnn model was converted for (None: any)

    def describe(self) -> str:
        return f"{self.param} ({self.info.describe()})"


def model_facts(onnx: str | os.PathLike, dictionary: str | os.PathLike | None = None
                ) -> tuple[ModelInfo, Path | None]:
    """The facts of the model ``onnx`` is (see the module docstring) and the folder of its facts file."""
    onnx = Path(onnx)
    if not onnx.is_file():
        raise NcnnpassError(f"ONNX model not found: {onnx}")
    folder = onnx.parent if (onnx.parent / FACTS_FILE).is_file() else None
    info = read_model_info(folder or onnx, onnx)
    if dictionary is not None:
        if not Path(dictionary).is_file():
            raise NcnnpassError(f"dictionary not found: {dictionary}")
        info.dictionary = read_dictionary(dictionary)
        info.sources.append("--dict")
    elif info.dictionary is None and (onnx.parent / DICTIONARY_FILE).is_file():
        info.dictionary = read_dictionary(onnx.parent / DICTIONARY_FILE)
        info.sources.append(DICTIONARY_FILE)
    return info, folder


def _exists(path: Path, what: str, spec: str) -> Path:
    if not path.is_file():
        raise NcnnpassError(f"{spec}: {what} not found: {path}")
    return path


def model_files(spec: str | os.PathLike, role: str = "model", dictionary: str | os.PathLike | None = None
                ) -> ModelFiles:
    """The files and facts ``spec`` names (a ``convert`` output directory, or ``ONNX,PARAM[,BIN]``);
    ``role`` (``det``, ``rec``, ``cls``) names it in errors and must agree with the facts' kind."""
    text = os.fspath(spec)
    where = f"--{role} {text}" if role in ("det", "rec", "cls") else text
    if Path(text).is_dir():
        root = Path(text)
        onnx = _exists(root / "model.onnx", "the ONNX model (a convert output directory has model.onnx)", where)
        param = _exists(root / "model.ncnn.param", "the ncnn model", where)
        bin_ = _exists(root / "model.ncnn.bin", "the ncnn weights", where)
    else:
        parts = text.split(",")
        if len(parts) == 1:
            raise NcnnpassError(f"{where}: not found (a convert output directory, or MODEL.onnx,MODEL.param[,MODEL.bin])"
                                if not Path(text).exists() else
                                f"{where}: expected a convert output directory or MODEL.onnx,MODEL.param[,MODEL.bin]")
        if len(parts) not in (2, 3) or not all(parts):
            raise NcnnpassError(f"{where}: expected a convert output directory or MODEL.onnx,MODEL.param[,MODEL.bin]")
        onnx = _exists(Path(parts[0]), "ONNX model", where)
        param = _exists(Path(parts[1]), "param file", where)
        root_, ext = os.path.splitext(parts[1])
        bin_ = _exists(Path(parts[2] if len(parts) == 3 else (root_ + ".bin" if ext == ".param" else parts[1] + ".bin")),
                       "bin file", where)
    info, folder = model_facts(onnx, dictionary)
    static = _static_width(Path(text) if Path(text).is_dir() else None, param)
    if static is None and info.kind == "rec" and info.dynamic[1]:
        from ncnnpass.ir import Graph

        from .dynamic_sizes import runs_at_other_widths

        if not runs_at_other_widths(Graph.load(param, bin_), tuple(info.input_shape)):
            static = int(info.input_shape[2])  # Reshapes sized for one width: lines fitted to it
    if role in ("det", "rec", "cls") and info.kind not in (None, role):
        raise NcnnpassError(f"{where}: this is a {info.kind} model ({info.describe()})")
    if role in ("det", "rec", "cls") and info.kind is None:
        info.kind = role
    return ModelFiles(onnx, param, bin_, info, folder, static if info.kind == "rec" else None)


def _static_width(outdir: Path | None, param: Path) -> int | None:
    """The width a recogniser was converted for when it runs at that width only: ``convert.json`` without a
    second size, or an ``Input`` layer that declares its width (else :func:`model_files` asks
    :mod:`.dynamic_sizes`)."""
    import json

    record = outdir / "convert.json" if outdir is not None else None
    if record is not None and record.is_file():
        try:
            facts = json.loads(record.read_text(encoding="utf-8"))
        except ValueError:
            facts = {}
        if facts.get("second_shape") is None and isinstance(facts.get("shape"), list) and len(facts["shape"]) == 3:
            return int(facts["shape"][2])
        return None
    from ncnnpass.ir import Graph

    for layer in Graph.load(param).find("Input"):
        if int(layer.get(0, 0)) > 0:
            return int(layer.get(0, 0))
    return None


def kind_from_shapes(input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> str | None:
    """A PaddleOCR model's kind from its ncnn input (C, H, W) and first output shape (no batch dim): a
    ``T x classes`` sequence is rec, a map of the input's size is det, a few scores are cls."""
    if len(input_shape) != 3 or input_shape[0] != 3:
        return None
    out = tuple(d for d in output_shape if d != 1) or (1,)
    if len(out) == 2 and out == tuple(input_shape[1:]):
        return "det"
    if len(out) == 2 and out[1] > 8:
        return "rec"
    if len(out) == 1 and 2 <= out[0] <= 8:
        return "cls"
    return None


def graph_facts(graph, input_shape: tuple[int, int, int], dictionary: str | os.PathLike | None = None) -> ModelInfo:
    """Facts of an ncnn model alone (no ONNX): its kind from the output shape at ``input_shape`` (ncnn's own
    shape inference, in a worker process when the default target is emulated); the dictionary only when
    given. Without one a recogniser's strings are class-id sequences (enough to tell two runs apart)."""
    from ncnnpass.ir.runtime import infer_shapes

    shapes = infer_shapes(graph, tuple(input_shape))
    out = shapes.get(graph.outputs[0]) if graph.outputs else None
    kind = kind_from_shapes(tuple(input_shape), tuple(out)) if out is not None else None
    dynamic = (kind == "det", kind in ("rec", "det"))
    info = ModelInfo(kind, tuple(input_shape), dynamic, sources=["ncnn output shape"])  # type: ignore[arg-type]
    if dictionary is not None:
        if not Path(dictionary).is_file():
            raise NcnnpassError(f"dictionary not found: {dictionary}")
        info.dictionary = read_dictionary(dictionary)
        info.sources.append("--dict")
    return info
