"""``verify_each``: the IR verifier after every pass (MLIR's ``-verify-each``), naming the pass that broke it.

:func:`~.manager.run_passes` makes one :class:`EachPassVerifier` per call when asked (``verify_each=True``,
or by default when the environment variable ``NCNNPASS_VERIFY_EACH`` is ``1``: the test suite sets it, so
every test that runs a pass runs it verified; the library default is off, for the cost).

The input graph is verified first. Wiring problems (:func:`~ncnnpass.ir.verifier.structure_problems`) in
it are refused at once: no graph built through the API has them. The other problems it already has (a
custom layer type ncnn does not know, say) are its baseline; after each pass only problems the input
did not have count, and the first of them raise a :class:`~ncnnpass.ir.errors.GraphError` naming the pass.

Cost: the wiring checks always run (about 35 ms per 10k layers). The rest (``Graph.check`` and the copy
and text round trips, about 0.45 s per 10k layers) runs again only when the pass changed the graph: it
reported rewrites, the graph announced an edit, the ``.param`` text differs from the last verified one, or
a weight array was replaced (a param or weight edit announces nothing).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ncnnpass.ir.errors import GraphError, NcnnpassError
from ncnnpass.ir.listeners import EditCounter
from ncnnpass.ir.parser import gc_paused
from ncnnpass.ir.verifier import (
    describe,
    new_problems,
    round_trip_problems,
    structure_problems,
    verify_graph,
    written_form,
)

if TYPE_CHECKING:
    from ncnnpass.ir import Graph, Problem

ENV = "NCNNPASS_VERIFY_EACH"


def verify_each_default() -> bool:
    """Whether :func:`~.manager.run_passes` verifies after every pass unless told: ``NCNNPASS_VERIFY_EACH=1``."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


class EachPassVerifier:
    """Verifies ``graph`` now (the baseline) and after each pass (:meth:`after`); use as a context manager
    (it listens to the graph while open)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.counter = EditCounter()
        self.runs = 0  # verifications after a pass
        self.full_runs = 0  # ... of which re-ran Graph.check and the round trips

    def __enter__(self) -> EachPassVerifier:
        broken = structure_problems(self.graph)
        if broken:
            raise GraphError(f"the input graph is broken before any pass ran: {describe(broken)}")
        self.baseline: list[Problem] = verify_graph(self.graph)
        self.state = self._state()
        self.graph.add_listener(self.counter)
        return self

    def __exit__(self, *exc) -> None:
        self.graph.remove_listener(self.counter)

    def after(self, pass_spec: str, rewrites: int, iteration: int) -> None:
        """Verify the graph after the pass ``pass_spec`` ran (``rewrites`` reported, fixpoint round ``iteration``)."""
        with gc_paused():  # many small objects, no cycles: a collection would cost more than the checks
            self._after(pass_spec, rewrites, iteration)

    def _after(self, pass_spec: str, rewrites: int, iteration: int) -> None:
        g = self.graph
        self.runs += 1
        problems = structure_problems(g)
        if not problems:
            state = self._state()
            if rewrites or self.counter.n or not _same_state(state, self.state):
                self.full_runs += 1
                problems = g.check()
                written = written_form(g, state[0])
                problems += [written] if not isinstance(written, tuple) else round_trip_problems(g, written)
                problems = new_problems(self.baseline, problems)
            self.state, self.counter.n = state, 0
        if problems:
            raise GraphError(f"pass {pass_spec} broke the graph (verify-each, round {iteration}): "
                             f"{describe(problems)}")

    def _state(self) -> tuple:
        """What the written files depend on, cheaply: the .param text (or why it cannot be written) and each
        weight's identity, storage and stored array (an edit replaces the array; none is mutated)."""
        try:
            text: str | None = self.graph.to_param_text()
        except (NcnnpassError, ValueError, TypeError):
            text = None
        weights = [(w, w.storage, w.data if w.edited else w.file_bytes())
                   for ly in self.graph.layers for w in ly.weights.values()]
        return text, weights


def _same_state(a: tuple, b: tuple) -> bool:
    (text_a, weights_a), (text_b, weights_b) = a, b
    return (text_a is not None and text_a == text_b and len(weights_a) == len(weights_b)
            and all(wa is wb and sa == sb and da is db
                    for (wa, sa, da), (wb, sb, db) in zip(weights_a, weights_b, strict=True)))
