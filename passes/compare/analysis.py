"""From raw tensors to findings: per-layer rows, divergence, recognition checks, attribution, advice."""

from __future__ import annotations

import math

import numpy as np

from ncnnpass.ir import Graph, Layer

from .inputs import PreparedInput
from .mapping import MappingResult
from .metrics import Metrics, RefStats, compute_metrics
from .report import AdviceItem, Attribution, Carrier, LayerRow, OptionRun, RecCheck

__all__ = ["THRESHOLDS", "build_rows", "rec_checks", "attribute", "advise", "fp16_weight_layers",
           "after_global_pooling", "FIELD_FEATMASK"]

THRESHOLDS = {
    # a layer diverges when its isolated error exceeds this fraction of its output's range (max |ort|);
    # fp32 kernels stay near 1e-7..1e-6 on the PaddleOCR models, fp16 weights land near 1e-4..1e-3
    "divergence": 1e-5,
    # the cumulative error "jumps" at a layer when it is this many times its inputs' error
    "jump_factor": 10.0,
    # an option set removes a layer's loss when its isolated error drops by this factor (or below divergence)
    "fix_factor": 10.0,
}

# ncnn.Option fields -> the per-layer feature mask bit (param 31) that turns the path off for one layer
FIELD_FEATMASK = {
    "use_fp16_storage": 2, "use_fp16_packed": 2, "use_fp16_arithmetic": 1,
    "use_bf16_storage": 4, "use_bf16_packed": 4,
    "use_sgemm_convolution": 32, "use_winograd_convolution": 64,
    "use_winograd23_convolution": 64, "use_winograd43_convolution": 64, "use_winograd63_convolution": 64,
}


def _params_text(layer: Layer) -> str:
    return " ".join(layer.params.tokens())


def width_axis(onnx_shape: tuple[int, ...], seq_len: int | None) -> int | None:
    """The axis of an ONNX tensor that runs along the text line's width, if it can be told."""
    if len(onnx_shape) == 4:
        return 3
    if len(onnx_shape) == 3 and seq_len:
        hits = [k for k in (1, 2) if onnx_shape[k] == seq_len]
        return hits[0] if len(hits) == 1 else None
    return None


def _region_metrics(actual: np.ndarray, ref: np.ndarray, axis: int, in_width: int, content_width: int
                    ) -> tuple[Metrics | None, Metrics | None]:
    """Metrics over the columns that see real content and over those that see only padding."""
    n = ref.shape[axis]
    stride = in_width / n
    first_pad = min(n, int(math.ceil(content_width / stride)))
    if first_pad <= 0 or first_pad >= n:
        return None, None
    a_c = np.take(actual, range(first_pad), axis=axis)
    r_c = np.take(ref, range(first_pad), axis=axis)
    a_p = np.take(actual, range(first_pad, n), axis=axis)
    r_p = np.take(ref, range(first_pad, n), axis=axis)
    return compute_metrics(a_c, r_c), compute_metrics(a_p, r_p)


def build_rows(graph: Graph, mapping: MappingResult, values: dict[str, np.ndarray],
               iso_values: dict[str, np.ndarray] | None, ref_vals: dict[str, np.ndarray],
               prepared: PreparedInput, seq_len: int | None, thresholds: dict[str, float] | None = None,
               stats: dict[str, RefStats] | None = None) -> list[LayerRow]:
    """One row per mapped, computed blob, in topological order (``stats``: a cache of reference statistics
    shared between option sets)."""
    stats = stats if stats is not None else {}
    th = {**THRESHOLDS, **(thresholds or {})}
    rows: list[LayerRow] = []
    cum_scaled: dict[str, float] = {}
    for m in mapping.blobs:
        if m.layer is None:
            cum_scaled[m.blob] = 0.0
    in_width = int(prepared.array.shape[-1])
    for m in mapping.mapped:
        if m.layer is None or m.blob not in values:
            continue
        assert m.layout is not None and m.tensor is not None
        layer = graph.layer(m.layer)
        ref = ref_vals[m.tensor]
        st = stats.get(m.tensor)
        if st is None:
            st = stats[m.tensor] = RefStats.of(ref)
        actual = m.layout.ncnn_to_onnx(values[m.blob])
        cum = compute_metrics(actual, st)
        cum_scaled[m.blob] = cum.scaled
        iso = None
        if iso_values is not None and m.blob in iso_values:
            iso = compute_metrics(m.layout.ncnn_to_onnx(iso_values[m.blob]), st)
        inherited = max((cum_scaled.get(b, 0.0) for b in layer.inputs), default=0.0)
        jump = cum.scaled > th["divergence"] and cum.scaled >= th["jump_factor"] * max(inherited, 1e-12)
        if iso is not None:
            divergent = iso.scaled > th["divergence"]
        else:
            divergent = jump
        row = LayerRow(len(rows), m.blob, layer.name, layer.type, _params_text(layer), m.tensor, m.how,
                       tuple(values[m.blob].shape), tuple(ref.shape), m.layout.describe(), cum, iso,
                       divergent, jump)
        if prepared.padded:
            axis = width_axis(tuple(ref.shape), seq_len)
            if axis is not None:
                row.content, row.padded = _region_metrics(actual, ref, axis, in_width, prepared.content_width or 0)
        rows.append(row)
    return rows


def charset_for(dictionary: list[str] | None, classes: int):
    """PaddleOCR's character set if the dictionary fits ``classes`` (blank + dict [+ space])."""
    if not dictionary:
        return None
    from ncnnpass.passes.measure.ctc_decode import Charset

    if classes == len(dictionary) + 2:
        return Charset(dictionary, True)
    if classes == len(dictionary) + 1:
        return Charset(dictionary, False)
    return None


def rec_checks(graph: Graph, mapping: MappingResult, values: dict[str, np.ndarray], ref_vals: dict[str, np.ndarray],
               dictionary: list[str] | None, prepared: PreparedInput) -> list[RecCheck]:
    """Argmax agreement (and decoded text) for outputs shaped like recognition scores (1, T, classes)."""
    out = []
    by_blob = mapping.by_blob()
    for b in graph.outputs:
        m = by_blob.get(b)
        if m is None or not m.mapped or b not in values or m.layout is None or m.tensor is None:
            continue
        ref = ref_vals[m.tensor]
        if ref.ndim != 3 or ref.shape[0] != 1 or ref.shape[2] < 2:
            continue
        actual = m.layout.ncnn_to_onnx(values[b])
        ia, ir = actual[0].argmax(-1), ref[0].argmax(-1)
        t, c = int(ref.shape[1]), int(ref.shape[2])
        mism = [int(k) for k in np.nonzero(ia != ir)[0]]
        chk = RecCheck(b, t, c, t - len(mism), mism)
        cs = charset_for(dictionary, c)
        if cs is not None:
            chk.text_ref = cs.decode(ir)[0]
            chk.text_ncnn = cs.decode(ia)[0]
        if prepared.padded:
            stride = prepared.array.shape[-1] / t
            steps = min(t, int(math.ceil((prepared.content_width or 0) / stride)))
            chk.content_steps = steps
            chk.agree_content = int(np.count_nonzero(ia[:steps] == ir[:steps]))
            chk.agree_padded = int(np.count_nonzero(ia[steps:] == ir[steps:]))
        out.append(chk)
    return out


def fp16_weight_layers(graph: Graph) -> tuple[list[str], int]:
    """Layers whose weights are stored fp16 in the .bin, and the number of layers with weights."""
    fp16, weighted = [], 0
    for ly in graph.layers:
        if not ly.weights:
            continue
        weighted += 1
        if any(w.tagged and w.storage == "fp16" for w in ly.weights.values()):
            fp16.append(ly.name)
    return fp16, weighted


def after_global_pooling(graph: Graph, layer: Layer) -> bool:
    """An InnerProduct fed (through other InnerProducts) by a global Pooling (``4=1``)."""
    seen = set()
    cur: Layer | None = layer
    while cur is not None and cur.type == "InnerProduct" and cur.name not in seen:
        seen.add(cur.name)
        if len(cur.inputs) != 1:
            return False
        cur = graph.blobs[cur.inputs[0]].producer
    return cur is not None and cur.type == "Pooling" and int(cur.get(4, 0)) == 1


def _fixed(row_default: LayerRow, row_other: LayerRow | None, th: dict[str, float]) -> bool:
    if row_other is None or row_other.iso is None or row_default.iso is None:
        return False
    return (row_other.iso.scaled <= th["divergence"]
            or row_other.iso.scaled * th["fix_factor"] <= row_default.iso.scaled)


def attribute(graph: Graph, runs: dict[str, OptionRun], thresholds: dict[str, float] | None = None) -> Attribution:
    """Which option set removes the loss under default options, and which layers carry it."""
    th = {**THRESHOLDS, **(thresholds or {})}
    att = Attribution()
    att.fp16_weight_layers, att.weighted_layers = fp16_weight_layers(graph)
    default = runs["default"]
    divergent = default.divergent
    fp16w = set(att.fp16_weight_layers)
    best: tuple[int, float, str] | None = None
    for name, run in runs.items():
        if name == "default" or not run.isolated_done:
            continue
        n_fixed = sum(_fixed(r, run.row(r.blob), th) for r in divergent)
        if n_fixed and (best is None or (n_fixed, -run.final_max_abs) > (best[0], -best[1])):
            best = (n_fixed, run.final_max_abs, name)
    if best is not None and best[1] < default.final_max_abs:
        att.cause = best[2]
    cause_run = runs.get(att.cause) if att.cause else None
    for r in divergent:
        other = cause_run.row(r.blob) if cause_run else None
        if cause_run is not None and not _fixed(r, other, th):
            continue
        layer = graph.layer(r.layer)
        iso_best = other.iso.scaled if other is not None and other.iso is not None else float("nan")
        att.carriers.append(Carrier(r.layer, r.layer_type, r.params, r.blob,
                                    r.iso.scaled if r.iso else r.cum.scaled, iso_best,
                                    after_global_pooling(graph, layer), r.layer in fp16w))
    unexplained = [r for r in divergent if r.layer not in {c.layer for c in att.carriers}]
    if unexplained:
        att.notes.append(f"{len(unexplained)} divergent layer(s) keep their error under every option set: "
                         + ", ".join(f"{r.layer} ({r.layer_type})" for r in unexplained[:8])
                         + (" ..." if len(unexplained) > 8 else ""))
    for name, run in runs.items():
        if name != "default" and run.identical_to_default:
            att.notes.append(f"option set {name!r} ({run.option.description}) gives bit-identical results to the "
                             "defaults here: that path is not used by this ncnn build/CPU for this model")
    return att


def summarize(report_default: OptionRun, att: Attribution, runs: dict[str, OptionRun]) -> list[str]:
    """Plain-language findings, most important first."""
    lines: list[str] = []
    d = report_default
    first = d.first_divergence
    if first is None:
        lines.append(f"No layer diverges under default options (final max abs error {d.final_max_abs:.2g}).")
    else:
        iso = first.iso.scaled if first.iso else first.cum.scaled
        lines.append(f"First divergence under default options: layer {first.layer} ({first.layer_type} "
                     f"{first.params}) -> blob {first.blob} = ONNX {first.tensor}; its own error is "
                     f"{iso:.1e} of its output range.")
        if len(d.divergent) > 1:
            names = ", ".join(f"{r.layer} ({r.layer_type})" for r in d.divergent[:8])
            more = f" and {len(d.divergent) - 8} more" if len(d.divergent) > 8 else ""
            lines.append(f"{len(d.divergent)} layers diverge on their own: {names}{more}.")
    if att.cause:
        run = runs[att.cause]
        what = ", ".join(att.fields) if att.fields else run.option.description
        carriers = ", ".join(c.layer for c in att.carriers[:8]) + (" ..." if len(att.carriers) > 8 else "")
        lines.append(f"The loss is carried by {len(att.carriers)} layer(s) [{carriers}] and disappears with option "
                     f"set {att.cause!r} ({run.option.description}): final error {d.final_max_abs:.2g} -> "
                     f"{run.final_max_abs:.2g}. Attributed to {what}.")
    elif d.divergent:
        lines.append("No option set removes the divergence.")
    if att.fp16_weight_layers:
        lines.append(f"Weights are stored fp16 in the .bin for {len(att.fp16_weight_layers)} of "
                     f"{att.weighted_layers} weighted layers: no runtime option restores them "
                     "(reconvert with fp16 off, e.g. pnnx fp16=0).")
    for name, run in runs.items():
        if name in ("default", att.cause):
            continue
        if run.identical_to_default:
            continue
        ratio = run.final_max_abs / d.final_max_abs if d.final_max_abs > 0 else float("inf")
        if ratio > 3:
            lines.append(f"Option set {name!r} ({run.option.description}) makes it worse: final error "
                         f"{run.final_max_abs:.2g} ({ratio:.0f}x the default).")
    lines.extend(att.notes)
    return lines


def advise(graph: Graph, att: Attribution, runs: dict[str, OptionRun], target: str = "x86") -> list[AdviceItem]:
    """The ncnnpass passes (or runtime options) that address what was found (on ``target``)."""
    items: list[AdviceItem] = []
    if target.startswith("arm") and runs["default"].divergent:
        items.append(AdviceItem(
            "repair-for-phone", [],
            "on a phone, per-layer fp32 masks (31=) must sit where ncnn's fp16/fp32 transitions are safe (a mask "
            f"next to fp16 layers can crash ncnn on ARM): ncnnpass run --pipeline repair --target {target} "
            "searches them and proves them on this emulated CPU"))
    fields = list(att.fields)
    cause = att.cause
    if cause is not None and not fields:
        fields = [k for k, v in runs[cause].option.dict.items() if isinstance(v, bool) and not v]
    carriers = [c for c in att.carriers if cause is not None]
    fp16_storage = any(f in ("use_fp16_storage", "use_fp16_packed") for f in fields)
    remaining = list(carriers)
    if fp16_storage:
        gap = [c for c in carriers if c.layer_type == "InnerProduct" and c.after_global_pooling]
        if gap:
            items.append(AdviceItem(
                "gap-fc-to-conv", [c.layer for c in gap],
                "InnerProduct after global pooling runs with fp16-converted weights under fp16 storage (x86 F16C, "
                "ARM): rewriting the block as adaptive pooling + 1x1 Convolution keeps fp32 weights and the same "
                "speed (ncnnpass run --passes gap-fc-to-conv)"))
            remaining = [c for c in carriers if c not in gap]
    bits = 0
    for f in fields:
        bits |= FIELD_FEATMASK.get(f, 0)
    phone = target.startswith("arm")
    if remaining and bits and phone and items and items[0].action == "repair-for-phone":
        items[0].layers = [c.layer for c in remaining]  # the repair search places these masks safely
    elif remaining and bits:
        items.append(AdviceItem(
            "keep-fp32", [c.layer for c in remaining],
            f"keep these layers off the reduced-precision path with ncnn's per-layer feature mask 31={bits} "
            "(ncnnpass pass keep-fp32)", featmask=bits))
    elif remaining and cause is not None:
        items.append(AdviceItem(
            "runtime-option", [c.layer for c in remaining],
            f"no per-layer mask covers option set {cause!r}: set {runs[cause].option.description} in "
            "ncnn.Option before loading"))
    if att.fp16_weight_layers:
        items.append(AdviceItem(
            "reconvert", att.fp16_weight_layers[:20],
            "weights are stored fp16 in the .bin: reconvert with fp16 off (pnnx ... fp16=0); "
            "runtime options cannot restore the lost bits"))
    bf = runs.get("bf16")
    if bf is not None and not bf.identical_to_default and bf.final_max_abs > 3 * runs["default"].final_max_abs:
        items.append(AdviceItem("runtime-option", [], "keep use_bf16_storage off (bf16 loses precision on every layer)"))
    return items
