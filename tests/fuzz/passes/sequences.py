"""Seeded random pass sequences with random valid options, drawn from the registry and the pipelines.

A sequence is a list of pass specs (``name`` or ``name[key=value,...]``, as ``ncnnpass run --passes``
takes them) with pipeline names mixed in; options come from each pass's declared :class:`Option`
(choices, bool) and, for ``keep-fp32``'s free-text options, from the graph at hand (its layer types and
names). Every drawn option is valid: a pass refusing one is a finding.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ncnnpass.ir import Graph
from ncnnpass.passes.pipelines import PIPELINES
from ncnnpass.passes.registry import passes as registered

# keep-fp32 pattern= values (match lines; ';' separates lines, no commas: they separate options)
KEEP_PATTERNS = (
    "Pooling p 1 1 x t 4=1 ... ; InnerProduct fc 1 1 t y ...",
    "InnerProduct fc 1 1 x y ...",
    "conv_like c 1 1 x t ... ; BatchNorm bn 1 1 t y ...",
    "Convolution c 1 1 x y 1=1 ...",
    "fuses_relu c 1 1 x t 9=0 ... ; ReLU r 1 1 t y",
    "Pooling p 1 1 x y 7=1 ...",
)
KEEP_BITS = ("7", "no_fp16_storage", "2", "no_fp16_storage|no_fp16_arithmetic", "0x27", "no_sgemm|no_winograd",
             "single_thread|no_bf16_storage", "no_int8")
KEEP_TYPES = ("InnerProduct", "Convolution", "ConvolutionDepthWise", "Pooling", "BinaryOp", "Flatten", "Gemm")


@dataclass
class Sequence:
    passes: list[str]
    fold_storage: str
    give_shape: bool
    max_iterations: int = 8


def _keep_fp32(rng: random.Random, graph: Graph) -> str:
    opts: list[str] = []
    types = sorted({ly.type for ly in graph.layers if ly.type not in ("Input",)})
    chosen = set()
    if rng.random() < 0.6:
        pool = [t for t in types if t in KEEP_TYPES] or list(KEEP_TYPES[:2])
        opts.append("types=" + "|".join(sorted(set(rng.sample(pool, k=min(len(pool), rng.choice((1, 1, 2))))))))
        chosen.add("types")
    if rng.random() < 0.35 or not chosen:
        names = sorted({ly.name for ly in graph.layers})
        picks = []
        for _ in range(rng.choice((1, 2))):
            n = rng.choice(names)
            picks.append(n if rng.random() < 0.5 or "_" not in n else n.rsplit("_", 1)[0] + "_*")
        if all(not set(p) & set("=,[]|;") for p in picks):
            opts.append("names=" + "|".join(picks))
            chosen.add("names")
    if rng.random() < 0.3 or not chosen:
        opts.append("pattern=" + rng.choice(KEEP_PATTERNS))
    if rng.random() < 0.4:
        opts.append("bits=" + rng.choices(KEEP_BITS, (5, 3, 2, 2, 1, 1, 1, 1))[0])
    if rng.random() < 0.3:
        opts.append("safe=" + rng.choice(("0", "1", "no", "yes")))
    rng.shuffle(opts)
    return f"keep-fp32[{','.join(opts)}]"


def pass_spec(rng: random.Random, name: str, graph: Graph) -> str:
    """``name`` with random valid options (its declared typed options; keep-fp32's from the graph)."""
    if name == "keep-fp32":
        return _keep_fp32(rng, graph)
    p = registered()[name]
    opts = []
    for key, opt in p.option_help.items():
        if rng.random() < 0.5:
            continue
        if opt.choices:
            opts.append(f"{key}={rng.choice(opt.choices)}")
        elif opt.type is bool:
            opts.append(f"{key}={rng.choice(('0', '1', 'true', 'off'))}")
    return f"{name}[{','.join(opts)}]" if opts else name


def fuzzed_passes() -> list[str]:
    """Every registered pass the fuzzer draws from: the graph rewrites. Terminal passes (``repair-for-target``)
    measure the model on a device target (the emulated phone, the GPU) for minutes: they have their own tests."""
    return sorted(name for name, p in registered().items() if not p.terminal)


def random_sequence(rng: random.Random, graph: Graph, declared: bool) -> Sequence:
    names = fuzzed_passes()
    items: list[str] = []
    for _ in range(rng.choices((1, 2, 3, 4, 6, 8), (3, 3, 3, 2, 2, 1))[0]):
        if rng.random() < 0.08:
            items.append(rng.choice(sorted(PIPELINES)))
        else:
            items.append(pass_spec(rng, rng.choice(names), graph))
    fold_storage = "keep" if rng.random() < 0.2 else "fp32"
    give_shape = rng.random() < (0.5 if declared else 0.8)
    max_iterations = rng.choices((8, 1, 2), (8, 1, 1))[0]
    return Sequence(items, fold_storage, give_shape, max_iterations)
