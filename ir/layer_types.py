"""Everything ncnnpass knows about each ncnn layer type, in one spec per type.

A :class:`LayerType` holds the params the passes read (id, name, default, float or not; read from
ncnn's ``src/layer/*.cpp``), the weight layout (:mod:`.weight_layouts`), traits, the fused activation
codes (param 9) the type accepts, and how it sets its output rank and channel count. ``SPECS`` lists every built-in
type in ncnn's LayerType enum order. Adding a layer type, or teaching one a trait, is one edit here.

Traits (``types_with(trait)`` and, in patterns, a lowercase group name in the type position):

* ``elementwise``: one input, one output of the same shape, computed element by element.
* ``conv``: 2-D (de)convolutions: a rank-3 output with ``num_output`` channels.
* ``conv_like``: the weight is output-channel major (``num_output`` rows), so a per-output-channel
  affine map after the layer folds into its weight and bias.
* ``folds_input_affine``: a scalar affine map before the layer folds into its weight and bias.
* ``fuses_relu``, ``fuses_clip``, ``fuses_sigmoid``, ``fuses_mish``, ``fuses_hardswish``: derived
  from the fused activation codes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import weight_layouts as wl
from .weight_layouts import SlotFn

FEATMASK_ID = 31
SHAPE_HINT_ID = 30

# Fused activation codes (param 9) and the standalone layer that computes the same thing.
FUSED_ACTIVATIONS = {1: "ReLU", 2: "ReLU", 3: "Clip", 4: "Sigmoid", 5: "Mish", 6: "HardSwish"}
_ACTIVATION_TRAIT = {1: "fuses_relu", 2: "fuses_relu", 3: "fuses_clip", 4: "fuses_sigmoid", 5: "fuses_mish",
                     6: "fuses_hardswish"}

#: ``rank(layer, rank_of)``: the output rank from structure, ``rank_of(blob)`` gives an input's rank
#: (``None`` when unknown); returns ``None`` when structure does not tell.
RankFn = Callable[[Any, Callable[[str], "int | None"]], "int | None"]


# -- rank behaviours ---------------------------------------------------------------------------------
def _rank_const(r: int) -> RankFn:
    return lambda layer, rank_of: r


def _rank_same(layer, rank_of) -> int | None:
    """Element-wise: the input's rank (only in its one-input, one-output form)."""
    if len(layer.inputs) != 1 or len(layer.outputs) != 1:
        return None
    return rank_of(layer.inputs[0])


def _rank_from_params(layer, rank_of) -> int | None:
    """Input/MemoryData: from the declared ``w h d c`` sizes."""
    w, h, c, d = (int(layer.params.get(k, 0)) for k in (0, 1, 2, 11))
    if layer.type == "Input":
        if c > 0:
            return 4 if d > 0 else 3
        return 2 if h > 0 else (1 if w > 0 else None)
    return 4 if d else 3 if c else 2 if h else 1 if w else None


def _rank_pooling(layer, rank_of) -> int | None:
    if int(layer.get("global_pooling")):
        return 1
    r = rank_of(layer.inputs[0])
    return r if r == 3 else None


def _rank_innerproduct(layer, rank_of) -> int | None:
    r = rank_of(layer.inputs[0])
    return None if r is None else (2 if r == 2 else 1)


def _rank_binaryop(layer, rank_of) -> int | None:
    if len(layer.inputs) == 1 and int(layer.params.get(1, 0)) == 1:
        return _rank_same(layer, rank_of)
    if len(layer.inputs) == 2:
        ra, rb = rank_of(layer.inputs[0]), rank_of(layer.inputs[1])
        return None if ra is None or rb is None else max(ra, rb)
    return None


# -- channel behaviours: ``channels(layer, ask)`` -> channel count (rank 3/4) or length (rank 1) ---------
# ``ask.channels(blob)`` / ``ask.c11(blob)`` answer for an input (``None``: unknown).
def _channels_num_output(layer, ask) -> int | None:
    n = int(layer.get("num_output"))
    return n if n > 0 else None


def _channels_same(layer, ask) -> int | None:
    if len(layer.inputs) != 1 or len(layer.outputs) != 1:
        return None
    return ask.channels(layer.inputs[0])


def _channels_pooling(layer, ask) -> int | None:
    return ask.channels(layer.inputs[0])


def _channels_flatten(layer, ask) -> int | None:
    """Flattening a c×1×1 blob gives a vector of length c."""
    return ask.channels(layer.inputs[0]) if ask.c11(layer.inputs[0]) is True else None


def _channels_from_params(layer, ask) -> int | None:
    w, h, c = (int(layer.params.get(k, 0)) for k in (0, 1, 2))
    if layer.type == "Input":
        return c if c > 0 else None
    return c if c else (w if not h else None)


def _channels_binaryop(layer, ask) -> int | None:
    if len(layer.inputs) == 1 and int(layer.params.get(1, 0)) == 1:
        return _channels_same(layer, ask)
    return None


@dataclass(frozen=True)
class P:
    """One param: id, name, default (``None`` = "same as param ``follows``"), float or not."""

    id: int
    name: str
    default: object = 0
    is_float: bool = False
    follows: int | None = None


@dataclass(frozen=True)
class LayerType:
    """One ncnn layer type: params, weight layout, traits, fused activations, rank behaviour."""

    type: str
    params: tuple[P, ...] = ()
    weights: SlotFn | None = None
    traits: frozenset[str] = frozenset()
    activations: frozenset[int] = frozenset()
    rank: RankFn | None = None
    channels: Callable[[Any, Any], int | None] | None = None
    by_name: dict = field(default_factory=dict, compare=False, repr=False)
    by_id: dict = field(default_factory=dict, compare=False, repr=False)
    float_ids: frozenset[int] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        for p in self.params:
            self.by_name[p.name] = p
            self.by_id[p.id] = p
        object.__setattr__(self, "float_ids", frozenset(p.id for p in self.params if p.is_float))
        derived = {_ACTIVATION_TRAIT[c] for c in self.activations}
        object.__setattr__(self, "traits", frozenset(self.traits) | derived)
        if "elementwise" in self.traits:  # same shape as the input: rank and channels follow it
            object.__setattr__(self, "rank", self.rank or _rank_same)
            object.__setattr__(self, "channels", self.channels or _channels_same)


# -- shared param lists ------------------------------------------------------------------------------
_FLT_MAX = 3.4028234663852886e38
_ACT = (P(9, "activation_type"), P(10, "activation_params", [], True))
_CONV_COMMON = (
    P(0, "num_output"), P(1, "kernel_w"), P(11, "kernel_h", None, follows=1), P(2, "dilation_w", 1),
    P(12, "dilation_h", None, follows=2), P(3, "stride_w", 1), P(13, "stride_h", None, follows=3),
    P(4, "pad_left"), P(15, "pad_right", None, follows=4), P(14, "pad_top", None, follows=4),
    P(16, "pad_bottom", None, follows=14), P(18, "pad_value", 0.0, True), P(5, "bias_term"),
    P(6, "weight_data_size"), P(8, "int8_scale_term"), *_ACT, P(19, "dynamic_weight"),
)
_DECONV_COMMON = (
    P(0, "num_output"), P(1, "kernel_w"), P(11, "kernel_h", None, follows=1), P(2, "dilation_w", 1),
    P(12, "dilation_h", None, follows=2), P(3, "stride_w", 1), P(13, "stride_h", None, follows=3),
    P(4, "pad_left"), P(15, "pad_right", None, follows=4), P(14, "pad_top", None, follows=4),
    P(16, "pad_bottom", None, follows=14), P(18, "output_pad_right"),
    P(19, "output_pad_bottom", None, follows=18), P(20, "output_w"), P(21, "output_h", None, follows=20),
    P(5, "bias_term"), P(6, "weight_data_size"), *_ACT, P(28, "dynamic_weight"),
)
_CONV1D = (
    P(0, "num_output"), P(1, "kernel_w"), P(2, "dilation_w", 1), P(3, "stride_w", 1), P(4, "pad_left"),
    P(15, "pad_right", None, follows=4), P(18, "pad_value", 0.0, True), P(5, "bias_term"), P(6, "weight_data_size"),
    *_ACT, P(19, "dynamic_weight"),
)
_POOLING = (
    P(0, "pooling_type"), P(1, "kernel_w"), P(11, "kernel_h", None, follows=1), P(2, "stride_w", 1),
    P(12, "stride_h", None, follows=2), P(3, "pad_left"), P(14, "pad_right", None, follows=3),
    P(13, "pad_top", None, follows=3), P(15, "pad_bottom", None, follows=13), P(4, "global_pooling"),
    P(5, "pad_mode"), P(6, "avgpool_count_include_pad"), P(7, "adaptive_pooling"), P(8, "out_w"),
    P(18, "out_h", None, follows=8),
)
_HARD = (P(0, "alpha", 0.2, True), P(1, "beta", 0.5, True))
_WHDC = (P(0, "w"), P(1, "h"), P(11, "d"), P(2, "c"))

EW = frozenset({"elementwise"})
_CONV = frozenset({"conv", "conv_like"})
_ALL_ACTS = frozenset({1, 2, 3, 4})
_R3 = _rank_const(3)
_NOUT = _channels_num_output
T = LayerType

# Every built-in type, in ncnn's LayerType enum order (src/CMakeLists.txt ncnn_add_layer list).
SPECS: tuple[LayerType, ...] = (
    T("AbsVal", traits=EW),
    T("ArgMax"),
    T("BatchNorm", (P(0, "channels"), P(1, "eps", 0.0, True)), wl.batchnorm),
    T("Bias", (P(0, "bias_data_size"),), wl.raw(("bias", 0, 0, -1))),
    T("BNLL", traits=EW),
    T("Concat", (P(0, "axis"),)),
    T("Convolution", _CONV_COMMON, wl.conv(19, "conv"), _CONV | {"folds_input_affine"},
      _ALL_ACTS | {5, 6}, _R3, _NOUT),
    T("Crop"),
    T("Deconvolution", _DECONV_COMMON, wl.conv(28, None), _CONV, _ALL_ACTS, _R3, _NOUT),
    T("Dropout", (P(0, "scale", 1.0, True),), traits=EW),
    T("Eltwise", (P(0, "op_type", 1), P(1, "coeffs", [], True))),
    T("ELU", traits=EW),
    T("Embed", weights=wl.embed),
    T("Exp", traits=EW),
    T("Flatten", rank=_rank_const(1), channels=_channels_flatten),
    T("InnerProduct", (P(0, "num_output"), P(1, "bias_term"), P(2, "weight_data_size"), P(8, "int8_scale_term"),
                       *_ACT), wl.innerproduct, frozenset({"conv_like", "folds_input_affine"}), _ALL_ACTS | {5, 6},
      _rank_innerproduct, _NOUT),
    T("Input", _WHDC, rank=_rank_from_params, channels=_channels_from_params),
    T("Log", traits=EW),
    T("LRN"),
    T("MemoryData", (*_WHDC, P(21, "load_type", 1)), wl.memorydata, rank=_rank_from_params,
      channels=_channels_from_params),
    T("MVN"),
    T("Pooling", _POOLING, rank=_rank_pooling, channels=_channels_pooling),
    T("Power", traits=EW),
    T("PReLU", (P(0, "num_slope"),), wl.raw(("slope", 0, 0, -1))),
    T("Proposal"),
    T("Reduction"),
    T("ReLU", (P(0, "slope", 0.0, True),), traits=EW),
    T("Reshape", (P(0, "w", -233), P(1, "h", -233), P(11, "d", -233), P(2, "c", -233))),
    T("ROIPooling"),
    T("Scale", (P(0, "scale_data_size"), P(1, "bias_term")), wl.scale),
    T("Sigmoid", traits=EW),
    T("Slice"),
    T("Softmax", (P(0, "axis"), P(1, "fixbug0"))),
    T("Split"),
    T("SPP"),
    T("TanH", traits=EW),
    T("Threshold", traits=EW),
    T("Tile"),
    T("RNN", weights=wl.rnn),
    T("LSTM", weights=wl.lstm),
    T("BinaryOp", (P(0, "op_type"), P(1, "with_scalar"), P(2, "b", 0.0, True)), rank=_rank_binaryop,
      channels=_channels_binaryop),
    T("UnaryOp", traits=EW),
    T("ConvolutionDepthWise", (*_CONV_COMMON, P(7, "group", 1)), wl.conv(19, "dw"), _CONV | {"folds_input_affine"},
      _ALL_ACTS | {5, 6}, _R3, _NOUT),
    T("Padding", (P(0, "top"), P(1, "bottom"), P(2, "left"), P(3, "right"), P(4, "type"), P(5, "value", 0.0, True),
                  P(6, "per_channel_pad_data_size")), wl.padding),
    T("Squeeze"),
    T("ExpandDims"),
    T("Normalize", weights=wl.raw(("scale", 3, 0, -1))),
    T("Permute", (P(0, "order_type"),)),
    T("PriorBox"),
    T("DetectionOutput"),
    T("Interp"),
    T("DeconvolutionDepthWise", (*_DECONV_COMMON, P(7, "group", 1)), wl.conv(28, None), _CONV, _ALL_ACTS, _R3, _NOUT),
    T("ShuffleChannel"),
    T("InstanceNorm", weights=wl.affine(0, 2)),
    T("Clip", (P(0, "min", -_FLT_MAX, True), P(1, "max", _FLT_MAX, True)), traits=EW),
    T("Reorg"),
    T("YoloDetectionOutput"),
    T("Quantize", weights=wl.raw(("scale", 0, 1, -1))),
    T("Dequantize", weights=wl.raw(("scale", 0, 1, -1), ("bias", 1, 0, 1))),
    T("Yolov3DetectionOutput"),
    T("PSROIPooling"),
    T("ROIAlign"),
    T("Packing"),
    T("Requantize", weights=wl.raw(("scale_in", 0, 1, -1), ("scale_out", 1, 1, -1), ("bias", 2, 0, 2))),
    T("Cast"),
    T("HardSigmoid", _HARD, traits=EW),
    T("SELU", traits=EW),
    T("HardSwish", _HARD, traits=EW),
    T("Noop", traits=EW),
    T("PixelShuffle"),
    T("DeepCopy"),
    T("Mish", traits=EW),
    T("StatisticsPooling"),
    T("Swish", traits=EW),
    T("Gemm", weights=wl.gemm),
    T("GroupNorm", weights=wl.affine(1, 3)),
    T("LayerNorm", weights=wl.affine(0, 2)),
    T("Softplus", traits=EW),
    T("GRU", weights=wl.gru),
    T("MultiHeadAttention", weights=wl.mha),
    T("GELU", traits=EW),
    T("Convolution1D", _CONV1D, wl.conv(19, None), frozenset({"conv_like"}), _ALL_ACTS | {5}, _rank_const(2)),
    T("Pooling1D"),
    T("ConvolutionDepthWise1D", weights=wl.conv(19, None)),
    T("Convolution3D", weights=wl.conv(None, None)),
    T("ConvolutionDepthWise3D", weights=wl.conv(None, None)),
    T("Pooling3D"),
    T("MatMul"),
    T("Deconvolution1D", weights=wl.conv(28, None)),
    T("DeconvolutionDepthWise1D", weights=wl.conv(28, None)),
    T("Deconvolution3D", weights=wl.conv(None, None)),
    T("DeconvolutionDepthWise3D", weights=wl.conv(None, None)),
    T("Einsum"),
    T("DeformableConv2D", weights=wl.conv(None, None)),
    T("GLU"),
    T("Fold"),
    T("Unfold"),
    T("GridSample"),
    T("CumulativeSum"),
    T("CopyTo"),
    T("Erf", traits=EW),
    T("Diag"),
    T("CELU", traits=EW),
    T("Shrink", traits=EW),
    T("RMSNorm", weights=wl.affine(0, 2, beta=False)),
    T("Spectrogram"),
    T("InverseSpectrogram"),
    T("Flip"),
    T("SDPA"),
    T("RotaryEmbed"),
)

BUILTIN: dict[str, LayerType] = {s.type: s for s in SPECS}
LAYER_TYPES: tuple[str, ...] = tuple(BUILTIN)
KNOWN_TYPES = frozenset(LAYER_TYPES)
_CUSTOM: dict[str, LayerType] = {}  # user-registered (custom) types: known to the weight reader only
_GROUPS: dict[str, frozenset[str]] = {}


def spec(layer_type: str) -> LayerType | None:
    """The spec of a built-in (or registered custom) type, ``None`` for an unknown type."""
    return BUILTIN.get(layer_type) or _CUSTOM.get(layer_type)


def types_with(trait: str) -> frozenset[str]:
    """Built-in types that have ``trait`` (an empty set for an unknown trait)."""
    hit = _GROUPS.get(trait)
    if hit is None:
        hit = _GROUPS[trait] = frozenset(s.type for s in SPECS if trait in s.traits)
    return hit


def is_group(name: str) -> bool:
    """True if ``name`` names a trait group usable in a pattern's type position."""
    return bool(types_with(name))


def has_trait(layer_type: str, trait: str) -> bool:
    return layer_type in types_with(trait)


def register_custom(layer_type: str, weights: SlotFn) -> None:
    """Teach ncnnpass the weight layout of a custom (non built-in) type, or replace a built-in's."""
    base = BUILTIN.get(layer_type)
    if base is not None:
        BUILTIN[layer_type] = LayerType(base.type, base.params, weights, base.traits - _derived(base),
                                        base.activations, base.rank, base.channels)
    else:
        _CUSTOM[layer_type] = LayerType(layer_type, weights=weights)


def _derived(s: LayerType) -> frozenset[str]:
    return frozenset(_ACTIVATION_TRAIT[c] for c in s.activations)


def weighted_types() -> list[str]:
    """Every type (built-in, then custom) that reads arrays from the ``.bin``."""
    return [t for t, s in (*BUILTIN.items(), *_CUSTOM.items()) if s.weights is not None]
