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

This module runs the computation; the pieces live in :mod:`.center_model` (model and dictionary),
:mod:`.center_sums` (the result), :mod:`.center_files` (pickle + sidecar), :mod:`.center_shards`
(``.npz`` shards, merging), :mod:`.image_loading` and :mod:`.progress`. The public names of all of them
are re-exported here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import onnx

from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes.measure.image_loading import load_sample, ordered_loads
from ncnnpass.passes.measure.label_files import LabelLine, LabelProblem, read_label_files
from ncnnpass.passes.measure.onnx_runner import onnx_session

from .center_files import dumps_centers, load_centers, write_centers
from .center_model import PreparedModel, prepare_model, resolve_charset, resolve_image_shape
from .center_shards import MergeResult, load_shard, merge_shards, write_shard
from .center_sums import CenterDataError, CenterRun, CenterSums
from .progress import Progress

__all__ = [
    "CenterDataError", "CenterOptions", "CenterRun", "CenterSums", "MergeResult", "FEATURE_MODE",
    "Progress", "PreparedModel", "compute_centers", "dumps_centers", "export_centers", "load_centers",
    "load_shard", "merge_shards", "parse_shard", "prepare_model", "write_centers", "write_shard",
]

FEATURE_MODE = ("inference mode: BatchNorm running statistics, no dropout (PaddleOCR's "
                "tools/export_center.py runs the model in training mode: batch statistics, dropout)")


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


# ------------------------------------------------------------------------------------------ run


def _session(model: onnx.ModelProto, providers: Sequence[str] | None, threads: int):
    return onnx_session(model, num_threads=threads or None, providers=providers)


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
    image_shape = resolve_image_shape(pm, opts.image_shape, opts.eval_mode)
    charset, dict_origin, space_inferred = resolve_charset(pm, dict_path, opts.use_space_char)

    labels = read_label_files([str(f) for f in label_files], str(data_dir), opts.allow_outside_data_dir)
    problems = list(labels.problems)
    usable: list[tuple[LabelLine, str]] = []
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
    present: list[tuple[LabelLine, str]] = []
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

    def load(item: tuple[LabelLine, str]) -> tuple[np.ndarray | None, str | None]:
        return load_sample(item[0], image_shape, opts.eval_mode)

    window = max(2 * opts.batch_size, 8)
    for (s, text), (arr, err) in zip(present, ordered_loads(present, load, opts.workers, window),
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
