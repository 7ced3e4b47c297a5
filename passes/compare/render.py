"""The terminal report of a comparison."""

from __future__ import annotations

import math
import os

from ncnnpass.ir.runtime.targets import describe_target

from .report import CompareReport, LayerRow, OptionRun

__all__ = ["render_text"]


def _e(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if v == 0:
        return "0"
    return f"{v:.1e}"


def _cos(v: float) -> str:
    if math.isnan(v):
        return "nan"
    return f"{v:.7f}"


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _shape(shape) -> str:
    return "×".join(map(str, shape))


def _table(rows: list[list[str]], header: list[str], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(header)]
    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def layer_table(run: OptionRun, brief: bool = False, padded: bool = False) -> list[str]:
    """Per-layer rows: cumulative error columns, then the isolated error (the layer fed ONNX tensors)."""
    first = run.first_divergence
    header = ["#", "layer", "type", "blob", "onnx tensor", "shape", "max abs", "mean abs", "max rel", "cosine",
              "min tol", "iso abs", "iso/range"]
    if padded:
        header += ["content", "padding"]
    header.append("")
    rows = []
    keep = _brief_rows(run) if brief else None
    for r in run.rows:
        if keep is not None and r.index not in keep:
            continue
        mark = ""
        if r is first:
            mark = "<< first divergence"
        elif r.divergent:
            mark = "<< diverges"
        elif r.jump:
            mark = "^ error jumps"
        cells = [str(r.index + 1), _cut(r.layer, 18), _cut(r.layer_type, 20), _cut(r.blob, 12), _cut(r.tensor, 26),
                 _shape(r.shape), _e(r.cum.max_abs), _e(r.cum.mean_abs), _e(r.cum.max_rel), _cos(r.cum.cosine),
                 _e(r.cum.min_tol), _e(r.iso.max_abs if r.iso else None), _e(r.iso.scaled if r.iso else None)]
        if padded:
            cells += [_e(r.content.max_abs if r.content else None), _e(r.padded.max_abs if r.padded else None)]
        cells.append(mark)
        rows.append(cells)
    right = {0, 6, 7, 8, 9, 10, 11, 12} | ({13, 14} if padded else set())
    return _table(rows, header, right)


def _brief_rows(run: OptionRun) -> set[int]:
    keep = set()
    for r in run.rows:
        if r.divergent or r.jump:
            keep.update({r.index - 1, r.index, r.index + 1})
    if run.rows:
        keep.update({0, run.rows[-1].index})
    return keep


def sweep_table(report: CompareReport) -> list[str]:
    header = ["option set", "what", "final max abs", "cosine", "argmax", "text", "diverging layers"]
    rows = []
    for name, run in report.runs.items():
        rec = run.rec[0] if run.rec else None
        argmax = f"{rec.agree}/{rec.timesteps}" if rec else "-"
        text = "-" if rec is None or rec.text_equal is None else ("same" if rec.text_equal else "DIFFERENT")
        d = run.divergent
        div = "-" if not run.isolated_done else (f"{len(d)} (first {d[0].layer})" if d else "0")
        same = run.identical_to or ("default" if run.identical_to_default else None)
        what = run.option.description + (f" [identical to {same} here]" if same else "")
        rows.append([name, _cut(what, 52), _e(run.final_max_abs), _cos(run.final_cosine), argmax, text, div])
    return _table(rows, header, {2, 3, 4})


def _rec_lines(run: OptionRun, padded: bool) -> list[str]:
    out = []
    for rec in run.rec:
        line = (f"recognition output {rec.blob}: per-timestep argmax agrees on {rec.agree}/{rec.timesteps} steps"
                + (f" (differs at {', '.join(map(str, rec.mismatched_steps[:10]))}"
                   + (" ..." if len(rec.mismatched_steps) > 10 else "") + ")" if rec.mismatched_steps else ""))
        out.append(line)
        if rec.text_ref is not None:
            eq = "equal" if rec.text_equal else "DIFFERENT"
            out.append(f"  decoded text {eq}: onnx {rec.text_ref!r}  ncnn {rec.text_ncnn!r}")
        if padded and rec.content_steps is not None:
            pad_steps = rec.timesteps - rec.content_steps
            out.append(f"  content timesteps 0..{rec.content_steps - 1}: {rec.agree_content}/{rec.content_steps} agree; "
                       f"padded timesteps: {rec.agree_padded}/{pad_steps} agree")
    return out


def _padded_lines(report: CompareReport, run: OptionRun) -> list[str]:
    inp = report.input
    if not inp.padded:
        return []
    out = [f"padded region: the image fills columns 0..{inp.content_width - 1} of {inp.array.shape[-1]}; "  # type: ignore[operator]
           "the rest is right padding (0 after normalization)"]
    outs = [r for r in run.rows if r.blob in run.outputs and r.content is not None and r.padded is not None]
    for r in outs:
        assert r.content is not None and r.padded is not None
        out.append(f"  output {r.blob}: max abs {_e(r.content.max_abs)} over content vs {_e(r.padded.max_abs)} over "
                   f"padding (mean {_e(r.content.mean_abs)} vs {_e(r.padded.mean_abs)})")
    worse = [r for r in run.rows if r.content and r.padded and r.padded.max_abs > 2 * r.content.max_abs
             and r.padded.max_abs > 0]
    if worse:
        out.append(f"  {len(worse)} of {len(run.rows)} tensors have more than twice the error over padding than "
                   f"over content (first: {worse[0].layer}, {worse[0].layer_type})")
    return out


def render_text(report: CompareReport, brief: bool = False) -> str:
    """The whole report (and the fixed model's, if ``--fix`` ran) as text."""
    lines = _render_one(report, brief)
    if report.fix_log:
        lines += ["", "== --fix =="]
        lines += [f"  {x}" for x in report.fix_log]
    if report.fixed is not None:
        lines += ["", "== after --fix =="]
        lines += _render_one(report.fixed, brief, header=False)
        before, after = report.default.final_max_abs, report.fixed.default.final_max_abs
        lines += ["", f"final output max abs error under default options: {_e(before)} before, {_e(after)} after --fix"]
    return "\n".join(lines) + "\n"


def _render_one(report: CompareReport, brief: bool, header: bool = True) -> list[str]:
    lines: list[str] = []
    mp = report.mapping
    if header:
        if report.target != "x86":
            lines.append(f"ncnn runs on: {describe_target(report.target)}")
        lines.append(f"onnx:  {report.onnx}")
        lines.append(f"ncnn:  {report.param}" + (f"  +  {os.path.basename(report.bin)}" if report.bin else ""))
        lines.append(f"input: {report.input.source}, {_shape(report.input.array.shape)}"
                     + (f" ({report.input.shape_note})" if report.input.shape_note else ""))
        chk = report.reference_check
        if chk is not None:
            note = "" if chk <= 1e-4 else "  << exposing every tensor changed onnxruntime's result: check the reference"
            lines.append(f"reference: onnxruntime, every tensor exposed, optimizations off; its output differs from a "
                         f"normal optimized session by {_e(chk)}{note}")
    by = ", ".join(f"{k} {v}" for k, v in mp.counts().items() if k != "unmapped")
    lines.append(f"mapping: {len(mp.mapped)}/{len(mp.blobs)} ncnn blobs mapped to ONNX tensors ({mp.coverage:.0%}; by {by})")
    for m in mp.unmapped:
        lines.append(f"  unmapped: blob {m.blob} ({m.layer or 'input'}, {m.layer_type or '-'}): {m.reason}")
    amb = [m for m in mp.mapped if m.ambiguous]
    for m in amb:
        lines.append(f"  ambiguous: blob {m.blob} -> {m.tensor} (equally close: {', '.join(m.alternatives[:3])})")
    odd = [m for m in mp.mapped if m.reason]
    for m in odd:
        lines.append(f"  note: blob {m.blob} -> {m.tensor}: {m.reason}")
    if report.cpu_fallback:
        names = ", ".join(f"{t} {n}" for n, t in report.cpu_fallback[:8]) + (" ..." if len(report.cpu_fallback) > 8
                                                                             else "")
        lines.append(f"on the CPU: {len(report.cpu_fallback)} layer(s) have no Vulkan implementation; ncnn runs them "
                     f"on the CPU (a download and upload around each): {names}")
    att = report.attribution
    if att.weighted_layers:
        if att.fp16_weight_layers:
            lines.append(f"weights: {len(att.fp16_weight_layers)} of {att.weighted_layers} weighted layers store fp16 "
                         "weights in the .bin")
        else:
            lines.append(f"weights: all {att.weighted_layers} weighted layers store fp32 weights in the .bin")
    run = report.default
    lines += ["", f"per-layer error under {run.name} options ({run.option.description}); cumulative = both runtimes "
              "end to end, iso = the layer alone fed the onnxruntime tensors (iso/range = iso abs / max|ort|)"]
    lines += ["  " + ln for ln in layer_table(run, brief, report.input.padded)]
    rec = _rec_lines(run, report.input.padded)
    pad = _padded_lines(report, run)
    if rec or pad:
        lines.append("")
        lines += rec + pad
    if len(report.runs) > 1:
        lines += ["", "option sweep (final output vs onnxruntime):"]
        lines += ["  " + ln for ln in sweep_table(report)]
    split = report.fp16_split
    if split is not None:
        lines += [""] + split_lines(split)
    if att.summary:
        lines += ["", "findings:"]
        lines += [f"  - {s}" for s in att.summary]
    if report.advice:
        lines += ["", "advice:"]
        for a in report.advice:
            who = f" on {', '.join(a.layers[:8])}" + (" ..." if len(a.layers) > 8 else "") if a.layers else ""
            lines.append(f"  - {a.action}{who}: {a.reason}")
        if any(a.action in ("gap-fc-to-conv", "keep-fp32") for a in report.advice) and report.fixed is None \
                and header:
            lines.append("  (run again with --fix to apply them and compare the result)")
    return lines


def split_lines(split: dict) -> list[str]:
    """The fp16 storage vs arithmetic attribution (:func:`ncnnpass.passes.compare.report.fp16_split`)."""
    fin = split["final_max_abs"]
    c = split["layer_counts"]
    if "packed" in split:  # the GPU sweep
        head = ["fp16 loss, packed vs storage vs arithmetic (+ uniform) (final max abs vs onnxruntime):",
                f"  fp32 {_e(fin['fp32'])} -> fp16 packed {_e(fin['fp16-packed'])} (packing adds "
                f"{_e(split['packed'])}) -> fp16 storage {_e(fin['fp16-storage'])} (storage adds {_e(split['storage'])})"
                f" -> fp16 storage + arithmetic {_e(fin['default'])} (arithmetic adds {_e(split['arithmetic'])})",
                f"  divergent layers: {c['packed']} from packing, {c['storage']} from storage, {c['arithmetic']} from "
                f"arithmetic, {c['neither']} from neither"]
    else:
        head = ["fp16 loss, storage vs arithmetic (final max abs vs onnxruntime):",
                f"  fp32 {_e(fin['fp32'])} -> fp16 storage {_e(fin['fp16-storage'])} (storage adds "
                f"{_e(split['storage'])}) -> fp16 storage + arithmetic {_e(fin['default'])} (arithmetic adds "
                f"{_e(split['arithmetic'])})",
                f"  divergent layers: {c['storage']} from storage, {c['arithmetic']} from arithmetic, "
                f"{c['neither']} from neither"]
    out = head
    worst = sorted((x for x in split["layers"] if x["isolated_scaled"]["default"] is not None),
                   key=lambda x: -x["isolated_scaled"]["default"])[:6]
    for x in worst:
        iso = x["isolated_scaled"]
        packed = f"{_e(iso['fp16-packed'])} packed only, " if "fp16-packed" in iso else ""
        out.append(f"    {x['layer']} ({x['type']}): iso/range {_e(iso['default'])} default, "
                   f"{_e(iso['fp16-storage'])} storage only, {packed}{_e(iso['fp32'])} fp32 -> {x['cause']}")
    return out


def rows_by_blob(run: OptionRun) -> dict[str, LayerRow]:
    return {r.blob: r for r in run.rows}
