"""Apply the advice to a copy of the graph (``compare --fix``).

Each advised action is a pass object from the registry, configured with typed options (the blamed
layer names go in as a list, so any name works) and run by ncnnpass's pass manager. InnerProducts
that ``gap-fc-to-conv`` cannot rewrite (not after global pooling) get ncnn's per-layer feature mask
``31=2`` instead, which keeps their weights in fp32.
"""

from __future__ import annotations

from ncnnpass.ir import Graph

from .report import AdviceItem

__all__ = ["apply_advice"]


def _describe(report) -> str:
    lines = [ln.rstrip() for ln in str(report).splitlines() if ln.strip()]
    return lines[0] + "".join("\n    " + ln for ln in lines[1:]) if lines else ""


def apply_advice(graph: Graph, advice: list[AdviceItem], input_shape: tuple[int, ...] | None = None
                 ) -> tuple[Graph, list[str]]:
    """A fixed copy of ``graph`` and a log of what was done (``input_shape``: ncnn (c, h, w) of the input)."""
    from ncnnpass.passes import apply_passes
    from ncnnpass.passes.registry import get_pass

    g = graph.copy()
    log: list[str] = []
    for item in advice:
        if item.action == "gap-fc-to-conv":
            report = apply_passes(g, [get_pass("gap-fc-to-conv")], input_shape=input_shape)
            names = {ly.name: ly for ly in g.layers}
            gone = [n for n in item.layers if n not in names or names[n].type != "InnerProduct"]
            log.append(f"gap-fc-to-conv: {_describe(report) or 'applied'}"
                       + (f" (rewrote {', '.join(gone)})" if gone else ""))
            left = [n for n in item.layers if n in names and names[n].type == "InnerProduct"]
            if left:
                for n in left:
                    names[n].featmask |= 2
                log.append(f"gap-fc-to-conv left {', '.join(left)} as InnerProduct: set 31=2 on them instead")
        elif item.action == "keep-fp32" and item.featmask:
            present = {ly.name for ly in g.layers}
            names = [n for n in item.layers if n in present]
            if not names:
                continue
            keep = get_pass("keep-fp32").configure(names=names, bits=item.featmask)
            report = apply_passes(g, [keep], input_shape=input_shape)
            log.append(f"keep-fp32: {keep.spec()}: {_describe(report) or 'applied'}")
    return g, log
