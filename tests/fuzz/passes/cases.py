"""Case ``i`` of a campaign, derived from ``random.Random(f"{seed}:{i}")`` alone (so a failure is replayed
from its seed and index): a generated graph, or a real model in one of its forms; then a random sequence."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ncnnpass.ir import Graph

from . import real
from .generate import generate
from .oracle import Case
from .sequences import random_sequence

REAL_SHARE = 0.15  # of cases in a mixed campaign


@dataclass
class Corpus:
    """The real models a campaign uses, loaded once per process (text and bytes, per form on demand)."""

    names: list[str] = field(default_factory=list)
    _files: dict[str, tuple[str, bytes, real.RealModel]] = field(default_factory=dict)
    _forms: dict[tuple[str, str], tuple[str, bytes, Graph]] = field(default_factory=dict)

    def files(self, name: str) -> tuple[str, bytes, real.RealModel]:
        if name not in self._files:
            m = real.real_model(name)
            self._files[name] = (m.param.read_text(), m.bin.read_bytes(), m)
        return self._files[name]

    def form(self, name: str, form: str) -> tuple[str, bytes, Graph]:
        key = (name, form)
        if key not in self._forms:
            text, data, _ = self.files(name)
            text, data = real.shaped(text, data, form)
            self._forms[key] = (text, data, Graph.from_text(text, data))
        return self._forms[key]


def make_case(seed: str, i: int, mode: str, corpus: Corpus) -> Case:
    """``mode``: ``generated``, ``real`` or ``mixed`` (:data:`REAL_SHARE` real)."""
    rng = random.Random(f"{seed}:{i}")
    use_real = bool(corpus.names) and (mode == "real" or (mode == "mixed" and rng.random() < REAL_SHARE))
    cid = f"{seed}:{i}"
    if use_real:
        name = rng.choice(corpus.names)
        form = rng.choice(real.FORMS)
        text, data, graph = corpus.form(name, form)
        model = corpus.files(name)[2]
        inputs = graph.inputs
        run_shapes = {inputs[0]: list(model.shape)}
        seq = random_sequence(rng, graph, declared=False)
        static = any(f"static={v}" in s for s in seq.passes for v in ("1", "true", "yes", "on"))
        second = {inputs[0]: list(model.second)} if model.second and not static else None
        return Case(cid, f"real:{name}/{form}", text, data, seq.passes, seq.fold_storage,
                    run_shapes if seq.give_shape else None, run_shapes, None, rng.randrange(1 << 16),
                    seq.max_iterations, second)
    m = generate(rng)
    graph = Graph.from_text(m.param, m.bin)
    seq = random_sequence(rng, graph, m.declared)
    run_shapes = {k: list(v) for k, v in m.run_shapes.items()}
    return Case(cid, "generated", m.param, m.bin, seq.passes, seq.fold_storage,
                run_shapes if seq.give_shape else None, run_shapes, m.outputs, rng.randrange(1 << 16),
                seq.max_iterations, shapes={k: list(v) for k, v in m.shapes.items()})
