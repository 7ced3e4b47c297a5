"""Character centers for PaddleOCR's CenterLoss (``train_center.pkl``), from an exported model.

Semantics of PaddleOCR's ``tools/export_center.py`` / ``tools/program.py:get_center``:

- samples come from PaddleOCR label files (``path<TAB>label``, relative to a data directory);
- preprocessing is the Eval pipeline's ``DecodeImage`` (BGR) + ``RecResizeImg`` (see
  :mod:`.rec_preprocess`);
- the prediction is the greedy CTC decoding of the logits (blank 0, repeats merged, see
  :mod:`.ctc_decode`) and a sample is used only when it equals the label exactly;
- for a used sample, **every** time step's feature (the input of the CTC head's last FC) is assigned to
  that step's argmax class, blank included, and a class's center is the mean of its features;
- the result is a dict ``{class index: float32 vector [feat_dim]}``; classes never predicted in a used
  sample are absent (CenterLoss keeps random rows for them).

Differences, on purpose:

- **Inference-mode features.** PaddleOCR's script never calls ``model.eval()``: the forward runs in
  training mode (BatchNorm normalises with the batch's statistics, dropout in the SVTR neck is active),
  and this is even required by CTCHead, which drops the features in eval mode. An exported graph is
  an inference graph: BatchNorm uses the running statistics and there is no dropout. The features here
  are therefore deterministic and independent of the batch composition, and not bit-comparable with
  the upstream script's (which are noisy and depend on the batch).
- Sums and counts are accumulated in float64 (upstream keeps a float32 running mean) and divided once.
- Keys are plain Python ``int`` (upstream: ``numpy.int64``), and the pickle is written so that both
  NumPy 1.x and 2.x can load it (a plain NumPy 2 pickle refers to ``numpy._core``, which NumPy
  before 1.26 does not have; PaddleOCR training environments often pin older NumPy).
- Unreadable images and malformed label lines are reported, not replaced by random other samples.

Large sets can be split (``shard=(i, n)``): each shard writes float64 partial sums and counts to an
``.npz`` (no pickle) and :func:`merge_shards` combines them into the same pickle a single run writes.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import json
import os
import pickle
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import onnx

from ncnnpass.ir.errors import NcnnpassError, ToolError
from ncnnpass.ir.fileio import atomic_write
from ncnnpass.passes.onnx.ctc_feats import add_ctc_feats, load_onnx

from .ctc_decode import Charset, DictionaryError, dictionary_from_metadata, read_dictionary
from .dictionary import dictionary_source, rec_image_shape
from .label_files import LabelProblem, Sample, read_label_files
from .rec_preprocess import ImageReadError, parse_image_shape, read_image, resize_norm_img

__all__ = [
    "CenterDataError", "CenterOptions", "CenterRun", "CenterSums", "MergeResult", "FEATURE_MODE",
    "Progress", "PreparedModel", "compute_centers", "dumps_centers", "export_centers", "load_centers",
    "load_shard", "merge_shards", "parse_shard", "prepare_model", "write_centers", "write_shard",
]

SHARD_FORMAT = "ncnnpass-center-shard/1"
CENTERS_FORMAT = "ncnnpass-centers/1"
FEATURE_MODE = ("inference mode: BatchNorm running statistics, no dropout (PaddleOCR's "
                "tools/export_center.py runs the model in training mode: batch statistics, dropout)")
MAX_LISTED = 10000  # problems kept in the JSON sidecar / shard metadata


class CenterDataError(NcnnpassError):
    """The samples, shards or options cannot produce centers (empty set, mismatched shards, ...)."""


# ------------------------------------------------------------------------------------------ options


@dataclass
class CenterOptions:
    """Knobs of :func:`export_centers`; the defaults follow PaddleOCR's PP-OCRv3/v4 Eval settings."""

    #: C,H,W of RecResizeImg; ``None``: the model's static input dims, else 3,48,320.
    image_shape: tuple[int, int, int] | None = None
    #: RecResizeImg ``eval_mode``: long lines widen the canvas instead of being squeezed.
    eval_mode: bool = False
    #: ``None``: infer from the model's class count (dictionary + blank [+ space]).
    use_space_char: bool | None = None
    batch_size: int = 32
    #: PaddleOCR drops labels longer than ``Global.max_text_length``; ``None``: no limit.
    max_text_length: int | None = None
    #: follow label-file paths that are absolute or leave the data directory (always reported).
    allow_outside_data_dir: bool = False
    #: ``(index, count)``, 0-based index.
    shard: tuple[int, int] | None = None
    providers: Sequence[str] | None = None
    #: image decoding threads (0: decode in the inference thread).
    workers: int = 2
    intra_op_threads: int = 0


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/8"`` -> ``(3, 8)``; the index is 0-based (0 <= I < N)."""
    try:
        i_text, n_text = text.split("/")
        index, count = int(i_text), int(n_text)
    except ValueError:
        raise CenterDataError(f"bad shard {text!r}: expected I/N, e.g. 0/4 (0-based index)") from None
    if count < 1 or not 0 <= index < count:
        raise CenterDataError(f"bad shard {text!r}: need 0 <= I < N (the index is 0-based)")
    return index, count


# ------------------------------------------------------------------------------------------ sums


@dataclass
class CenterSums:
    """float64 per-class feature sums ``[num_classes, feat_dim]`` and int64 frame counts."""

    sums: np.ndarray
    counts: np.ndarray

    @classmethod
    def zeros(cls, num_classes: int, feat_dim: int) -> CenterSums:
        return cls(np.zeros((num_classes, feat_dim), np.float64), np.zeros(num_classes, np.int64))

    @property
    def num_classes(self) -> int:
        return int(self.sums.shape[0])

    @property
    def feat_dim(self) -> int:
        return int(self.sums.shape[1])

    def add(self, feats: np.ndarray, classes: np.ndarray) -> None:
        """Add frames: ``feats [M, C]`` with their argmax classes ``[M]``."""
        classes = np.asarray(classes).reshape(-1)
        if classes.size == 0:
            return
        feats = np.asarray(feats, dtype=np.float64).reshape(classes.size, -1)
        order = np.argsort(classes, kind="stable")
        sorted_classes = classes[order]
        keys, starts, counts = np.unique(sorted_classes, return_index=True, return_counts=True)
        self.sums[keys] += np.add.reduceat(feats[order], starts, axis=0)
        self.counts[keys] += counts

    def merge(self, other: CenterSums) -> None:
        self.sums += other.sums
        self.counts += other.counts

    def centers(self) -> dict[int, np.ndarray]:
        """``{class: mean feature (float32)}`` for every class with at least one frame."""
        out: dict[int, np.ndarray] = {}
        for k in np.flatnonzero(self.counts):
            out[int(k)] = (self.sums[k] / self.counts[k]).astype(np.float32)
        return out


# ------------------------------------------------------------------------------------------ model


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


def _resolve_image_shape(pm: PreparedModel, wanted: tuple[int, int, int] | None,
                         eval_mode: bool) -> tuple[int, int, int]:
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


def _resolve_charset(pm: PreparedModel, dict_path: str | os.PathLike | None,
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


# ------------------------------------------------------------------------------------------ progress


class Progress:
    """A small progress display on stderr: a redrawn bar on a terminal, a line every 30 s otherwise."""

    def __init__(self, total: int, desc: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if (self.tty and now - self.last >= 0.1) or (not self.tty and now - self.last >= 30):
            self.last = now
            self._draw(now, end="" if self.tty else "\n")

    def _draw(self, now: float, end: str) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 30)
        prefix = "\r" if self.tty else ""
        self.stream.write(f"{prefix}{self.desc}: [{bar:<30}] {self.done}/{self.total} ({rate:.1f} img/s){end}")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._draw(time.perf_counter(), end="\n")


# ------------------------------------------------------------------------------------------ run


@dataclass
class CenterRun:
    """Sums plus everything the summary, the sidecar and the shard metadata report."""

    sums: CenterSums
    info: dict[str, Any]  #: run parameters that shards must share (see :func:`merge_shards`)
    samples_total: int = 0  #: usable samples in the label files (all shards)
    samples: int = 0  #: samples this run looked at (its shard)
    used: int = 0  #: recognized exactly -> contributed
    misrecognized: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  #: (path, reason)
    label_problems: list[LabelProblem] = field(default_factory=list)
    labels_with_unknown_chars: int = 0
    frames: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0  #: before the first batch: model, labels, session (part of ``seconds``)
    cpu_seconds: float = 0.0  #: process CPU time, all threads (same span as ``seconds``)
    setup_cpu_seconds: float = 0.0
    characters: list[str] = field(default_factory=list)  #: index -> character (0: "blank")

    @property
    def classes_covered(self) -> int:
        return int(np.count_nonzero(self.sums.counts))

    def stats(self) -> dict[str, Any]:
        return {
            "samples_total": self.samples_total, "samples": self.samples, "samples_used": self.used,
            "samples_misrecognized": self.misrecognized, "images_unreadable": len(self.unreadable),
            "label_problems": len(self.label_problems),
            "labels_with_unknown_chars": self.labels_with_unknown_chars, "frames": self.frames,
            "classes_covered": self.classes_covered, "seconds": round(self.seconds, 3),
        }


def _load_sample(sample: Sample, image_shape: tuple[int, int, int], eval_mode: bool
                 ) -> tuple[np.ndarray | None, str | None]:
    try:
        img = read_image(sample.path)
    except ImageReadError as exc:
        return None, str(exc)
    try:
        chw, _ = resize_norm_img(img, image_shape, eval_mode)
    except Exception as exc:  # cv2 refusing a pathological size
        return None, f"cannot resize: {exc}"
    return chw, None


def _ordered_loads(samples: Sequence[Sample], load: Callable[[Sample], Any], workers: int,
                   window: int) -> Iterator[Any]:
    """``load`` over ``samples`` in order, ``window`` items ahead on ``workers`` threads."""
    if workers <= 0:
        for s in samples:
            yield load(s)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ncnnpass-load") as pool:
        pending = []
        it = iter(samples)
        for s in it:
            pending.append(pool.submit(load, s))
            if len(pending) >= window:
                break
        head = 0
        while head < len(pending):
            yield pending[head].result()
            pending[head] = None  # free the array
            head += 1
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))


def _session(model: onnx.ModelProto, providers: Sequence[str] | None, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model.SerializeToString(), so,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:
        raise NcnnpassError(f"onnxruntime cannot load the model: {exc}") from exc


def compute_centers(model: str | os.PathLike | onnx.ModelProto, label_files: Sequence[str | os.PathLike],
                    data_dir: str | os.PathLike, dict_path: str | os.PathLike | None = None,
                    options: CenterOptions | None = None, progress: bool = False,
                    stream: TextIO | None = None) -> CenterRun:
    """Run the model over the (shard of the) label set and return the accumulated sums and a report."""
    opts = options or CenterOptions()
    if opts.batch_size < 1:
        raise CenterDataError("batch size must be at least 1")
    start, cpu_start = time.perf_counter(), time.process_time()
    pm = prepare_model(model)
    image_shape = _resolve_image_shape(pm, opts.image_shape, opts.eval_mode)
    charset, dict_origin, space_inferred = _resolve_charset(pm, dict_path, opts.use_space_char)

    labels = read_label_files([str(f) for f in label_files], str(data_dir), opts.allow_outside_data_dir)
    problems = list(labels.problems)
    usable: list[tuple[Sample, str]] = []
    unknown = 0
    for s in labels.samples:
        if opts.max_text_length is not None and len(s.label) > opts.max_text_length:
            problems.append(LabelProblem(s.where, "too-long",
                                         f"label longer than max_text_length {opts.max_text_length}"))
            continue
        text, dropped = charset.encode_label(s.label)
        if not text:
            problems.append(LabelProblem(s.where, "no-dictionary-char",
                                         f"no character of {s.label!r} is in the dictionary"))
            continue
        unknown += bool(dropped)
        usable.append((s, text))
    if not usable:
        raise CenterDataError(
            f"no usable samples in {', '.join(map(str, label_files))} ({labels.lines} lines, "
            f"{len(problems)} problems" + (f"; first: {problems[0]}" if problems else "") + ")")

    index, count = opts.shard or (0, 1)
    lo, hi = index * len(usable) // count, (index + 1) * len(usable) // count
    mine = usable[lo:hi]

    info = {
        "feat_dim": pm.feat_dim, "num_classes": pm.num_classes, "mid_channels": pm.mid_channels,
        "dictionary_size": len(charset.dictionary), "use_space_char": charset.use_space_char,
        "dictionary_sha256": charset.sha256, "dictionary_source": dict_origin,
        "model": pm.source, "model_sha256": pm.source_sha256, "features": FEATURE_MODE,
        "image_shape": list(image_shape), "eval_mode": opts.eval_mode,
        "max_text_length": opts.max_text_length, "allow_outside_data_dir": opts.allow_outside_data_dir,
        "label_files": [str(f) for f in label_files], "label_sha256": labels.sha256,
        "data_dir": str(data_dir),
    }
    run = CenterRun(sums=CenterSums.zeros(pm.num_classes, pm.feat_dim), info=info,
                    samples_total=len(usable), samples=len(mine), label_problems=problems,
                    labels_with_unknown_chars=unknown)
    run.info["use_space_char_inferred"] = space_inferred
    run.info["shard"] = list(opts.shard) if opts.shard else None
    run.characters = charset.characters

    # Missing files are found up front (cheap stat calls), so an all-missing set fails before inference.
    present: list[tuple[Sample, str]] = []
    for s, text in mine:
        if os.path.isfile(s.path):
            present.append((s, text))
        else:
            run.unreadable.append((s.path, "missing"))
    if mine and not present and opts.shard is None:
        raise CenterDataError(f"none of the {len(mine)} images exists (first: {mine[0][0].path}); "
                              f"check --data-dir {data_dir}")

    sess = _session(pm.model, opts.providers, opts.intra_op_threads)
    run.setup_seconds = time.perf_counter() - start
    run.setup_cpu_seconds = time.process_time() - cpu_start
    bar = Progress(len(mine), "export-center", stream=stream, enabled=progress)
    bar.update(len(mine) - len(present))
    buckets: dict[int, list[tuple[np.ndarray, str]]] = {}
    buffered = 0

    def flush(width: int) -> None:
        nonlocal buffered
        items = buckets.pop(width)
        buffered -= len(items)
        x = np.stack([a for a, _ in items])
        feats, logits = sess.run([pm.feats, pm.logits], {pm.input_name: x})
        classes = logits.argmax(axis=-1)
        decoded = charset.decode(classes)
        ok = np.array([d == t for d, (_, t) in zip(decoded, items, strict=True)])
        if ok.any():
            run.sums.add(feats[ok].reshape(-1, feats.shape[-1]), classes[ok])
            run.frames += int(classes[ok].size)
        run.used += int(ok.sum())
        run.misrecognized += int((~ok).sum())
        bar.update(len(items))

    def load(item: tuple[Sample, str]) -> tuple[np.ndarray | None, str | None]:
        return _load_sample(item[0], image_shape, opts.eval_mode)

    window = max(2 * opts.batch_size, 8)
    for (s, text), (arr, err) in zip(present, _ordered_loads(present, load, opts.workers, window),
                                     strict=True):
        if arr is None:
            run.unreadable.append((s.path, err or "unreadable"))
            bar.update(1)
            continue
        width = arr.shape[-1]
        buckets.setdefault(width, []).append((arr, text))
        buffered += 1
        if len(buckets[width]) >= opts.batch_size:
            flush(width)
        elif buffered >= 4 * opts.batch_size:  # many distinct widths (eval_mode): bound the memory
            flush(max(buckets, key=lambda w: len(buckets[w])))
    for width in sorted(buckets):
        flush(width)
    bar.close()
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = time.process_time() - cpu_start
    return run


# ------------------------------------------------------------------------------------------ output


class _FromBuffer:
    """Pickles as ``numpy.frombuffer(data, dtype)`` (wrapped in ``numpy.array`` for a writable copy)."""

    def __init__(self, data: bytes, dtype: str) -> None:
        self.data, self.dtype = data, dtype

    def __reduce__(self):
        return np.frombuffer, (self.data, self.dtype)


def _reduce_ndarray(arr: np.ndarray):
    arr = np.ascontiguousarray(arr)
    if arr.ndim != 1:
        raise TypeError("only 1-D arrays are written")
    return np.array, (_FromBuffer(arr.tobytes(), arr.dtype.str),)


def dumps_centers(centers: dict[int, np.ndarray]) -> bytes:
    """Pickle ``{int: float32 ndarray}`` so that NumPy 1.x and 2.x both load it.

    The arrays are written as ``numpy.array(numpy.frombuffer(bytes, "<f4"))``: only the top-level names
    ``numpy.array`` and ``numpy.frombuffer`` are referenced, never ``numpy._core`` / ``numpy.core``.
    """
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=4)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table[np.ndarray] = _reduce_ndarray
    pickler.dump({int(k): np.asarray(v, dtype=np.float32) for k, v in centers.items()})
    return buf.getvalue()


def load_centers(path: str | os.PathLike) -> dict[int, np.ndarray]:
    """Read a ``train_center.pkl`` (ours or PaddleOCR's). Pickle runs code: only open trusted files."""
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _limited(items: list, limit: int = MAX_LISTED) -> list:
    return items[:limit]


def _sidecar(sums: CenterSums, info: dict[str, Any], stats: dict[str, Any], out: Path,
             unreadable: list, problems: list, characters: list[str] | None) -> dict[str, Any]:
    covered = np.flatnonzero(sums.counts)
    side = {
        "format": CENTERS_FORMAT,
        "center_file": out.name,
        "feat_dim": sums.feat_dim,
        "num_classes": sums.num_classes,
        "center_loss": {"num_classes": sums.num_classes, "feat_dim": sums.feat_dim,
                        "center_file_path": str(out)},
        **{k: v for k, v in info.items() if k not in ("feat_dim", "num_classes")},
        **stats,
        "counts": {str(int(k)): int(sums.counts[k]) for k in covered},
    }
    if characters is not None:
        side["chars"] = {str(int(k)): ("<blank>" if k == 0 else characters[k]) for k in covered}
    side["unreadable_images"] = [{"path": p, "reason": r} for p, r in _limited(unreadable)]
    side["label_problems"] = [str(p) for p in _limited(problems)]
    return side


def write_centers(out: str | os.PathLike, sums: CenterSums, info: dict[str, Any], stats: dict[str, Any],
                  unreadable: list | None = None, problems: list | None = None,
                  characters: list[str] | None = None) -> Path:
    """Write ``out`` (the pickle) and ``out + ".json"`` (the sidecar) atomically; returns the sidecar path."""
    if not sums.counts.any():
        raise CenterDataError("no sample was recognized exactly, so there is nothing to average "
                              f"({stats.get('samples_used', 0)} used of {stats.get('samples', 0)}); "
                              "nothing written")
    out = Path(out)
    side_path = Path(str(out) + ".json")
    side = _sidecar(sums, info, stats, out, unreadable or [], problems or [], characters)
    atomic_write(out, dumps_centers(sums.centers()))
    atomic_write(side_path, json.dumps(side, ensure_ascii=False, indent=1) + "\n")
    return side_path


def write_shard(out: str | os.PathLike, run: CenterRun, characters: list[str] | None = None) -> None:
    """Partial sums and counts of one shard as ``.npz`` (arrays + a JSON string; no pickle)."""
    meta = {
        "format": SHARD_FORMAT, "shard": list(run.info["shard"]), "info": run.info, "stats": run.stats(),
        "unreadable": [list(x) for x in _limited(run.unreadable)],
        "label_problems": [str(p) for p in _limited(run.label_problems)],
        "characters": characters,
    }
    buf = io.BytesIO()
    np.savez(buf, sums=run.sums.sums, counts=run.sums.counts, meta=np.array(json.dumps(meta, ensure_ascii=False)))
    atomic_write(out, buf.getvalue())


def _check_npz_headers(path: str | os.PathLike) -> None:
    """Refuse a member whose ``.npy`` header claims more (or less) data than the member holds, before
    numpy allocates what the header claims; and compressed members (``write_shard`` stores them), so
    that memory stays bounded by the file size."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # 0x1: encrypted
                raise CenterDataError(f"{path}: member {info.filename} is compressed or encrypted; "
                                      "export-center --shard writes plain .npz files")
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise CenterDataError(f"{path}: member {info.filename} has .npy version {version}")
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if dtype.hasobject or fh.tell() + claimed != info.file_size:
                    raise CenterDataError(f"{path}: member {info.filename} claims {claimed} bytes of {dtype} "
                                          f"{shape} but holds {info.file_size - fh.tell()}")


def _check_shard_meta(path: str | os.PathLike, sums: np.ndarray, counts: np.ndarray, meta: Any) -> None:
    """Everything :func:`merge_shards` and the merge-centers report read from a shard, checked."""
    def bad(what: str) -> CenterDataError:
        return CenterDataError(f"{path}: malformed shard ({what})")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(meta, dict):
        raise bad("metadata is not a JSON object")
    if meta.get("format") != SHARD_FORMAT:
        raise CenterDataError(f"{path}: unknown shard format {meta.get('format')!r}")
    shard, info, stats = meta.get("shard"), meta.get("info"), meta.get("stats")
    if not (isinstance(shard, list) and len(shard) == 2 and all(map(is_int, shard)) and 0 <= shard[0] < shard[1]):
        raise bad(f"shard {shard!r} is not [index, count]")
    if not isinstance(info, dict) or not isinstance(stats, dict):
        raise bad("info/stats missing")
    for key in ("feat_dim", "num_classes", "dictionary_size"):
        if not is_int(info.get(key)) or info[key] < 0:
            raise bad(f"info.{key} {info.get(key)!r}")
    if not isinstance(info.get("use_space_char"), bool) or not isinstance(info.get("dictionary_source"), str):
        raise bad("info.use_space_char / info.dictionary_source")
    if not is_int(stats.get("samples_total")) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in stats.values()):
        raise bad("stats must be numbers, with samples_total")
    unreadable, problems, chars = meta.get("unreadable"), meta.get("label_problems"), meta.get("characters")
    if not isinstance(unreadable, list) or not all(
            isinstance(x, list) and len(x) == 2 and all(isinstance(y, str) for y in x) for x in unreadable):
        raise bad("unreadable must be [path, reason] pairs")
    if not isinstance(problems, list) or not all(isinstance(x, str) for x in problems):
        raise bad("label_problems must be strings")
    if chars is not None and not (isinstance(chars, list) and len(chars) == info["num_classes"]
                                  and all(isinstance(c, str) for c in chars)):
        raise bad("characters must be num_classes strings")
    if (sums.dtype != np.float64 or sums.shape != (info["num_classes"], info["feat_dim"])
            or counts.dtype.kind not in "iu" or counts.shape != (sums.shape[0],) or (counts < 0).any()):
        raise bad(f"arrays sums {sums.dtype}{list(sums.shape)}, counts {counts.dtype}{list(counts.shape)} do not "
                  f"match num_classes {info['num_classes']} x feat_dim {info['feat_dim']}")


def load_shard(path: str | os.PathLike) -> tuple[CenterSums, dict[str, Any]]:
    """Read a shard written by :func:`write_shard`: no pickle (``allow_pickle=False``), every ``.npy``
    header checked against its member's size before reading, the metadata checked field by field."""
    try:
        _check_npz_headers(path)
        with np.load(path, allow_pickle=False) as z:
            sums, counts, meta = z["sums"], z["counts"], json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CenterDataError(f"{path}: not a center shard written by export-center --shard "
                              f"({type(exc).__name__}: {exc})") from None
    _check_shard_meta(path, sums, counts, meta)
    return CenterSums(sums, counts.astype(np.int64)), meta


# Run parameters that must agree between shards (everything that changes which frames are counted).
_SHARD_KEYS = ("feat_dim", "num_classes", "dictionary_sha256", "use_space_char", "model_sha256",
               "image_shape", "eval_mode", "max_text_length", "allow_outside_data_dir", "label_sha256")


@dataclass
class MergeResult:
    sums: CenterSums
    info: dict[str, Any]
    stats: dict[str, Any]
    shards: int
    missing: list[int]
    unreadable: list
    problems: list
    characters: list[str] | None


def merge_shards(paths: Sequence[str | os.PathLike], allow_partial: bool = False) -> MergeResult:
    """Sum shard partials after checking they come from the same model, dictionary, options and labels."""
    if not paths:
        raise CenterDataError("no shard files given")
    total: CenterSums | None = None
    first_meta: dict[str, Any] | None = None
    seen: dict[int, str] = {}
    stats: dict[str, Any] = {}
    unreadable: list = []
    for path in paths:
        sums, meta = load_shard(path)
        info = meta["info"]
        index, count = meta["shard"]
        if first_meta is None:
            first_meta, total = meta, CenterSums.zeros(sums.num_classes, sums.feat_dim)
        ref = first_meta["info"]
        for key in _SHARD_KEYS:
            if info.get(key) != ref.get(key):
                raise CenterDataError(f"{path} does not match {paths[0]}: {key} differs "
                                      f"({info.get(key)!r} vs {ref.get(key)!r})")
        if count != first_meta["shard"][1]:
            raise CenterDataError(f"{path} is shard {index}/{count}, {paths[0]} is of {first_meta['shard'][1]}")
        if index in seen:
            raise CenterDataError(f"shard {index}/{count} given twice: {seen[index]} and {path}")
        seen[index] = str(path)
        total.merge(sums)
        for k, v in meta["stats"].items():
            if k in ("samples_total", "classes_covered"):
                continue
            stats[k] = stats.get(k, 0) + v
        unreadable.extend(tuple(x) for x in meta["unreadable"])
    assert first_meta is not None and total is not None
    count = first_meta["shard"][1]
    missing = [i for i in range(count) if i not in seen]
    if missing and not allow_partial:
        raise CenterDataError(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing)}; "
                              "pass --allow-partial to merge what is there")
    stats["samples_total"] = first_meta["stats"]["samples_total"]
    stats["classes_covered"] = int(np.count_nonzero(total.counts))
    stats["seconds"] = round(stats.get("seconds", 0.0), 3)
    info = dict(first_meta["info"])
    info.pop("shard", None)
    info["shards"] = count
    if missing:
        info["missing_shards"] = missing
    return MergeResult(sums=total, info=info, stats=stats, shards=count, missing=missing,
                       unreadable=unreadable, problems=first_meta["label_problems"],
                       characters=first_meta.get("characters"))


# ------------------------------------------------------------------------------------------ one call


def export_centers(model: str | os.PathLike | onnx.ModelProto, label_files: Sequence[str | os.PathLike],
                   data_dir: str | os.PathLike, out: str | os.PathLike,
                   dict_path: str | os.PathLike | None = None, options: CenterOptions | None = None,
                   progress: bool = False, stream: TextIO | None = None) -> CenterRun:
    """Compute centers and write them: the pickle + JSON sidecar, or with ``options.shard`` an ``.npz``."""
    opts = options or CenterOptions()
    out = Path(out)
    if opts.shard is not None and out.suffix != ".npz":
        raise CenterDataError(f"with a shard the output is partial sums: name it *.npz, not {out.name}")
    if opts.shard is None and out.suffix == ".npz":
        raise CenterDataError(f"{out.name}: .npz is for --shard partial sums; write the centers to a .pkl")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise NcnnpassError(f"output directory does not exist: {out.parent}")
    run = compute_centers(model, label_files, data_dir, dict_path, opts, progress=progress, stream=stream)
    if opts.shard is not None:
        write_shard(out, run, run.characters)
    else:
        info = {k: v for k, v in run.info.items() if k != "shard"}
        write_centers(out, run.sums, info, run.stats(), run.unreadable, run.label_problems, run.characters)
    return run
