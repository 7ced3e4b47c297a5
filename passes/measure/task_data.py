"""The samples a task evaluation runs on, prepared for one model.

- **Source**: the user's ``--images`` (:func:`.image_sources.load_images`: a folder, a rec or a det label
  file, skips counted) or, when none is given, the built-in data (:mod:`.synth`: lines for rec and cls,
  pages for det), restricted to the model's dictionary.
- **Part** of the seeded calibration/held-out split (:mod:`.split`): ``all``, ``held-out`` or
  ``calibration``. For the built-in data the part is drawn directly: the first ``count`` samples whose
  split position falls in it (:func:`builtin_part`), the same ones ``split_samples`` would put there, so
  the held-out lines are never those a search calibrates on. Commands that only measure use every sample
  of the user's data and the built-in held-out part.
- **Preparation** exactly as PaddleOCR's inference does it, per kind (:func:`.prepare.prepare_for_model`):
  width-dynamic recognisers get each line at its own width, pages become their labelled line crops for
  rec and cls.
- **Label coverage**: label characters outside the recogniser's dictionary are counted and reported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ncnnpass.ir.errors import NcnnpassError

from .label_coverage import LabelCoverage, label_coverage
from .model_info import ModelInfo
from .model_input import ModelInput
from .prepare import prepare_for_model
from .samples import DataSet, Sample
from .split import split_position, split_samples

__all__ = ["PARTS", "TaskData", "TaskRequest", "builtin_part", "choose_part", "task_data", "default_count", "count_for"]

PARTS = ("all", "held-out", "calibration")
HELD_OUT_SHARE = 0.5
#: default sample counts of the measuring commands: a rec line costs ~40 ms on x86 and 5-15 s emulated
DEFAULT_COUNTS = {"x86": {"lines": 100, "pages": 10}, "phone": {"lines": 4, "pages": 1}}


def default_count(kind: str | None, target: str = "x86") -> int:
    """Default number of lines (rec, cls) or pages (det) for a measuring command on ``target``."""
    where = DEFAULT_COUNTS["phone" if str(target).startswith("arm") else "x86"]
    return where["pages" if kind == "det" else "lines"]


def count_for(kind: str | None, lines: int | None, pages: int | None) -> int | None:
    """The count a command's ``--lines N`` / ``--pages N`` sets for a model of ``kind`` (lines for rec and
    cls, pages for det); giving the other one is an error."""
    for name, value in (("--lines", lines), ("--pages", pages)):
        if value is not None and value < 1:
            raise NcnnpassError(f"{name} takes a positive number, got {value}")
    if kind == "det":
        if lines is not None:
            raise NcnnpassError("--lines counts text lines (rec and cls models); a detector is measured on "
                                "pages: give --pages N")
        return pages
    if pages is not None:
        raise NcnnpassError(f"--pages counts pages (det models); a {kind or 'recognition'} model is measured on "
                            "text lines: give --lines N")
    return lines


def _in_part(key: str, part: str, seed: int, held_out: float) -> bool:
    if part == "all":
        return True
    return (split_position(key, seed) < held_out) == (part == "held-out")


def builtin_part(kind: str, count: int, *, part: str = "held-out", seed: int = 0, held_out: float = HELD_OUT_SHARE,
                 dictionary: Sequence[str] | None = None) -> DataSet:
    """The first ``count`` built-in samples of ``kind`` (seed ``seed``) in ``part`` of the split (see the
    module docstring); ``dictionary`` restricts the characters."""
    from .synth import builtin_indexed, builtin_key

    if part not in PARTS:
        raise NcnnpassError(f"unknown part {part!r} (one of {', '.join(PARTS)})")
    if count < 1:
        raise NcnnpassError(f"built-in data: need at least one sample (got {count})")
    if part != "all" and not (0.0 < held_out < 1.0):
        raise NcnnpassError(f"held-out share must be within (0, 1) to draw the {part} part, got {held_out}")
    form = "builtin-pages" if kind == "det" else "builtin-lines"
    chosen: list[int] = []
    i = 0
    while len(chosen) < count:
        if _in_part(builtin_key(form, seed, i), part, seed, held_out):
            chosen.append(i)
        i += 1
    data = builtin_indexed(kind, chosen, seed, dictionary=dictionary)
    if part != "all":
        data.source = f"{data.source}, {part} part"
    return data


def choose_part(data: DataSet, part: str = "all", *, count: int | None = None, seed: int = 0,
                held_out: float = HELD_OUT_SHARE) -> list[Sample]:
    """The samples of ``data`` in ``part`` (``split_samples`` with ``seed``), the first ``count`` of them."""
    if part not in PARTS:
        raise NcnnpassError(f"unknown part {part!r} (one of {', '.join(PARTS)})")
    samples = list(data.samples)
    if part != "all":
        split = split_samples(samples, held_out, seed)
        samples = split.held_out if part == "held-out" else split.calibration
    return samples[:count] if count is not None else samples


@dataclass
class TaskData:
    """Samples prepared for one model (see the module docstring)."""

    kind: str
    data: DataSet  #: what was loaded or drawn, with the skip counts
    part: str
    samples: list[Sample]  #: the samples of the part
    inputs: list[ModelInput]  #: prepared for the model (pages cut into lines for rec and cls)
    seed: int = 0
    coverage: LabelCoverage | None = None
    dictionary: list[str] | None = None  #: the recogniser's characters (decoding; None: class ids)

    @property
    def builtin(self) -> bool:
        return self.data.form.startswith("builtin")

    def describe(self) -> list[str]:
        """What the evaluation runs on, skips and label coverage included."""
        text = f"data: {self.data.describe()}"
        if self.part != "all" and not self.builtin:
            text += f"; {len(self.samples)} in the {self.part} part (seed {self.seed})"
        elif len(self.samples) != len(self.data.samples):
            text += f"; the first {len(self.samples)}"
        if len(self.inputs) != len(self.samples):
            text += f"; {len(self.inputs)} {'pages' if self.kind == 'det' else 'lines'} measured"
        out = [text]
        if self.coverage is not None and not self.coverage.complete:
            out.append(f"data: {self.coverage.describe()}")
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "form": self.data.form, "source": str(self.data.source),
                               "part": self.part, "seed": self.seed, "samples": len(self.samples),
                               "inputs": len(self.inputs), "skipped": self.data.skipped,
                               "skip_reasons": list(self.data.reasons)}
        if self.coverage is not None:
            out["labels_outside_dictionary"] = {"characters": dict(self.coverage.characters),
                                                "labels": self.coverage.labels, "affected": self.coverage.affected,
                                                "first": list(self.coverage.first)}
        return out


def task_data(info: ModelInfo, images: str | os.PathLike | None = None, *, count: int | None = None,
              part: str | None = None, seed: int = 0, held_out: float = HELD_OUT_SHARE,
              data_dir: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
              static_width: int | None = None) -> TaskData:
    """Load or draw the samples and prepare them for the model ``info`` describes (see the module docstring).

    ``images``: the user's ``--images`` (None: the built-in data, ``count`` samples, default
    :func:`default_count`); ``part``: default ``all`` for the user's data and ``held-out`` for the built-in
    data; ``model_dir``: where the detector's ``inference.yml`` is; ``static_width``: the recogniser's input
    width when the ncnn model was converted for one width only (lines are then fitted to it)."""
    if info.kind not in ("rec", "det", "cls"):
        raise NcnnpassError("cannot tell whether the model is rec, det or cls: it cannot be measured on text")
    if images is not None:
        from .image_sources import load_images

        data = load_images(images, data_dir)
        part = part or "all"
        samples = choose_part(data, part, count=count, seed=seed, held_out=held_out)
        if not samples:
            raise NcnnpassError(f"--images {images}: none of its {len(data.samples)} samples fall in the {part} "
                                f"part (seed {seed})")
    else:
        part = part or "held-out"
        data = builtin_part(info.kind, count or default_count(info.kind), part=part, seed=seed, held_out=held_out,
                            dictionary=info.dictionary if info.kind == "rec" else None)
        samples = list(data.samples)
    model = info
    if static_width is not None and info.kind == "rec":
        c, h, _ = info.input_shape
        model = replace(info, input_shape=(c, h, int(static_width)), dynamic=(info.dynamic[0], False))
    inputs = prepare_for_model(samples, model, model_dir, data=data)
    if not inputs:
        what = "text lines (labelled boxes)" if info.kind != "det" else "readable pages"
        detail = f" ({data.skipped} skipped: {'; '.join(data.reasons)})" if data.skipped else ""
        raise NcnnpassError(f"no {what} to measure in {data.source}{detail}")
    coverage = None
    if info.kind == "rec" and info.dictionary:
        coverage = label_coverage(samples, info.dictionary)
    return TaskData(info.kind, data, part, samples, inputs, seed, coverage, info.dictionary)


@dataclass(frozen=True)
class TaskRequest:
    """What a command's ``--images PATH`` / ``--lines N`` / ``--pages N`` / ``--seed N`` ask for, resolved
    against the model once its kind is known (:meth:`load`)."""

    images: str | None = None
    lines: int | None = None
    pages: int | None = None
    seed: int = 0
    data_dir: str | None = None

    @classmethod
    def from_args(cls, args: Any) -> TaskRequest:
        """From an argparse namespace with ``images``, ``lines``, ``pages`` (and optionally ``seed``)."""
        return cls(getattr(args, "images", None), getattr(args, "lines", None), getattr(args, "pages", None),
                   int(getattr(args, "seed", 0) or 0), getattr(args, "data_dir", None))

    def check(self) -> None:
        """Fail early on what is wrong whatever the model (a missing path, a count below 1)."""
        for name, value in (("--lines", self.lines), ("--pages", self.pages)):
            if value is not None and value < 1:
                raise NcnnpassError(f"{name} takes a positive number, got {value}")
        if self.images is not None and not os.path.exists(self.images):
            raise NcnnpassError(f"--images {self.images}: no such file or directory")

    def load(self, info: ModelInfo, *, target: str = "x86", model_dir: str | os.PathLike | None = None,
             static_width: int | None = None) -> TaskData:
        """:func:`task_data` with the count for ``info.kind`` (:func:`count_for`, default
        :func:`default_count` on ``target``; with ``--images`` every sample unless a count is given)."""
        count = count_for(info.kind, self.lines, self.pages)
        if count is None and self.images is None:
            count = default_count(info.kind, target)
        return task_data(info, self.images, count=count, seed=self.seed, data_dir=self.data_dir,
                         model_dir=model_dir, static_width=static_width)
