"""``keep-fp32``: set ncnn's per-layer feature mask (param ``31=``) so chosen layers skip reduced precision.

ncnn reads ``31=`` as a bit set that switches options off for one layer (``src/net.cpp``
``get_masked_option``): 1 no fp16 arithmetic, 2 no fp16 storage, 4 no bf16 storage, 8 no int8,
16 no vulkan, 32 no sgemm, 64 no winograd, 128 single thread. The default ``bits`` (1|2|4) keeps a
layer's weights and arithmetic in fp32 whatever the net options say: the repair route when a rewrite is
not possible (e.g. an InnerProduct that is not after global pooling).

Layers are chosen by ``types`` (``InnerProduct|Gemm``), ``names`` (exact names or shell globs, ``fc*``)
and/or ``pattern`` (match lines of the pattern language; every matched layer is marked, e.g.
``Pooling p 1 1 x t 4=1 ... ; InnerProduct fc 1 1 t y ...``). With several criteria a layer must satisfy
all given ones. Bits already set are kept (the mask is OR-ed).

ARM-safe by default (``safe=1``): when the bits include no-fp16-storage, every marked layer must read fp32
blobs on ARM, so cast boundaries (an identity ``Dropout``) and Split masks are added where needed
(:func:`ncnnpass.passes.precision.featmask_safety.make_featmask_safe`; the rule is in docs/phone.md).
Passes that later remove Dropouts or rewire the marked layers' inputs undo that: run
``make_featmask_safe`` again before writing a model for ARM.
"""

from __future__ import annotations

import fnmatch

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.schema import FEATMASK_BITS, KNOWN_TYPES

from ..engine import EXACT, FunctionPass, PassContext, compile_rules

DEFAULT_BITS = FEATMASK_BITS["no_fp16_arithmetic"] | FEATMASK_BITS["no_fp16_storage"] | FEATMASK_BITS["no_bf16_storage"]


def _list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace("|", ",").split(",") if v.strip()]
    return [str(v) for v in value]


def parse_bits(value) -> int:
    """``7``, ``0x7`` or ``no_fp16_storage|no_fp16_arithmetic`` -> int."""
    if isinstance(value, int):
        return value
    bits = 0
    for part in _list(value):
        if part in FEATMASK_BITS:
            bits |= FEATMASK_BITS[part]
        else:
            try:
                bits |= int(part, 0)
            except ValueError:
                raise NcnnpassError(f"keep-fp32: bad bits {part!r} (an int or one of "
                                    f"{', '.join(FEATMASK_BITS)})") from None
    return bits


def _cast_boundary(graph: Graph, layer) -> bool:
    """An unmasked identity Dropout in front of a masked layer: the ARM cast boundary this pass places.
    Masking it (say ``names=conv*`` and a boundary ``conv1_to_fp32``) would void it; the next run would
    place another, mask that too, and so on."""
    if layer.type != "Dropout" or layer.featmask & FEATMASK_BITS["no_fp16_storage"] or float(layer.get(0)) != 1.0:
        return False
    return any(c.featmask & FEATMASK_BITS["no_fp16_storage"] for c in graph.blobs[layer.outputs[0]].consumers)


def keep_fp32(graph: Graph, ctx: PassContext, types=None, names=None, pattern=None, bits=DEFAULT_BITS,
              safe=1) -> int:
    types_l, names_l, mask = _list(types), _list(names), parse_bits(bits)
    if not (types_l or names_l or pattern):
        raise NcnnpassError("keep-fp32 needs types=, names= and/or pattern= to choose layers")
    unknown = [t for t in types_l if t not in KNOWN_TYPES and t not in graph.types()]
    if unknown:
        raise NcnnpassError(f"keep-fp32: unknown layer type(s) {', '.join(unknown)} (types are case-sensitive, "
                            "e.g. InnerProduct)")
    chosen = graph.find(types_l) if types_l else list(graph.layers)
    if names_l:
        chosen = [ly for ly in chosen if any(ly.name == n or fnmatch.fnmatchcase(ly.name, n) for n in names_l)]
    if pattern:
        text = pattern if "match" in pattern else "rule keep-fp32-pattern\nmatch:\n" + pattern.replace(";", "\n")
        hit: set = set()
        ctx.protected = set(graph.outputs)
        for rule in compile_rules(text, file="<keep-fp32 pattern>", match_only=True):
            for ly in graph.find(list(rule.root_types)):
                m = rule.match(ly, ctx)
                if m is not None:
                    hit.update(m.layers.values())
        chosen = [ly for ly in chosen if ly in hit]
    safe_on = str(safe).lower() not in ("0", "false", "no")
    changed = 0
    for ly in chosen:
        if ly.type in ("Input", "Split") or (safe_on and _cast_boundary(graph, ly)):
            continue
        if ly.featmask | mask != ly.featmask:
            ly.featmask = ly.featmask | mask
            changed += 1
    if safe_on:
        from ncnnpass.passes.precision.featmask_safety import make_featmask_safe

        make_featmask_safe(graph)  # not counted: the rewrite count stays "layers marked"
    return changed


def numeric_bound(options: dict, fold_storage: str) -> float:
    """Exact, except ``no_int8``: int8 layers then compute in fp32, a different result by design."""
    return float("inf") if parse_bits(options.get("bits", DEFAULT_BITS)) & FEATMASK_BITS["no_int8"] else EXACT["fp32"]


PASS = FunctionPass(
    "keep-fp32", "set featmask 31= (no fp16/bf16) on layers chosen by types=, names= and/or pattern=", keep_fp32,
    options={"types": (None, "layer types, e.g. InnerProduct|Gemm"),
             "names": (None, "layer names or globs, e.g. fc*|linear_72"),
             "pattern": (None, "match lines of the pattern language (';' separates lines)"),
             "bits": (DEFAULT_BITS, "featmask bits: int or names (no_fp16_storage|no_fp16_arithmetic|...)"),
             "safe": (1, "1: add the cast boundaries ARM needs around layers kept out of fp16 storage")},
    numeric_bounds=numeric_bound)
