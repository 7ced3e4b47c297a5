"""The data a comparison produces (:class:`CompareReport`) and its JSON form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .inputs import PreparedInput
from .mapping import MappingResult
from .metrics import Metrics
from .ncnn_side import OptionSet

__all__ = ["LayerRow", "RecCheck", "OptionRun", "Carrier", "Attribution", "AdviceItem", "CompareReport", "fp16_split"]


def _num(v: float | None) -> float | None:
    if v is None or not isinstance(v, float):
        return v
    return v if math.isfinite(v) else None


@dataclass
class LayerRow:
    """One mapped blob under one option set."""

    index: int  # position among the rows (topological)
    blob: str
    layer: str
    layer_type: str
    params: str  # the layer's params as written in the .param
    tensor: str
    how: str
    shape: tuple[int, ...]  # ncnn
    onnx_shape: tuple[int, ...]
    layout: str
    cum: Metrics
    iso: Metrics | None = None
    divergent: bool = False  # the layer's own (isolated) error is above the divergence threshold
    jump: bool = False  # the cumulative error jumps here (>= jump factor over its inputs)
    content: Metrics | None = None  # image inputs: columns with real content
    padded: Metrics | None = None  # image inputs: columns of right padding

    def to_dict(self) -> dict:
        return {
            "index": self.index, "blob": self.blob, "layer": self.layer, "type": self.layer_type,
            "params": self.params, "onnx_tensor": self.tensor, "mapped_by": self.how,
            "shape": list(self.shape), "onnx_shape": list(self.onnx_shape), "layout": self.layout,
            "cumulative": self.cum.to_dict(), "isolated": self.iso.to_dict() if self.iso else None,
            "divergent": self.divergent, "jump": self.jump,
            "content_region": self.content.to_dict() if self.content else None,
            "padded_region": self.padded.to_dict() if self.padded else None,
        }


@dataclass
class RecCheck:
    """Recognition output: per-timestep argmax agreement and decoded strings."""

    blob: str
    timesteps: int
    classes: int
    agree: int
    mismatched_steps: list[int]
    text_ref: str | None = None
    text_ncnn: str | None = None
    content_steps: int | None = None  # image inputs: timesteps over real content (the rest is padding)
    agree_content: int | None = None
    agree_padded: int | None = None

    @property
    def agreement(self) -> float:
        return self.agree / self.timesteps if self.timesteps else 1.0

    @property
    def text_equal(self) -> bool | None:
        if self.text_ref is None or self.text_ncnn is None:
            return None
        return self.text_ref == self.text_ncnn

    def to_dict(self) -> dict:
        return {"blob": self.blob, "timesteps": self.timesteps, "classes": self.classes,
                "argmax_agree": self.agree, "argmax_agreement": self.agreement,
                "mismatched_steps": self.mismatched_steps, "text_onnx": self.text_ref, "text_ncnn": self.text_ncnn,
                "text_equal": self.text_equal, "content_steps": self.content_steps,
                "argmax_agree_content": self.agree_content, "argmax_agree_padded": self.agree_padded}


@dataclass
class OptionRun:
    """Everything measured under one option set."""

    option: OptionSet
    rows: list[LayerRow]
    outputs: dict[str, Metrics]  # graph outputs (ncnn blob -> metrics)
    rec: list[RecCheck] = field(default_factory=list)
    identical_to_default: bool = False
    isolated_done: bool = True
    seconds: float = 0.0
    identical_to: str | None = None  # an earlier option set whose every blob is bit-identical (its rows reused)

    @property
    def name(self) -> str:
        return self.option.name

    @property
    def final_max_abs(self) -> float:
        return max((m.max_abs for m in self.outputs.values()), default=0.0)

    @property
    def final_cosine(self) -> float:
        return min((m.cosine for m in self.outputs.values()), default=1.0)

    @property
    def divergent(self) -> list[LayerRow]:
        return [r for r in self.rows if r.divergent]

    @property
    def first_divergence(self) -> LayerRow | None:
        d = self.divergent
        return d[0] if d else None

    def row(self, blob: str) -> LayerRow | None:
        for r in self.rows:
            if r.blob == blob:
                return r
        return None

    def to_dict(self) -> dict:
        first = self.first_divergence
        return {
            "name": self.name, "fields": self.option.dict, "description": self.option.description,
            "identical_to_default": self.identical_to_default, "identical_to": self.identical_to,
            "final_max_abs": _num(self.final_max_abs), "final_cosine": _num(self.final_cosine),
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
            "first_divergence": first.layer if first else None,
            "divergent_layers": [r.layer for r in self.divergent],
            "recognition": [r.to_dict() for r in self.rec],
            "rows": [r.to_dict() for r in self.rows], "seconds": self.seconds,
        }


@dataclass
class Carrier:
    """A layer that carries (part of) the loss under the default options."""

    layer: str
    layer_type: str
    params: str
    blob: str
    iso_default: float  # scaled isolated error under default
    iso_best: float  # under the option set that removes it
    after_global_pooling: bool = False
    fp16_weights: bool = False

    def to_dict(self) -> dict:
        return {"layer": self.layer, "type": self.layer_type, "params": self.params, "blob": self.blob,
                "isolated_scaled_default": _num(self.iso_default), "isolated_scaled_best": _num(self.iso_best),
                "after_global_pooling": self.after_global_pooling, "fp16_weights": self.fp16_weights}


@dataclass
class Attribution:
    cause: str | None = None  # option set that removes the loss
    fields: list[str] = field(default_factory=list)  # individual ncnn.Option fields responsible
    carriers: list[Carrier] = field(default_factory=list)
    fp16_weight_layers: list[str] = field(default_factory=list)  # weights stored fp16 in the .bin
    weighted_layers: int = 0
    notes: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"cause_option_set": self.cause, "responsible_fields": self.fields,
                "carriers": [c.to_dict() for c in self.carriers],
                "fp16_weight_layers": self.fp16_weight_layers, "weighted_layers": self.weighted_layers,
                "notes": self.notes, "summary": self.summary}


@dataclass
class AdviceItem:
    action: str  # a pass name ("gap-fc-to-conv", "keep-fp32"), "runtime-option" or "reconvert"
    layers: list[str]
    reason: str
    featmask: int | None = None

    def to_dict(self) -> dict:
        return {"action": self.action, "layers": self.layers, "reason": self.reason, "featmask": self.featmask}


@dataclass
class CompareReport:
    onnx: str
    param: str
    bin: str | None
    input: PreparedInput
    mapping: MappingResult
    runs: dict[str, OptionRun]
    attribution: Attribution
    advice: list[AdviceItem]
    timings: dict[str, float] = field(default_factory=dict)
    title: str = "original model"
    fixed: CompareReport | None = None
    fix_log: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    # max |optimized onnxruntime session - the all-tensors, optimizations-off run| on the outputs
    reference_check: float | None = None
    target: str = "x86"  # where ncnn ran (ncnnpass.ir.runtime.targets)
    # decoded strings on rendered text lines (text_lines.TextLinesReport), when asked for
    text_lines: object | None = None
    # what users see on real text (measure.task_eval.TaskReport), when measured
    task: object | None = None
    # on the Vulkan target: (layer, type) that ncnn runs on the CPU for want of a Vulkan implementation
    cpu_fallback: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fp16_split(self) -> dict | None:
        """The fp16 loss split into storage and arithmetic (needs the default, fp16-storage and fp32 runs)."""
        return fp16_split(self.runs, self.thresholds)

    @property
    def default(self) -> OptionRun:
        return self.runs["default"]

    def to_dict(self) -> dict:
        mp = self.mapping
        return {
            "title": self.title, "onnx": self.onnx, "param": self.param, "bin": self.bin,
            "input": self.input.to_dict(), "thresholds": self.thresholds,
            "reference_check": _num(self.reference_check),
            "mapping": {
                "blobs": len(mp.blobs), "mapped": len(mp.mapped), "coverage": mp.coverage, "by": mp.counts(),
                "pairs": [{"blob": m.blob, "layer": m.layer, "type": m.layer_type, "onnx_tensor": m.tensor,
                           "mapped_by": m.how, "layout": m.layout.describe() if m.layout else None,
                           "fit": _num(m.fit), "aliases": m.aliases, "alternatives": m.alternatives, "fused": m.fused,
                           "note": m.reason or None} for m in mp.blobs],
                "unmapped": [{"blob": m.blob, "layer": m.layer, "type": m.layer_type, "reason": m.reason}
                             for m in mp.unmapped],
            },
            "runs": {k: v.to_dict() for k, v in self.runs.items()},
            "attribution": self.attribution.to_dict(),
            "advice": [a.to_dict() for a in self.advice],
            "fix_log": self.fix_log,
            "fixed": self.fixed.to_dict() if self.fixed else None,
            "timings": self.timings, "target": self.target, "fp16_split": self.fp16_split,
            "no_vulkan_implementation": [{"layer": n, "type": t} for n, t in self.cpu_fallback],
            "text_lines": self.text_lines.to_dict() if self.text_lines is not None else None,  # type: ignore[attr-defined]
            "task": self.task.to_dict() if self.task is not None else None,  # type: ignore[attr-defined]
        }


def _iso(row: LayerRow | None) -> float | None:
    return row.iso.scaled if row is not None and row.iso is not None else None


def fp16_split(runs: dict[str, OptionRun], thresholds: dict[str, float] | None = None) -> dict | None:
    """Attribute the fp16 loss to storage or arithmetic from three runs: ``default`` (both), ``fp16-storage``
    (storage only) and ``fp32`` (neither). Final output: arithmetic = default - fp16-storage, storage =
    fp16-storage - fp32 (errors do not add exactly: the split is indicative). Per divergent layer (isolated
    error): *arithmetic* when turning fp16 arithmetic off removes it, *storage* when only fp32 does.

    With an ``fp16-packed`` run too (the GPU sweep: half pairs in 4-wide blobs, fp32 elsewhere), storage splits
    further: *packed* = fp16-packed - fp32 (the rounding of packed blobs alone), storage = fp16-storage -
    fp16-packed; a layer is *storage* when fp16-packed removes its error, *packed* when only fp32 does. On the
    GPU "arithmetic" includes fp16 uniform (ncnn drops it with arithmetic; it has no option of its own here)."""
    d, s, f = runs.get("default"), runs.get("fp16-storage"), runs.get("fp32")
    if d is None or s is None or f is None or not s.isolated_done:
        return None
    p = runs.get("fp16-packed")
    if p is not None and not p.isolated_done:
        p = None
    th = {"divergence": 1e-5, "fix_factor": 10.0, **(thresholds or {})}

    def removes(before: float | None, after: float | None) -> bool:
        return (before is not None and after is not None
                and (after <= th["divergence"] or after * th["fix_factor"] <= before))

    layers = []
    for r in d.divergent:
        a, b, c = _iso(r), _iso(s.row(r.blob)), _iso(f.row(r.blob))
        iso = {"default": _num(a), "fp16-storage": _num(b), "fp32": _num(c)}
        if p is None:
            cause = "arithmetic" if removes(a, b) else "storage" if removes(a, c) else "neither"
        else:
            q = _iso(p.row(r.blob))
            iso["fp16-packed"] = _num(q)
            cause = ("arithmetic" if removes(a, b) else "storage" if removes(a, q) else "packed" if removes(a, c)
                     else "neither")
        layers.append({"layer": r.layer, "type": r.layer_type, "blob": r.blob, "cause": cause,
                       "isolated_scaled": iso})
    total, storage, floor = d.final_max_abs, s.final_max_abs, f.final_max_abs
    kinds = ("storage", "arithmetic", "neither") if p is None else ("packed", "storage", "arithmetic", "neither")
    counts = {k: sum(x["cause"] == k for x in layers) for k in kinds}
    finals = {"default": _num(total), "fp16-storage": _num(storage), "fp32": _num(floor)}
    out = {"final_max_abs": finals, "storage": _num(max(storage - floor, 0.0)),
           "arithmetic": _num(max(total - storage, 0.0)), "layer_counts": counts, "layers": layers}
    if p is not None:
        packed = p.final_max_abs
        finals["fp16-packed"] = _num(packed)
        out["packed"] = _num(max(packed - floor, 0.0))
        out["storage"] = _num(max(storage - packed, 0.0))
    return out
