"""What to do about the loss on ncnn's Vulkan GPU path (``compare --target vulkan``).

On the GPU a per-layer featmask has only two valid forms (docs/gpu.md): ``31=1`` (fp32 arithmetic, fp16 storage
kept: the layer stays on the GPU, needs no cast boundary, and is harmless on x86 and the ARM CPU) and ``31=23``
(the layer leaves the GPU and runs in fp32 on the CPU; the every-path form ``keep-fp32`` writes). Bit 1 without
bit 4 reads fp16 buffers as fp32 there. ``gap-fc-to-conv`` (no masks, valid everywhere) is named for SE
InnerProducts among the carriers: on PP-OCRv3 on lavapipe it takes 5.9e-2 to 5.6e-2 alone, and 1.1e-2 to 6.9e-3
after the Softmax's ``31=1`` (docs/gpu.md). The advice follows the fp16 split of the sweep
(:func:`.report.fp16_split`): the layers whose isolated error fp32 arithmetic removes get ``31=1``; the layers
whose error only fp32 storage removes get ``31=23`` when storage carries most of the final error, else they are
named in a note (moving many layers off the GPU costs a transfer per GPU/CPU transition).
"""

from __future__ import annotations

from ncnnpass.ir import Graph

from .report import AdviceItem, Attribution, OptionRun

__all__ = ["GPU_ARITHMETIC_BITS", "GPU_OFF_BITS", "advise_gpu", "split_fields"]

GPU_ARITHMETIC_BITS = 1  # fp32 arithmetic, fp16 storage: stays on the GPU
GPU_OFF_BITS = 23  # fp32 storage and arithmetic, off the GPU (on the CPU), no bf16: the every-path form


def split_fields(split: dict) -> list[str]:
    """The ncnn.Option fields the split blames (arithmetic, storage, packed), most blamed first."""
    counts = split["layer_counts"]
    fields = {"arithmetic": "use_fp16_arithmetic", "storage": "use_fp16_storage", "packed": "use_fp16_packed"}
    return [fields[k] for k in sorted(fields, key=lambda k: -counts.get(k, 0)) if counts.get(k)]


def advise_gpu(graph: Graph, att: Attribution, runs: dict[str, OptionRun], split: dict | None) -> list[AdviceItem]:
    """The GPU-valid fixes for what the sweep found (see the module docstring)."""
    from ncnnpass.passes.pipelines import targets_repair

    items: list[AdviceItem] = []
    default = runs["default"]
    if targets_repair("vulkan") and default.divergent:
        items.append(AdviceItem(
            "repair-for-target", [r.layer for r in default.divergent],
            "the GPU repair searches which layers to keep fp32 and proves them on lavapipe: ncnnpass run "
            "--pipeline repair --target vulkan"))
    gap = [c.layer for c in att.carriers if c.layer_type == "InnerProduct" and c.after_global_pooling]
    if gap:
        items.append(AdviceItem(
            "gap-fc-to-conv", gap,
            "InnerProduct after global pooling rewritten as adaptive pooling + 1x1 Convolution (no featmask, valid on "
            "every path); on the CPU paths it removes the fp16-converted InnerProduct weights (x86 F16C, ARM), on the GPU "
            "part of the SE blocks' rounding (ncnnpass run --passes gap-fc-to-conv)"))
    if split is not None:
        by_cause: dict[str, list[str]] = {}
        for x in split["layers"]:
            by_cause.setdefault(x["cause"], []).append(x["layer"])
        arithmetic = by_cause.get("arithmetic", [])
        storage = by_cause.get("storage", []) + by_cause.get("packed", [])
        share_a = split["arithmetic"] or 0.0
        share_s = (split["storage"] or 0.0) + (split.get("packed") or 0.0)
        if arithmetic:
            items.append(AdviceItem(
                "keep-fp32", arithmetic,
                f"fp16 arithmetic (and uniform) carries {share_a:.2g} of the final error here: 31=1 gives these layers "
                "fp32 arithmetic and keeps them on the GPU with fp16 storage; no cast boundary, valid on x86 and the "
                "ARM CPU too (where ARM's Softmax ignores bit 0)", featmask=GPU_ARITHMETIC_BITS))
        if storage and share_s >= share_a:
            items.append(AdviceItem(
                "keep-fp32", storage,
                f"fp16 storage carries {share_s:.2g} of the final error here: under Vulkan a layer gets fp32 storage "
                "only off the GPU: 31=23 runs these on the CPU in fp32 (ncnn downloads their inputs and uploads their "
                "outputs; each GPU/CPU transition is a submit and wait), the form valid on every path",
                featmask=GPU_OFF_BITS))
        elif storage:
            items.append(AdviceItem(
                "runtime-option", storage,
                f"fp16 storage adds {share_s:.2g} more, spread over {len(storage)} layer(s): per layer only 31=23 "
                "(off the GPU) removes it; for the whole net, ncnn's fp32 options "
                f"({_e(split['final_max_abs']['fp32'])} here)"))
        fin = split["final_max_abs"]
        if share_a > 0:
            items.append(AdviceItem(
                "runtime-option", [],
                f"for the whole net, opt.use_fp16_arithmetic = false (fp16 storage kept; what devices without fp16 "
                f"arithmetic run) gives {_e(fin['fp16-storage'])} against {_e(fin['default'])} with ncnn's defaults"))
    if att.fp16_weight_layers:
        items.append(AdviceItem(
            "reconvert", att.fp16_weight_layers[:20],
            "weights are stored fp16 in the .bin: reconvert with fp16 off (pnnx ... fp16=0); "
            "runtime options cannot restore the lost bits"))
    return items


def _e(v: float | None) -> str:
    return "-" if v is None else f"{v:.2g}"
