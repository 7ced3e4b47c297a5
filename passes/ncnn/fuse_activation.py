"""``fuse-activation``: a standalone activation after a convolution-like layer becomes its ``9=``/``10=``.

Same set as ncnnoptimize's ``fuse_*_activation``: ReLU (leaky when ``0=slope`` is set), Clip, Sigmoid
for every Convolution/Deconvolution variant and InnerProduct; Mish for Convolution,
ConvolutionDepthWise, Convolution1D and InnerProduct; HardSwish for Convolution, ConvolutionDepthWise
and InnerProduct. The producer must have no fused activation yet (``9=0``) and its output no other
consumer. ncnn computes the fused activation with the same formula as the standalone layer
(``src/layer/fused_activation.h``).
"""

from __future__ import annotations

from ..engine import RulePass

# Each rule names the trait group of ncnnpass.ir.layer_types that accepts its fused activation code.
TEXT = """
rule relu
match:
  fuses_relu c 1 1 x t  9=0 ...
  ReLU act 1 1 t y  0=%slope
replace:
  @c c 1 1 x y  @c 9={1 if %slope == 0 else 2} 10={none if %slope == 0 else [float(%slope)]}

rule clip
match:
  fuses_clip c 1 1 x t  9=0 ...
  Clip act 1 1 t y  0=%lo 1=%hi
replace:
  @c c 1 1 x y  @c 9=3 10={[float(%lo), float(%hi)]}

rule sigmoid
match:
  fuses_sigmoid c 1 1 x t  9=0 ...
  Sigmoid act 1 1 t y
replace:
  @c c 1 1 x y  @c 9=4 ~10

rule mish
match:
  fuses_mish c 1 1 x t  9=0 ...
  Mish act 1 1 t y
replace:
  @c c 1 1 x y  @c 9=5 ~10

rule hardswish
match:
  fuses_hardswish c 1 1 x t  9=0 ...
  HardSwish act 1 1 t y  0=%alpha 1=%beta
replace:
  @c c 1 1 x y  @c 9=6 10={[float(%alpha), float(%beta)]}
"""

PASS = RulePass("fuse-activation",
                "ReLU/LeakyReLU/Clip/Sigmoid/Mish/HardSwish after Convolution*/Deconvolution*/InnerProduct -> 9=/10=",
                TEXT, file=__file__)
