"""Shard files of a split center run: float64 partial sums and counts in an ``.npz`` (no pickle), read
back defensively (:func:`load_shard`) and combined into one result (:func:`merge_shards`)."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncnnpass.ir.fileio import atomic_write

from .center_files import limited
from .center_sums import CenterDataError, CenterRun, CenterSums

__all__ = ["SHARD_FORMAT", "MergeResult", "load_shard", "merge_shards", "write_shard"]

SHARD_FORMAT = "ncnnpass-center-shard/1"


def write_shard(out: str | os.PathLike, run: CenterRun, characters: list[str] | None = None) -> None:
    """Partial sums and counts of one shard as ``.npz`` (arrays + a JSON string; no pickle)."""
    meta = {
        "format": SHARD_FORMAT, "shard": list(run.info["shard"]), "info": run.info, "stats": run.stats(),
        "unreadable": [list(x) for x in limited(run.unreadable)],
        "label_problems": [str(p) for p in limited(run.label_problems)],
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
    """Summed shards, their shared run parameters and summed stats, and which shards were missing."""

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
