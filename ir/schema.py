"""Param lookups over the layer specs of :mod:`ncnnpass.ir.layer_types` (names, defaults, float ids).

Unknown params are kept verbatim; defaults are only used to read a param that is absent.
"""

from __future__ import annotations

from .layer_types import BUILTIN, FEATMASK_ID, KNOWN_TYPES, LAYER_TYPES, SHAPE_HINT_ID, LayerType, P, spec

# featmask bits (param 31), src/net.cpp get_masked_option
FEATMASK_BITS = {
    "no_fp16_arithmetic": 1,
    "no_fp16_storage": 2,
    "no_bf16_storage": 4,
    "no_int8": 8,
    "no_vulkan": 16,
    "no_sgemm": 32,
    "no_winograd": 64,
    "single_thread": 128,
}


__all__ = ["FEATMASK_BITS", "FEATMASK_ID", "KNOWN_TYPES", "LAYER_TYPES", "SCHEMAS", "SHAPE_HINT_ID", "LayerSchema", "P",
           "float_ids", "get_param", "param_id_of", "schema", "spec"]

LayerSchema = LayerType  # the old name of a layer spec
SCHEMAS = BUILTIN        # type -> spec, for every built-in type


def schema(layer_type: str) -> LayerSchema | None:
    return SCHEMAS.get(layer_type)


_NO_IDS: frozenset[int] = frozenset()


def float_ids(layer_type: str) -> frozenset[int]:
    s = SCHEMAS.get(layer_type)
    return _NO_IDS if s is None else s.float_ids


def get_param(layer_type: str, params, key: int | str):
    """Read a param with ncnn's default (including defaults that follow another param)."""
    s = SCHEMAS.get(layer_type)
    if isinstance(key, str):
        if s is None or key not in s.by_name:
            raise KeyError(f"{layer_type} has no param named {key!r}")
        key = s.by_name[key].id
    if key in params:
        return params[key]
    p = s.by_id.get(key) if s else None
    if p is None:
        return 0
    if p.follows is not None:
        return get_param(layer_type, params, p.follows)
    return list(p.default) if isinstance(p.default, list) else p.default


def param_id_of(layer_type: str, key: int | str) -> int:
    if isinstance(key, int):
        return key
    s = SCHEMAS.get(layer_type)
    if s is None or key not in s.by_name:
        raise KeyError(f"{layer_type} has no param named {key!r}")
    return s.by_name[key].id
