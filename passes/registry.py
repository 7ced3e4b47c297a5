"""Every pass by name. Pass modules live in :mod:`ncnnpass.passes.ncnn` and define ``PASS``.

A new module there (not starting with ``_``) is found on its own: adding a pass is one file.
``PASS_MODULES`` only fixes the order ``ncnnpass passes`` lists them in; modules it does not name follow,
alphabetically.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from ncnnpass.ir.errors import NcnnpassError

from .engine import Pass

# Module names, in the order ``ncnnpass passes`` lists them.
PASS_MODULES = (
    "gap_fc_to_conv",
    "mean_reduction_to_pooling",
    "adaptive_avgpool_lowering",
    "keep_fp32",
    "repair_for_target",
    "fuse_activation",
    "eliminate_redundant_relu",
    "fold_scalar_binaryop",
    "fuse_batchnorm",
    "fuse_batchnorm_scale",
    "fuse_scale",
    "fuse_channel_binaryop",
    "fuse_memorydata_binaryop",
    "fuse_innerproduct_dropout",
    "fuse_binaryop_eltwise",
    "replace_prelu_with_leaky_relu",
    "eliminate_dropout",
    "eliminate_noop",
    "eliminate_pooling1x1",
    "eliminate_flatten_after_global_pooling",
    "eliminate_reshape_after_global_pooling",
    "eliminate_flatten_after_innerproduct",
    "eliminate_reshape_before_binaryop",
    "dead_code",
)

_PASSES: dict[str, Pass] | None = None


def pass_modules() -> list[str]:
    """Module names of :mod:`ncnnpass.passes.ncnn` that define a pass, in listing order."""
    from . import ncnn

    present = sorted(m.name for m in pkgutil.iter_modules(ncnn.__path__) if not m.name.startswith("_"))
    return [*PASS_MODULES, *(m for m in present if m not in PASS_MODULES)]


def passes() -> dict[str, Pass]:
    """Name -> pass, for every registered pass."""
    global _PASSES
    if _PASSES is None:
        found: dict[str, Pass] = {}
        for mod in pass_modules():
            p = importlib.import_module(f"ncnnpass.passes.ncnn.{mod}").PASS
            if p.name in found:
                raise RuntimeError(f"two passes are named {p.name!r}")
            found[p.name] = p
        _PASSES = found
    return _PASSES


def register(p: Pass) -> Pass:
    """Add a pass (e.g. a user's own :class:`~ncnnpass.passes.engine.RulePass`) to the registry."""
    passes()[p.name] = p
    return p


def list_passes() -> list[Pass]:
    """Every registered pass (``.name``, ``.doc``, ``.option_help``), in listing order."""
    return list(passes().values())


_SPEC = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[(.*)\])?\s*\Z", re.S)


def split_specs(text: str) -> list[str]:
    """Split ``"a,b[x=1,y=2],c"`` at the commas that are not inside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"keep-fp32[types=InnerProduct|Gemm,bits=7]"`` -> ``("keep-fp32", {"types": ..., "bits": "7"})``."""
    m = _SPEC.match(spec)
    if not m:
        raise NcnnpassError(f"bad pass spec {spec!r}: expected NAME or NAME[key=value,...]")
    options: dict[str, str] = {}
    if m.group(2):
        for item in split_specs(m.group(2)):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise NcnnpassError(f"bad option {item!r} in {spec!r}: expected key=value")
            if key.strip() in options:
                raise NcnnpassError(f"option {key.strip()!r} is given twice in {spec!r}")
            options[key.strip()] = value.strip()
    return m.group(1), options


def get_pass(spec: str | Pass) -> Pass:
    """A pass by name, or by ``NAME[key=value,...]`` with options applied."""
    if isinstance(spec, Pass):
        return spec
    name, options = parse_spec(spec)
    table = passes()
    if name not in table:
        close = [n for n in table if name.replace("_", "-") in n or n in name]
        hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
        raise NcnnpassError(f"unknown pass {name!r}{hint}; `ncnnpass passes` lists them")
    p = table[name]
    return p.configure(**options) if options else p
