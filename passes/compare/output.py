"""Files a comparison writes: JSON, ``.npz`` of both sides' tensors, and a PNG of per-layer error."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np

from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.fileio import atomic_write

from .report import CompareReport

__all__ = ["write_json", "save_npz", "load_npz", "plot_png"]


def write_json(report: CompareReport, path: str) -> None:
    text = json.dumps(report.to_dict(), indent=1, ensure_ascii=False, allow_nan=False, default=_jsonable)
    atomic_write(path, (text + "\n").encode("utf-8"))


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def save_npz(report: CompareReport, path: str) -> None:
    """Both sides' tensors for offline comparison: ``input``, ``onnx/<tensor>``, ``ncnn/<option set>/<blob>``
    and ``meta`` (JSON: the blob mapping with layouts, option sets, input description)."""
    tensors = getattr(report, "tensors", {}) or {}
    if "onnx" not in tensors or "ncnn" not in tensors:
        raise NcnnpassError("the report holds no tensors: run the comparison with keep_tensors=True")
    arrays: dict[str, np.ndarray] = {"input": report.input.array}
    mapped = {m.tensor for m in report.mapping.mapped}
    for name, arr in tensors["onnx"].items():
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and name in mapped:
            arrays[f"onnx/{name}"] = arr
    for opt, vals in tensors["ncnn"].items():
        for blob, arr in vals.items():
            arrays[f"ncnn/{opt}/{blob}"] = arr
    meta = {
        "onnx": report.onnx, "param": report.param, "bin": report.bin, "input": report.input.to_dict(),
        "option_sets": {k: v.option.dict for k, v in report.runs.items()},
        "mapping": [{"blob": m.blob, "layer": m.layer, "type": m.layer_type, "onnx_tensor": m.tensor,
                     "onnx_shape": list(m.layout.onnx_shape) if m.layout else None,
                     "ncnn_shape": list(m.layout.ncnn_shape) if m.layout else None,
                     "perm": list(m.layout.perm) if m.layout and m.layout.perm is not None else None}
                    for m in report.mapping.mapped],
    }
    arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=False))
    from ncnnpass.ir.fileio import atomic_open

    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)  # uncompressed: float noise does not compress, and zlib is slow


def load_npz(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``(meta, arrays)`` from a file written by :func:`save_npz`."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    return meta, arrays


def plot_png(report: CompareReport, path: str) -> None:
    """Per-layer error (log scale) for every option set: cumulative on top, isolated below."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NcnnpassError("--plot needs matplotlib (pip install matplotlib)") from None
    runs = list(report.runs.values())
    if report.fixed is not None:
        fixed_default = report.fixed.default
    else:
        fixed_default = None
    base = report.default
    n = len(base.rows)
    fig, axes = plt.subplots(2, 1, figsize=(max(10.0, min(20.0, n * 0.12)), 8.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2]})
    floor = 1e-10
    palette = ["tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
    pos = {r.tensor: r.index for r in base.rows}
    others = [r for r in runs if r.name != "default"]
    for k, run in enumerate([*others, base]):
        is_default = run is base
        color = "black" if is_default else palette[k % len(palette)]
        xs = [pos.get(r.tensor, r.index) for r in run.rows]
        cum = [max(r.cum.max_abs, floor) for r in run.rows]
        label = f"{run.name}: final {run.final_max_abs:.1e}" + (" (= default)" if run.identical_to_default else "")
        axes[0].plot(xs, cum, "-", color=color, lw=2.2 if is_default else 1.1, zorder=5 if is_default else 3,
                     alpha=1.0 if is_default else 0.85, label=label)
        if run.isolated_done:
            pts = [(x, r.iso.max_abs) for x, r in zip(xs, run.rows, strict=True) if r.iso is not None and r.iso.max_abs > 0]
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], "o", ms=4.5 if is_default else 3.0, color=color,
                         alpha=1.0 if is_default else 0.7, zorder=5 if is_default else 3, label=run.name)
    if fixed_default is not None:
        pts = sorted((pos[r.tensor], max(r.cum.max_abs, floor)) for r in fixed_default.rows if r.tensor in pos)
        if pts:
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], "--", color="tab:blue", lw=2.0, zorder=6,
                         label=f"default after --fix: final {fixed_default.final_max_abs:.1e}")
    for r in base.divergent:
        for ax in axes:
            ax.axvline(r.index, color="red", alpha=0.25, lw=3)
    first = base.first_divergence
    if first is not None:
        axes[0].annotate(f"first divergence: {first.layer} ({first.layer_type})", xy=(first.index, max(first.cum.max_abs, floor)),
                         xytext=(10, 18), textcoords="offset points", color="red", fontsize=9,
                         bbox={"boxstyle": "round", "fc": "white", "ec": "red", "alpha": 0.85},
                         arrowprops={"arrowstyle": "->", "color": "red"}, zorder=10)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].set_ylabel("cumulative max |ncnn - onnxruntime|")
    axes[1].set_ylabel("isolated max abs error\n(layer fed onnxruntime tensors;\nexact layers not shown)")
    axes[0].legend(fontsize=8, loc="upper left", ncol=2)
    axes[1].legend(fontsize=8, loc="upper left", ncol=3)
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    step = max(1, n // 40)
    ticks = list(range(0, n, step))
    axes[1].set_xticks(ticks)
    axes[1].set_xticklabels([f"{base.rows[i].layer}" for i in ticks], rotation=70, ha="right", fontsize=7)
    axes[1].set_xlabel("layer (topological order)")
    title = f"{os.path.basename(report.onnx)} vs {os.path.basename(report.param)} - input {report.input.source}"
    if report.target != "x86":
        from ncnnpass.ir.runtime.targets import describe_target

        title += f" - ncnn on {describe_target(report.target)}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
