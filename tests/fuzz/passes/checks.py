"""What must hold for a graph after any pass sequence, behind one function.

:func:`graph_problems` runs the IR verifier (``ncnnpass.ir.verifier.verify_graph``) and the round trips:
``copy()`` writes the same ``.param`` text and ``.bin`` bytes as the graph, and so does the graph loaded
back from what it writes.
"""

from __future__ import annotations

from ncnnpass.ir import Graph
from ncnnpass.ir.verifier import verify_graph


def graph_problems(graph: Graph) -> list[str]:
    """Everything wrong with ``graph`` (empty when it is sound)."""
    found = [str(p) for p in verify_graph(graph, round_trip=False)]
    text, data = graph.to_param_text(), graph.to_bin_bytes()
    twin = graph.copy()
    if twin.to_param_text() != text:
        found.append("copy() writes different .param text")
    if twin.to_bin_bytes() != data:
        found.append("copy() writes different .bin bytes")
    back = Graph.from_text(text, data, file="<written>")
    if back.to_param_text() != text:
        found.append("the written .param, loaded and written again, differs")
    if back.to_bin_bytes() != data:
        found.append("the written .bin, loaded and written again, differs")
    return found
