"""The accumulated result of a center run: per-class feature sums (:class:`CenterSums`) and the run
report around them (:class:`CenterRun`), shared by the computation and the file formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.passes.measure.label_files import LabelProblem

__all__ = ["CenterDataError", "CenterRun", "CenterSums"]


class CenterDataError(NcnnpassError):
    """The samples, shards or options cannot produce centers (empty set, mismatched shards, ...)."""


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
