"""The model side of a center run: load an ONNX file or a Paddle directory, add the feats/logits
outputs (:func:`prepare_model`), and fit the image shape and the dictionary to it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from ncnnpass.ir.errors import NcnnpassError, ToolError
from ncnnpass.passes.measure.ctc_decode import (
    Charset,
    DictionaryError,
    dictionary_from_metadata,
    read_dictionary,
)
from ncnnpass.passes.measure.dictionary import dictionary_source, rec_image_shape
from ncnnpass.passes.measure.rec_preprocess import parse_image_shape
from ncnnpass.passes.onnx.ctc_feats import add_ctc_feats, load_onnx

__all__ = ["PreparedModel", "prepare_model", "resolve_charset", "resolve_image_shape"]


@dataclass
class PreparedModel:
    """The inference model with feats/logits outputs, and what we know about it."""

    model: onnx.ModelProto
    feats: str
    logits: str
    input_name: str
    input_dims: list[int | None]  #: static dims (``None`` where dynamic)
    feat_dim: int
    num_classes: int
    mid_channels: int | None
    source: str
    source_sha256: str
    dictionary: list[str] | None  #: from metadata ``character``, or ``inference.yml``/``config.json``
    dictionary_origin: str | None = None  #: the file of a Paddle directory the dictionary came from
    export_image_shape: tuple[int, int, int] | None = None  #: RecResizeImg of a Paddle directory's export


def _sha256_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _convert_paddle_dir(model_dir: Path) -> onnx.ModelProto:
    try:
        from ncnnpass.passes.toolchain.paddle2onnx import paddle_to_onnx
    except ImportError as exc:
        raise ToolError(f"{model_dir} is a Paddle model directory, but the paddle2onnx step is not "
                        f"available ({exc}); convert it to ONNX first") from exc
    with tempfile.TemporaryDirectory(prefix="ncnnpass-centers-") as tmp:
        out = Path(tmp) / "model.onnx"
        paddle_to_onnx(model_dir, out)
        return load_onnx(str(out))


def prepare_model(model: str | os.PathLike | onnx.ModelProto) -> PreparedModel:
    """Load an ONNX file, an ONNX model or a Paddle inference directory and add feats/logits outputs."""
    dictionary: list[str] | None = None
    dictionary_origin: str | None = None
    export_image_shape: tuple[int, int, int] | None = None
    if isinstance(model, onnx.ModelProto):
        proto, source, sha = model, "<onnx model>", hashlib.sha256(model.SerializeToString()).hexdigest()
    else:
        path = Path(model)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.name.startswith("inference.") and p.is_file())
            if not any(p.name in ("inference.pdmodel", "inference.json") for p in files):
                raise NcnnpassError(f"{path} is a directory without inference.pdmodel / inference.json; "
                                    "MODEL must be an ONNX file or a Paddle inference directory")
            sha = _sha256_files(files)
            found = dictionary_source(path)
            dictionary, dictionary_origin = (found[0], found[1].name) if found else (None, None)
            export_image_shape = rec_image_shape(path)
            proto = _convert_paddle_dir(path)
        else:
            sha = _sha256_files([path])
            proto = load_onnx(str(path))
        source = str(path)
    result = add_ctc_feats(proto)
    center_model = result.model
    # The softmax output is not needed (decisions use the logits, as PaddleOCR's training-mode head
    # returns logits); dropping it lets onnxruntime skip the softmax.
    keep = [o for o in center_model.graph.output if o.name in (result.feats, result.logits)]
    del center_model.graph.output[:]
    center_model.graph.output.extend(keep)
    inits = {i.name for i in center_model.graph.initializer}
    inputs = [i for i in center_model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise NcnnpassError(f"{source}: expected one image input, found {[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise NcnnpassError(f"{source}: input {inputs[0].name} has rank {len(dims)}, expected N x 3 x H x W")
    return PreparedModel(
        model=center_model, feats=result.feats, logits=result.logits, input_name=inputs[0].name,
        input_dims=dims, feat_dim=result.feat_dim, num_classes=result.num_classes,
        mid_channels=result.mid_channels, source=source, source_sha256=sha,
        dictionary=dictionary or dictionary_from_metadata(proto),
        dictionary_origin=dictionary_origin if dictionary else None, export_image_shape=export_image_shape)


def resolve_image_shape(pm: PreparedModel, wanted: tuple[int, int, int] | None,
                        eval_mode: bool) -> tuple[int, int, int]:
    """The C,H,W to feed: ``wanted``, else the static input dims, else the export's RecResizeImg, else 3,48,320."""
    _, c, h, w = pm.input_dims
    default = pm.export_image_shape or (3, 48, 320)
    shape = wanted or (c or default[0], h or default[1], w or default[2])
    shape = parse_image_shape(shape)
    for axis, name, static in ((0, "channels", c), (1, "height", h), (2, "width", w)):
        if static is not None and shape[axis] != static:
            raise NcnnpassError(f"image shape {','.join(map(str, shape))} does not fit the model input "
                                f"{pm.input_name} (static {name} {static})")
    if eval_mode and w is not None:
        raise NcnnpassError(f"eval_mode widens long lines, but the model input {pm.input_name} has a "
                            f"static width {w}")
    return shape


def resolve_charset(pm: PreparedModel, dict_path: str | os.PathLike | None,
                    use_space_char: bool | None) -> tuple[Charset, str, bool]:
    """The character set, where the dictionary came from, and whether use_space_char was inferred."""
    if dict_path is not None:
        entries, origin = read_dictionary(dict_path), str(dict_path)
    elif pm.dictionary:
        entries = pm.dictionary
        origin = pm.dictionary_origin or "ONNX metadata 'character'"
    else:
        raise DictionaryError(f"{pm.source} carries no dictionary (no 'character' metadata): pass --dict")
    n, k = len(entries), pm.num_classes
    inferred = use_space_char is None
    if inferred:
        if k == n + 2:
            use_space_char = True
        elif k == n + 1:
            use_space_char = False
        else:
            raise DictionaryError(
                f"the model has {k} classes but the dictionary ({origin}) has {n} entries: expected "
                f"{n + 1} (+ blank) or {n + 2} (+ blank + space); is it the dictionary the model was trained with?")
    charset = Charset(entries, bool(use_space_char))
    if len(charset) != k:
        hint = ""
        if k == len(charset) + 1 and not use_space_char:
            hint = "; the model has one more class: add --use-space-char"
        elif k == len(charset) - 1 and use_space_char:
            hint = "; the model has one class less: drop --use-space-char"
        raise DictionaryError(
            f"the model has {k} classes but the dictionary ({origin}) gives {len(charset)} = {n} entries "
            f"+ blank{' + space' if use_space_char else ''}{hint}. CenterLoss num_classes must match both")
    return charset, origin, inferred
