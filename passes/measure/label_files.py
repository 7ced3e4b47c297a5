"""PaddleOCR recognition label files (``SimpleDataSet``): one ``image_path<TAB>label`` per line.

Paths are relative to a data directory (PaddleOCR joins ``data_dir`` and the path). Differences from
PaddleOCR, all reported rather than silent:

- Lines PaddleOCR would fail on at load time (no tab, empty path, not UTF-8) are listed as problems
  instead of being replaced by a random other sample. Blank lines are skipped.
- Absolute paths and paths that leave the data directory (``../``) are listed and skipped unless
  ``allow_outside`` is set (PaddleOCR follows them silently).
- A JSON list of paths (``["a.jpg", "b.jpg"]``, several images with one label) contributes every listed
  image; PaddleOCR picks one at random each time.
- Trailing ``\\r`` (CRLF files) is stripped from labels; extra tab-separated fields are ignored as in
  PaddleOCR.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["LabelLine", "LabelProblem", "LabelSet", "read_label_files"]


@dataclass(frozen=True)
class LabelLine:
    """One usable line of a label file (not a measurement sample: that is :class:`.samples.Sample`)."""

    path: str  #: data_dir joined with the label file's path
    label: str  #: the label text as written
    where: str  #: ``label_file:line``


@dataclass(frozen=True)
class LabelProblem:
    where: str
    kind: str  #: ``no-tab``, ``empty-path``, ``empty-label``, ``not-utf8``, ``outside-data-dir``, ...
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


@dataclass
class LabelSet:
    samples: list[LabelLine]
    problems: list[LabelProblem] = field(default_factory=list)
    lines: int = 0  #: non-blank lines read
    sha256: str = ""  #: digest of the label files' bytes, in order (identifies the sample list)


def _inside(path: str, root: str) -> bool:
    root = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(os.path.abspath(path))
    return os.path.commonpath([root, path]) == root


def read_label_files(label_files: list[str], data_dir: str, allow_outside: bool = False,
                     delimiter: str = "\t") -> LabelSet:
    """Parse label files in order; the samples' order is the files' order (shards rely on it)."""
    if not os.path.isdir(data_dir):
        raise NcnnpassError(f"data directory does not exist: {data_dir}")
    digest = hashlib.sha256()
    out = LabelSet(samples=[])
    for file in label_files:
        with open(file, "rb") as fh:  # a missing label file is a fatal FileNotFoundError
            raw = fh.read()
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
        for lineno, line_bytes in enumerate(raw.split(b"\n"), start=1):
            where = f"{file}:{lineno}"
            try:
                line = line_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                out.lines += 1
                out.problems.append(LabelProblem(where, "not-utf8", str(exc)))
                continue
            line = line.rstrip("\r")
            if not line.strip():
                continue
            out.lines += 1
            if delimiter not in line:
                out.problems.append(LabelProblem(where, "no-tab", f"no {delimiter!r} between path and label"))
                continue
            fields = line.split(delimiter)
            name, label = fields[0], fields[1]
            if not name:
                out.problems.append(LabelProblem(where, "empty-path", "the image path is empty"))
                continue
            if not label:
                out.problems.append(LabelProblem(where, "empty-label", "the label is empty"))
                continue
            names = [name]
            if name.startswith("["):
                try:
                    parsed = json.loads(name)
                except ValueError:
                    parsed = None
                if isinstance(parsed, list) and parsed and all(isinstance(p, str) for p in parsed):
                    names = parsed
            for rel in names:
                path = os.path.join(data_dir, rel)
                if os.path.isabs(rel) or not _inside(path, data_dir):
                    kind = "absolute-path" if os.path.isabs(rel) else "outside-data-dir"
                    out.problems.append(LabelProblem(
                        where, kind, f"{rel} is not inside {data_dir}"
                        + (" (followed: allow_outside)" if allow_outside else " (skipped)")))
                    if not allow_outside:
                        continue
                out.samples.append(LabelLine(path=path, label=label, where=where))
    out.sha256 = digest.hexdigest()
    return out
