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

Safe on every ncnn path by default (``safe=1``): when the bits include no-fp16-storage, every marked layer
must read fp32 blobs, so marked layers also get bit 4 (on the CPU under Vulkan: ``31=23`` with the default
bits), cast boundaries (an identity ``Dropout``) go in front of marked readers of fp16 blobs on ARM, and the
Splits between marked layers are masked (:func:`ncnnpass.ir.featmask.make_featmask_safe`; the rule and its
evidence are in docs/phone.md and docs/gpu.md). Passes that later remove Dropouts or rewire the marked
layers' inputs undo that: run ``make_featmask_safe`` again before writing.
"""

from __future__ import annotations

import fnmatch

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.schema import FEATMASK_BITS, KNOWN_TYPES

from ..engine import EXACT, FunctionPass, Option, PassContext, compile_rules
from ..engine.options import nonempty

DEFAULT_BITS = FEATMASK_BITS["no_fp16_arithmetic"] | FEATMASK_BITS["no_fp16_storage"] | FEATMASK_BITS["no_bf16_storage"]


def _list(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.replace("|", ",").split(",") if v.strip()]
    return [str(v) for v in value]


MAX_BITS = sum(FEATMASK_BITS.values())  # 255: every bit ncnn reads


def parse_bits(value) -> int:
    """``7``, ``0x7`` or ``no_fp16_storage|no_fp16_arithmetic`` -> int, 1..255 (bits ncnn knows)."""
    if isinstance(value, bool):
        raise NcnnpassError(f"keep-fp32: bits must be an int or bit names, not {value!r}")
    if isinstance(value, int):
        bits = value
    else:
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
    if not 0 < bits <= MAX_BITS:
        raise NcnnpassError(f"keep-fp32: bits must set some of ncnn's featmask bits 1..{MAX_BITS} "
                            f"({', '.join(f'{k}={v}' for k, v in FEATMASK_BITS.items())}), not {value!r}")
    return bits


def _pattern_rules(pattern: str):
    text = pattern if "match" in pattern else "rule keep-fp32-pattern\nmatch:\n" + pattern.replace(";", "\n")
    return compile_rules(text, file="<keep-fp32 pattern>", match_only=True)


def _check_pattern(pattern) -> str | None:
    if not str(pattern).strip():
        return "a pattern (match lines of the pattern language)"
    _pattern_rules(str(pattern))  # a syntax error raises with its line and column
    return None


def _cast_boundary(graph: Graph, layer) -> bool:
    """An unmasked identity Dropout in front of a masked layer: the ARM cast boundary this pass places.
    Masking it (say ``names=conv*`` and a boundary ``conv1_to_fp32``) would void it; the next run would
    place another, mask that too, and so on."""
    if layer.type != "Dropout" or layer.featmask & FEATMASK_BITS["no_fp16_storage"] or float(layer.get(0)) != 1.0:
        return False
    return any(c.featmask & FEATMASK_BITS["no_fp16_storage"] for c in graph.blobs[layer.outputs[0]].consumers)


def validate(graph: Graph, types=None, names=None, pattern=None, bits=DEFAULT_BITS, safe=1) -> None:
    """The options make sense for ``graph``: a selector is given, every type is an ncnn type (or one the
    graph has), the bits are ncnn's (run before any pass of the list)."""
    types_l, names_l = _list(types), _list(names)
    if not (types_l or names_l or pattern):
        raise NcnnpassError("keep-fp32 needs types=, names= and/or pattern= to choose layers")
    unknown = [t for t in types_l if t not in KNOWN_TYPES and t not in graph.types()]
    if unknown:
        raise NcnnpassError(f"keep-fp32: unknown layer type(s) {', '.join(unknown)} (types are case-sensitive, "
                            "e.g. InnerProduct)")
    parse_bits(bits)


def keep_fp32(graph: Graph, ctx: PassContext, types=None, names=None, pattern=None, bits=DEFAULT_BITS,
              safe=1) -> int:
    validate(graph, types, names, pattern, bits, safe)
    types_l, names_l, mask = _list(types), _list(names), parse_bits(bits)
    chosen = graph.find(types_l) if types_l else list(graph.layers)
    if names_l:
        chosen = [ly for ly in chosen if any(ly.name == n or fnmatch.fnmatchcase(ly.name, n) for n in names_l)]
    if pattern:
        hit: set = set()
        ctx.protected = set(graph.outputs)
        for rule in _pattern_rules(pattern):
            for ly in graph.find(list(rule.root_types)):
                m = rule.match(ly, ctx)
                if m is not None:
                    hit.update(m.layers.values())
        chosen = [ly for ly in chosen if ly in hit]
    safe_on = bool(safe) and str(safe).lower() not in ("0", "false", "no")
    changed = 0
    for ly in chosen:
        if ly.type in ("Input", "Split") or (safe_on and _cast_boundary(graph, ly)):
            continue
        if ly.featmask | mask != ly.featmask:
            ly.featmask = ly.featmask | mask
            changed += 1
    if safe_on:
        from ncnnpass.ir.featmask import make_featmask_safe

        make_featmask_safe(graph)  # not counted: the rewrite count stays "layers marked"
    return changed


def numeric_bound(options: dict, fold_storage: str) -> float:
    """Exact, except ``no_int8``: int8 layers then compute in fp32, a different result by design."""
    return float("inf") if parse_bits(options.get("bits", DEFAULT_BITS)) & FEATMASK_BITS["no_int8"] else EXACT["fp32"]


PASS = FunctionPass(
    "keep-fp32", "set featmask 31= (no fp16/bf16) on layers chosen by types=, names= and/or pattern=", keep_fp32,
    options={"types": Option(None, "layer types, e.g. InnerProduct|Gemm", list, check=nonempty),
             "names": Option(None, "layer names or globs, e.g. fc*|linear_72", list, check=nonempty),
             "pattern": Option(None, "match lines of the pattern language (';' separates lines)", str,
                               check=_check_pattern),
             "bits": Option(DEFAULT_BITS, "featmask bits: int or names (no_fp16_storage|no_fp16_arithmetic|...)",
                            convert=parse_bits),
             "safe": Option(1, "1: add the cast boundaries ARM needs around layers kept out of fp16 storage",
                            bool)},
    validate=validate, numeric_bounds=numeric_bound)
