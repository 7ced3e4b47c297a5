"""The center files a run ends with: ``train_center.pkl`` (readable by NumPy 1.x and 2.x) and its JSON
sidecar (what was counted, from which model, dictionary and labels)."""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ncnnpass.ir.fileio import atomic_files

from .center_sums import CenterDataError, CenterSums

__all__ = ["CENTERS_FORMAT", "MAX_LISTED", "dumps_centers", "limited", "load_centers", "write_centers"]

CENTERS_FORMAT = "ncnnpass-centers/1"

MAX_LISTED = 10000  # problems kept in the JSON sidecar / shard metadata


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


def limited(items: list, limit: int = MAX_LISTED) -> list:
    """The first ``limit`` items: what a sidecar or shard lists of a long problem list."""
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
    side["unreadable_images"] = [{"path": p, "reason": r} for p, r in limited(unreadable)]
    side["label_problems"] = [str(p) for p in limited(problems)]
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
    with atomic_files([out, side_path]) as (pkl, meta):  # renamed together: never a pickle with a stale sidecar
        pkl.write(dumps_centers(sums.centers()))
        meta.write((json.dumps(side, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    return side_path
