"""Decoded strings on rendered Latin text lines, ncnn (on a target) against onnxruntime (``compare --text-lines``).

Renders ``n`` seeded text lines (Pillow, DejaVu fonts when installed), preprocesses them as PaddleOCR's
``RecResizeImg`` does (at the model's one width), and runs them through the measurement core's task
evaluation (:mod:`ncnnpass.passes.measure.task_eval`: onnxruntime and the ncnn model on each target, ``x86``,
``arm`` = the emulated phone, ..., decoded with greedy CTC and compared by the rec metric); reports per target
how many strings are identical to onnxruntime's, the largest confidence change, the largest probability
difference, and examples of the strings that differ. The built-in Chinese and Latin lines and ``--images``
go through the same evaluation (``compare``'s task section).

>>> rep = text_lines("rec.onnx", [LineModel("x86", graph), LineModel("phone", graph, "arm")], n=8)
>>> rep.targets[1].identical, rep.targets[1].max_conf_change
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.runtime.targets import describe_target, normalize_target

__all__ = ["LineModel", "LineResult", "TargetLines", "TextLinesReport", "render_line", "line_texts",
           "line_inputs", "decode_line", "text_lines", "DEFAULT_LINES"]

DEFAULT_LINES = 8
# Letters, digits and a little punctuation: every PP-OCR Latin/Chinese dictionary has them.
LINE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
PUNCT = ".,:-/()%"
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
         "DejaVuSansCondensed.ttf")
Progress = Callable[[str], None] | None


def render_line(text: str, size: int = 32, font: str = "DejaVuSans.ttf", fg: int = 20, bg: int = 245,
                pad: int = 6) -> np.ndarray:
    """A dark-on-light text line as a BGR uint8 image (H x W x 3), cropped with ``pad`` pixels of margin
    (rendered by the measurement core; Pillow's built-in font when ``font`` is not installed)."""
    from ncnnpass.passes.measure.synth.fonts import FontFace, find_font
    from ncnnpass.passes.measure.synth.render import render_text

    path = find_font(font)
    return render_text(text, FontFace(font, path) if path else None, size, fg, bg, pad)


def line_texts(n: int, seed: int = 0, alphabet: str | None = None, min_len: int = 4, max_len: int = 14) -> list[str]:
    """``n`` seeded strings: words of letters/digits with some punctuation and spaces."""
    rng = random.Random(seed)
    chars = alphabet or LINE_CHARS
    out = []
    for _ in range(n):
        k = rng.randint(min_len, max_len)
        s = "".join(rng.choice(chars) for _ in range(k))
        if k > 6 and rng.random() < 0.5:  # a space or punctuation inside
            i = rng.randint(2, k - 3)
            s = s[:i] + rng.choice(" " + PUNCT) + s[i + 1:]
        out.append(s)
    return out


def line_inputs(texts: Sequence[str], shape: tuple[int, int, int] = (3, 48, 320), seed: int = 0
                ) -> list[np.ndarray]:
    """Render each text (seeded font, size, contrast, light noise) and preprocess it like PaddleOCR
    (``RecResizeImg``: height ``H``, [-1, 1], zero right padding to ``W``): ``1 x C x H x W`` float32 each."""
    from ncnnpass.passes.measure.rec_preprocess import resize_norm_img

    rng = np.random.default_rng(seed)
    out = []
    for text in texts:
        font = FONTS[int(rng.integers(len(FONTS)))]
        fg, bg = int(rng.integers(0, 80)), int(rng.integers(170, 256))
        img = render_line(text, size=int(rng.integers(24, 41)), font=font, fg=fg, bg=bg).astype(np.float32)
        img += rng.normal(0.0, 6.0, img.shape).astype(np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        x, _ = resize_norm_img(img, shape)
        out.append(x[None])
    return out


def decode_line(probs: np.ndarray, characters: Sequence[str] | None) -> tuple[str, float]:
    """Greedy CTC decoding of one ``T x classes`` probability matrix: (text, confidence), as
    :func:`ncnnpass.passes.measure.ctc_decode.greedy_decode`. Without a dictionary the kept class ids are
    spelled ``<id>``."""
    from ncnnpass.passes.measure.ctc_decode import greedy_decode

    return greedy_decode(probs, characters)


@dataclass
class LineModel:
    """An ncnn model to run on the lines: a label (``x86``, ``phone``, ``phone after repair``), the graph,
    the target and the option set (ncnn's defaults unless told)."""

    label: str
    graph: Graph
    target: str = "x86"
    options: str | dict = "default"


@dataclass
class LineResult:
    text: str
    confidence: float
    max_abs: float  # max |ncnn - onnxruntime| over the line's probabilities


@dataclass
class TargetLines:
    """One model on one target, against onnxruntime, over every line."""

    label: str
    target: str
    options: str
    lines: list[LineResult]
    reference: list[tuple[str, float]]
    seconds: float = 0.0

    @property
    def identical(self) -> int:
        return sum(r.text == ref for r, (ref, _) in zip(self.lines, self.reference, strict=True))

    @property
    def agreement(self) -> float:
        return self.identical / len(self.lines) if self.lines else 1.0

    @property
    def max_conf_change(self) -> float:
        return max((abs(r.confidence - c) for r, (_, c) in zip(self.lines, self.reference, strict=True)), default=0.0)

    @property
    def max_abs(self) -> float:
        return max((r.max_abs for r in self.lines), default=0.0)

    def differences(self, limit: int = 5) -> list[tuple[int, str, str]]:
        """(line index, onnxruntime string, ncnn string) of the lines that decode differently."""
        out = [(i, ref, r.text) for i, (r, (ref, _)) in enumerate(zip(self.lines, self.reference, strict=True))
               if r.text != ref]
        return out[:limit]

    def to_dict(self) -> dict:
        return {"label": self.label, "target": self.target, "options": self.options, "lines": len(self.lines),
                "identical": self.identical, "agreement": self.agreement, "max_conf_change": self.max_conf_change,
                "max_abs": self.max_abs, "seconds": self.seconds,
                "differences": [{"line": i, "onnxruntime": a, "ncnn": b} for i, a, b in self.differences(20)],
                "per_line": [{"text": r.text, "confidence": r.confidence, "max_abs": r.max_abs} for r in self.lines]}


@dataclass
class TextLinesReport:
    shape: tuple[int, int, int]
    seed: int
    texts: list[str]  # what was rendered
    reference: list[tuple[str, float]]  # onnxruntime: (decoded, confidence) per line
    targets: list[TargetLines] = field(default_factory=list)
    dictionary: bool = True  # False: strings are class-id sequences
    notes: list[str] = field(default_factory=list)  # e.g. what the phone repair did

    @property
    def reference_accuracy(self) -> float:
        """Share of lines onnxruntime reads exactly as rendered (how hard the lines are; not a precision number)."""
        return sum(t == r for t, (r, _) in zip(self.texts, self.reference, strict=True)) / max(1, len(self.texts))

    def to_dict(self) -> dict:
        return {"lines": len(self.texts), "shape": list(self.shape), "seed": self.seed, "texts": self.texts,
                "dictionary": self.dictionary, "onnxruntime": [{"text": t, "confidence": c} for t, c in self.reference],
                "onnxruntime_reads_rendered_text": self.reference_accuracy, "notes": self.notes,
                "targets": [t.to_dict() for t in self.targets]}

    def render(self) -> list[str]:
        """Text lines for the terminal report."""
        out = [f"decoded strings on {len(self.texts)} rendered text lines ({'x'.join(map(str, self.shape))}, seed "
               f"{self.seed}; onnxruntime reads {self.reference_accuracy:.0%} of them as rendered):"]
        w = max([len(t.label) for t in self.targets] + [5])
        for t in self.targets:
            out.append(f"  {t.label:<{w}}  {describe_target(t.target):<28} strings identical {t.identical}/"
                       f"{len(t.lines)} ({t.agreement:.1%})  max confidence change {t.max_conf_change:.2e}  "
                       f"max |prob diff| {t.max_abs:.2e}  ({t.seconds:.0f}s)")
            for i, a, b in t.differences(3):
                out.append(f"      line {i}: onnxruntime {a!r} vs ncnn {b!r}")
        out += [f"  {n}" for n in self.notes]
        return out


def text_lines(onnx_path: str | os.PathLike, models: Sequence[LineModel], n: int = DEFAULT_LINES, *,
               shape: tuple[int, int, int] = (3, 48, 320), seed: int = 0, dictionary: Sequence[str] | None = None,
               workers: int = 2, progress: Progress = None) -> TextLinesReport:
    """Render ``n`` lines, decode them with onnxruntime and with every model, and compare the strings.

    ``dictionary``: the recognizer's character list (default: the ONNX metadata ``character``, as RapidOCR
    stores it); it must fit the class count (blank + dictionary [+ space]), else strings are class ids."""
    from ncnnpass.passes.compare.inputs import _ncnn_input_shape
    from ncnnpass.passes.measure.ctc_decode import Charset, dictionary_from_metadata
    from ncnnpass.passes.measure.model_input import ModelInput
    from ncnnpass.passes.measure.samples import DataSet, Provenance, Sample
    from ncnnpass.passes.measure.task_data import TaskData
    from ncnnpass.passes.measure.task_eval import Side, evaluate

    if n < 1:
        raise NcnnpassError(f"--text-lines needs at least one line (got {n})")
    if len(shape) != 3 or shape[0] != 3 or min(shape) < 1:
        raise NcnnpassError(f"text lines need a 3-channel image input C,H,W (a recognizer), not "
                            f"{'x'.join(map(str, shape))}")
    onnx_path = os.fspath(onnx_path)
    if dictionary is None:
        import onnx

        dictionary = dictionary_from_metadata(onnx.load(onnx_path, load_external_data=False))
    for m in models:
        declared = _ncnn_input_shape(m.graph)
        if declared is not None and len(declared) == 3 and tuple(declared) != tuple(shape):
            raise NcnnpassError(f"{m.label}: the ncnn model declares input {'x'.join(map(str, declared))}, the lines "
                                f"are {'x'.join(map(str, shape))}: give shape={declared}")
    texts = line_texts(n, seed)
    xs = line_inputs(texts, shape, seed)
    (progress or (lambda _m: None))(f"text lines: {n} rendered at {'x'.join(map(str, shape))}")
    samples = [Sample(Provenance("rendered-lines", "text lines", seed=seed, index=i, key=f"text-lines:{seed}:{i}"),
                      text=t) for i, t in enumerate(texts)]
    inputs = [ModelInput(s, x, tuple(shape[1:])) for s, x in zip(samples, xs, strict=True)]  # type: ignore[arg-type]
    data = DataSet(samples, "rendered-lines", f"{n} rendered Latin lines, seed {seed}")
    task = TaskData("rec", data, "all", samples, inputs, seed, dictionary=list(dictionary) if dictionary else None)
    sides = [Side.onnxruntime(onnx_path)] + [Side(m.label, graph=m.graph, target=normalize_target(m.target),
                                                  options=m.options) for m in models]
    rep = evaluate(task, sides, workers=workers, progress=progress)
    classes = int(next(o for o in rep.sides[0].outputs if o is not None).shape[-1])
    charset = Charset.fitting(task.dictionary, classes)
    reference = None
    report = None
    for m, pair in zip(models, rep.pairs, strict=True):
        if pair.result is None or pair.error:
            raise NcnnpassError(f"{m.label}: {pair.error}")
        per = pair.result.per_sample
        if report is None:
            reference = [(x["reference"], x["reference_confidence"]) for x in per]
            report = TextLinesReport(shape, seed, texts, reference, dictionary=charset is not None)
        lines = [LineResult(x["candidate"], x["candidate_confidence"], x["max_prob_diff"]) for x in per]
        run = next(r for r in rep.sides if r.label == m.label)
        opts = m.options if isinstance(m.options, str) else "custom"
        report.targets.append(TargetLines(m.label, normalize_target(m.target), opts, lines, reference, run.seconds))
    if report is None:  # no ncnn model: the reference alone
        ref = [o for o in rep.sides[0].outputs if o is not None]
        chars = charset.characters if charset is not None else None
        report = TextLinesReport(shape, seed, texts, [decode_line(p, chars) for p in ref],
                                 dictionary=charset is not None)
    return report
