"""The Pareto curve of a search: fidelity against the share of MACs left in fp16, as JSON and PNG.

Every placement the search evaluated on the calibration part is a point; the front is the points no other
point beats on both axes (more fp16 and a lower score). The PNG plots the kind's headline number (rec: the
largest line-confidence change, det: 1 - F, cls: the largest score change) on a log axis against the fp16
share, passing points filled, the criteria's line dashed, the chosen point ringed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.fileio import atomic_write

from .search import Point

#: the number the plot shows per kind, and its label
AXIS = {"rec": ("max_conf_change", "largest line-confidence change"), "det": ("f", "1 - det F"),
        "cls": ("max_score_change", "largest score change")}


def front(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both fp16 share (higher) and score (lower), by share."""
    out = []
    for p in points:
        if not any(q.fp16_share >= p.fp16_share and q.verdict.score < p.verdict.score
                   or q.fp16_share > p.fp16_share and q.verdict.score <= p.verdict.score for q in points):
            out.append(p)
    return sorted(out, key=lambda p: p.fp16_share)


def _value(kind: str, p: Point) -> float | None:
    key = AXIS[kind][0]
    v = p.verdict.numbers.get(key)
    if v is None:
        return None
    return 1.0 - float(v) if kind == "det" else float(v)


def curve_dict(kind: str, points: Sequence[Point], chosen: Point | None = None, *,
               threshold: float | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    cal = [p for p in points if p.part == "calibration"]
    on_front = {id(p) for p in front(cal)}
    return {"kind": kind, "axis": AXIS[kind][1], "threshold": threshold, **(meta or {}),
            "chosen": chosen.to_dict() if chosen else None,
            "points": [{**p.to_dict(), "on_front": id(p) in on_front, "value": _value(kind, p)}
                       for p in sorted(cal, key=lambda p: p.fp16_share)]}


def write_curve(prefix: str | os.PathLike, kind: str, points: Sequence[Point], chosen: Point | None = None, *,
                threshold: float | None = None, title: str = "", meta: dict[str, Any] | None = None
                ) -> tuple[Path, Path]:
    """``PREFIX.json`` and ``PREFIX.png`` (atomically); returns both paths."""
    prefix = Path(prefix)
    data = curve_dict(kind, points, chosen, threshold=threshold, meta=meta)
    js = prefix.with_name(prefix.name + ".json")
    png = prefix.with_name(prefix.name + ".png")
    atomic_write(js, json.dumps(data, indent=1, default=str).encode())
    atomic_write(png, _plot(kind, data, title))
    return js, png


def _plot(kind: str, data: dict[str, Any], title: str) -> bytes:
    try:
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        raise NcnnpassError("the Pareto plot needs matplotlib (pip install matplotlib)") from None
    pts = [p for p in data["points"] if p["value"] is not None]
    floor = 1e-6
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for ok, style in ((True, dict(marker="o", color="tab:green", label="passes")),
                      (False, dict(marker="x", color="tab:red", label="fails"))):
        sel = [p for p in pts if p["ok"] == ok]
        if sel:
            ax.scatter([100 * p["fp16_share"] for p in sel], [max(p["value"], floor) for p in sel], **style)
    fr = [p for p in pts if p["on_front"]]
    if fr:
        ax.plot([100 * p["fp16_share"] for p in fr], [max(p["value"], floor) for p in fr], color="grey", lw=0.8,
                label="Pareto front")
    if data.get("threshold"):
        ax.axhline(data["threshold"], color="black", ls="--", lw=0.8, label="criterion")
    ch = data.get("chosen")
    if ch:
        v = ch["numbers"].get(AXIS[kind][0])
        if v is not None:
            v = 1.0 - v if kind == "det" else v
            ax.scatter([100 * ch["fp16_share"]], [max(v, floor)], s=160, facecolors="none", edgecolors="blue",
                       label="chosen")
    ax.set_yscale("log")
    ax.set_xlabel("MACs in fp16 (%)")
    ax.set_ylabel(data["axis"])
    ax.set_title(title or "fidelity vs fp16 share (calibration)", fontsize=9)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
