"""What ncnn's own loader accepts, and the oddities it tolerates (reported as warnings, never refused).

Facts measured on the pip ``ncnn`` wheel (1.0.20261020), whose ``Net::load_param`` is the reference:

* the header's blob count is the number of blob slots ncnn creates: one per top, and one per bottom
  whose name no earlier blob has. A count below that is refused ("too many blobs"), above it is
  accepted (the extra slots stay empty), and counts over 1,000,000 are refused;
* a layer count below the number of layer lines makes ncnn ignore the remaining lines (whatever they
  hold); above it, ncnn refuses;
* layer names need not be unique (lookups find the first one);
* a bottom no earlier layer produced becomes a producer-less blob, i.e. one more input;
* a type whose layer is "one blob only" (one bottom, one top) refuses other counts, except ``Input``
  and the types whose params can make them take more blobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .graph_check import Problem

if TYPE_CHECKING:
    from .graph import Graph

MAX_BLOB_COUNT = 1_000_000  # ncnn: "invalid layer_count or blob_count" above this

# Built-in types ncnn creates with one_blob_only = true (from ``ncnn.create_layer``).
ONE_BLOB_TYPES = frozenset((
    "AbsVal", "BatchNorm", "Bias", "BNLL", "Convolution", "Crop", "Deconvolution", "Dropout", "ELU", "Embed",
    "Exp", "Flatten", "InnerProduct", "Input", "Log", "LRN", "MVN", "Pooling", "Power", "PReLU", "Reduction",
    "ReLU", "Reshape", "Scale", "Sigmoid", "Softmax", "TanH", "Threshold", "Tile", "UnaryOp",
    "ConvolutionDepthWise", "Padding", "Squeeze", "ExpandDims", "Normalize", "Permute", "Interp",
    "DeconvolutionDepthWise", "ShuffleChannel", "InstanceNorm", "Clip", "Reorg", "Quantize", "Dequantize",
    "Packing", "Requantize", "Cast", "HardSigmoid", "SELU", "HardSwish", "PixelShuffle", "DeepCopy", "Mish",
    "StatisticsPooling", "Swish", "GroupNorm", "LayerNorm", "Softplus", "GELU", "Convolution1D", "Pooling1D",
    "ConvolutionDepthWise1D", "Convolution3D", "ConvolutionDepthWise3D", "Pooling3D", "Deconvolution1D",
    "DeconvolutionDepthWise1D", "Deconvolution3D", "DeconvolutionDepthWise3D", "GLU", "Fold", "Unfold",
    "CumulativeSum", "Erf", "Diag", "CELU", "Shrink", "RMSNorm", "Spectrogram", "InverseSpectrogram", "Flip",
))
# ... of which these take other blob counts by design or through params ncnnpass does not model
_PARAM_DEPENDENT = frozenset(("Input", "Crop", "Interp", "Reshape", "Padding", "Embed"))
# ... and these take the weights as extra inputs with ``19=1`` (dynamic weight)
DYNAMIC_WEIGHT_TYPES = frozenset((
    "Convolution", "ConvolutionDepthWise", "Deconvolution", "DeconvolutionDepthWise", "Convolution1D",
    "ConvolutionDepthWise1D", "Deconvolution1D", "DeconvolutionDepthWise1D", "Convolution3D",
    "ConvolutionDepthWise3D", "Deconvolution3D", "DeconvolutionDepthWise3D",
))
STRICT_ONE_BLOB_TYPES = ONE_BLOB_TYPES - _PARAM_DEPENDENT


def blob_slots(layers) -> int:
    """How many blobs ncnn creates for these (type, name, inputs, outputs) records: the smallest
    header blob count it accepts."""
    seen: set[str] = set()
    n = 0
    for ly in layers:
        for b in ly.inputs:
            if b not in seen:
                seen.add(b)
                n += 1
        n += len(ly.outputs)
        seen.update(ly.outputs)
    return n


def graph_warnings(g: Graph) -> list[Problem]:
    """The oddities of the graph as it is now (see :meth:`Graph.warnings`)."""
    out: list[Problem] = []
    counts: dict[str, int] = {}
    for name in (*(ly.name for ly in g.layers), *(rec.layer_name for rec in g.splits.values())):
        counts[name] = counts.get(name, 0) + 1
    for name, k in counts.items():
        if k > 1:
            out.append(Problem("duplicate-layer-name", f"{k} layers are named {name!r} (ncnn finds the first by "
                               "name; edits give new layers unique names)", name, "warning"))
    for n in sorted(g.free_inputs):
        b = g.blobs.get(n)
        if b is not None and b.producer is None and b.consumers:
            out.append(Problem("unproduced-blob", f"blob {n!r} is read by layer {b.consumers[0].name!r} but no "
                               "layer produces it: ncnn treats it as an input to feed", b.consumers[0].name,
                               "warning"))
    for ly in g.layers:
        if (ly.type in STRICT_ONE_BLOB_TYPES and (len(ly.inputs), len(ly.outputs)) != (1, 1)
                and not (ly.type in DYNAMIC_WEIGHT_TYPES and ly.params.get(19) == 1)):
            out.append(Problem("one-blob-layer", f"layer {ly.name!r} ({ly.type}) has {len(ly.inputs)} inputs and "
                               f"{len(ly.outputs)} outputs; ncnn loads this type with exactly one of each",
                               ly.name, "warning"))
    return out
