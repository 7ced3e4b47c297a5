"""What ncnnpass knows about ncnn layer types: the registered type names, and for the types the
passes touch, param names, defaults and which ids are floats (read from ncnn's ``src/layer/*.cpp``).

Unknown params are kept verbatim; defaults here are only used to read a param that is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Built-in layer types, in ncnn's LayerType enum order (src/CMakeLists.txt ncnn_add_layer list).
LAYER_TYPES: tuple[str, ...] = (
    "AbsVal", "ArgMax", "BatchNorm", "Bias", "BNLL", "Concat", "Convolution", "Crop", "Deconvolution",
    "Dropout", "Eltwise", "ELU", "Embed", "Exp", "Flatten", "InnerProduct", "Input", "Log", "LRN",
    "MemoryData", "MVN", "Pooling", "Power", "PReLU", "Proposal", "Reduction", "ReLU", "Reshape",
    "ROIPooling", "Scale", "Sigmoid", "Slice", "Softmax", "Split", "SPP", "TanH", "Threshold", "Tile",
    "RNN", "LSTM", "BinaryOp", "UnaryOp", "ConvolutionDepthWise", "Padding", "Squeeze", "ExpandDims",
    "Normalize", "Permute", "PriorBox", "DetectionOutput", "Interp", "DeconvolutionDepthWise",
    "ShuffleChannel", "InstanceNorm", "Clip", "Reorg", "YoloDetectionOutput", "Quantize", "Dequantize",
    "Yolov3DetectionOutput", "PSROIPooling", "ROIAlign", "Packing", "Requantize", "Cast", "HardSigmoid",
    "SELU", "HardSwish", "Noop", "PixelShuffle", "DeepCopy", "Mish", "StatisticsPooling", "Swish", "Gemm",
    "GroupNorm", "LayerNorm", "Softplus", "GRU", "MultiHeadAttention", "GELU", "Convolution1D",
    "Pooling1D", "ConvolutionDepthWise1D", "Convolution3D", "ConvolutionDepthWise3D", "Pooling3D",
    "MatMul", "Deconvolution1D", "DeconvolutionDepthWise1D", "Deconvolution3D",
    "DeconvolutionDepthWise3D", "Einsum", "DeformableConv2D", "GLU", "Fold", "Unfold", "GridSample",
    "CumulativeSum", "CopyTo", "Erf", "Diag", "CELU", "Shrink", "RMSNorm", "Spectrogram",
    "InverseSpectrogram", "Flip", "SDPA", "RotaryEmbed",
)
KNOWN_TYPES = frozenset(LAYER_TYPES)

FEATMASK_ID = 31
SHAPE_HINT_ID = 30

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


@dataclass(frozen=True)
class P:
    """One param: id, name, default (``None`` = "same as param ``follows``"), float or not."""

    id: int
    name: str
    default: object = 0
    is_float: bool = False
    follows: int | None = None


@dataclass(frozen=True)
class LayerSchema:
    type: str
    params: tuple[P, ...] = ()
    by_name: dict = field(default_factory=dict, compare=False)
    by_id: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for p in self.params:
            self.by_name[p.name] = p
            self.by_id[p.id] = p

    @property
    def float_ids(self) -> frozenset[int]:
        return frozenset(p.id for p in self.params if p.is_float)


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

SCHEMAS: dict[str, LayerSchema] = {
    s.type: s
    for s in (
        LayerSchema("Convolution", _CONV_COMMON),
        LayerSchema("ConvolutionDepthWise", (*_CONV_COMMON, P(7, "group", 1))),
        LayerSchema("Deconvolution", _DECONV_COMMON),
        LayerSchema("DeconvolutionDepthWise", (*_DECONV_COMMON, P(7, "group", 1))),
        LayerSchema("InnerProduct", (P(0, "num_output"), P(1, "bias_term"), P(2, "weight_data_size"),
                                     P(8, "int8_scale_term"), *_ACT)),
        LayerSchema("Pooling", (
            P(0, "pooling_type"), P(1, "kernel_w"), P(11, "kernel_h", None, follows=1), P(2, "stride_w", 1),
            P(12, "stride_h", None, follows=2), P(3, "pad_left"), P(14, "pad_right", None, follows=3),
            P(13, "pad_top", None, follows=3), P(15, "pad_bottom", None, follows=13), P(4, "global_pooling"),
            P(5, "pad_mode"), P(6, "avgpool_count_include_pad"), P(7, "adaptive_pooling"), P(8, "out_w"),
            P(18, "out_h", None, follows=8))),
        LayerSchema("ReLU", (P(0, "slope", 0.0, True),)),
        LayerSchema("Clip", (P(0, "min", -_FLT_MAX, True), P(1, "max", _FLT_MAX, True))),
        LayerSchema("Sigmoid"), LayerSchema("Swish"), LayerSchema("Mish"), LayerSchema("TanH"),
        LayerSchema("HardSigmoid", (P(0, "alpha", 0.2, True), P(1, "beta", 0.5, True))),
        LayerSchema("HardSwish", (P(0, "alpha", 0.2, True), P(1, "beta", 0.5, True))),
        LayerSchema("BinaryOp", (P(0, "op_type"), P(1, "with_scalar"), P(2, "b", 0.0, True))),
        LayerSchema("BatchNorm", (P(0, "channels"), P(1, "eps", 0.0, True))),
        LayerSchema("Scale", (P(0, "scale_data_size"), P(1, "bias_term"))),
        LayerSchema("Bias", (P(0, "bias_data_size"),)),
        LayerSchema("PReLU", (P(0, "num_slope"),)),
        LayerSchema("Dropout", (P(0, "scale", 1.0, True),)),
        LayerSchema("Split"), LayerSchema("Noop"), LayerSchema("Flatten"),
        LayerSchema("Input", (P(0, "w"), P(1, "h"), P(11, "d"), P(2, "c"))),
        LayerSchema("MemoryData", (P(0, "w"), P(1, "h"), P(11, "d"), P(2, "c"), P(21, "load_type", 1))),
        LayerSchema("Reshape", (P(0, "w", -233), P(1, "h", -233), P(11, "d", -233), P(2, "c", -233))),
        LayerSchema("Softmax", (P(0, "axis"), P(1, "fixbug0"))),
        LayerSchema("Concat", (P(0, "axis"),)),
        LayerSchema("Permute", (P(0, "order_type"),)),
        LayerSchema("Eltwise", (P(0, "op_type", 1), P(1, "coeffs", [], True))),
        LayerSchema("Padding", (P(0, "top"), P(1, "bottom"), P(2, "left"), P(3, "right"), P(4, "type"),
                                P(5, "value", 0.0, True), P(6, "per_channel_pad_data_size"))),
    )
}


def schema(layer_type: str) -> LayerSchema | None:
    return SCHEMAS.get(layer_type)


_FLOAT_IDS: dict[str, tuple[LayerSchema, frozenset[int]]] = {}
_NO_IDS: frozenset[int] = frozenset()


def float_ids(layer_type: str) -> frozenset[int]:
    s = SCHEMAS.get(layer_type)
    if s is None:
        return _NO_IDS
    hit = _FLOAT_IDS.get(layer_type)
    if hit is None or hit[0] is not s:  # LayerSchema.float_ids builds a new frozenset per call: cache it
        hit = _FLOAT_IDS[layer_type] = (s, s.float_ids)
    return hit[1]


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
