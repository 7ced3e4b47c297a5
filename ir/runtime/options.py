"""ncnn option sets: the one table of named presets, and ``ncnn.Option`` objects made from them.

A preset is a dict of ``ncnn.Option`` field overrides applied before a net loads (ncnn requires it).
``default`` is ncnn's own defaults (fp16 on a phone CPU, fp16 packed/storage/arithmetic on a GPU);
``fp32`` turns every reduced-precision path off.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import RuntimeBridgeError

__all__ = ["OPTION_PRESETS", "PRESET_DESCRIPTIONS", "make_options", "option_fields"]

OPTION_PRESETS: dict[str, dict[str, bool]] = {
    "default": {},
    "fp32": {"use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False,
             "use_bf16_storage": False, "use_bf16_packed": False},
    # fp16 attribution (ARM CPU and Vulkan): storage without arithmetic; on Vulkan also fp16 uniform off
    # (ncnn drops it with arithmetic), and packed-only (half pairs in 32-bit words, fp32 everywhere else)
    "fp16-storage": {"use_fp16_arithmetic": False},
    "fp16-packed": {"use_fp16_storage": False, "use_fp16_arithmetic": False},
    "no-packing": {"use_packing_layout": False},
    "no-sgemm-winograd": {"use_sgemm_convolution": False, "use_winograd_convolution": False},
    "bf16": {"use_bf16_storage": True, "use_bf16_packed": True},
    # shape inference: fp32 without winograd/sgemm, whose pipelines take 20x the run (PP-OCRv3 rec: 0.07 s vs
    # 1.45 s with one thread); blob shapes do not depend on the convolution algorithm
    "shapes": {"use_fp16_storage": False, "use_fp16_packed": False, "use_fp16_arithmetic": False,
               "use_bf16_storage": False, "use_bf16_packed": False, "use_winograd_convolution": False,
               "use_sgemm_convolution": False},
}

PRESET_DESCRIPTIONS: dict[str, str] = {
    "default": "ncnn defaults",
    "fp32": "fp16 storage/packed/arithmetic off",
    "fp16-storage": "fp16 storage on, fp16 arithmetic off",
    "fp16-packed": "fp16 packed only (storage and arithmetic off)",
    "no-packing": "packing layout off",
    "no-sgemm-winograd": "sgemm and winograd convolution off",
    "bf16": "bf16 storage/packed on",
    "shapes": "fp32 without winograd/sgemm (shape inference)",
}

Options = str | Mapping[str, object] | None


def option_fields(options: Options = None) -> dict[str, object]:
    """The ``ncnn.Option`` field overrides of a preset name or a dict (validated names of presets)."""
    if isinstance(options, str) and options not in OPTION_PRESETS:
        raise RuntimeBridgeError(f"unknown option preset {options!r} (one of {', '.join(OPTION_PRESETS)})")
    return dict(OPTION_PRESETS[options]) if isinstance(options, str) else dict(options or {})


def make_options(options: Options = None, num_threads: int | None = None):
    """An ``ncnn.Option`` from a preset name or a dict of field overrides."""
    from . import worker
    from .bridge import _ncnn

    try:
        return worker.make_option(_ncnn(), option_fields(options), num_threads)
    except worker.NcnnCallError as exc:
        raise RuntimeBridgeError(str(exc)) from None
