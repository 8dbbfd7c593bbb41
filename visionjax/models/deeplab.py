"""DeepLabV3 (Chen, Papandreou, Schroff & Adam 2017).

An atrous ResNet (the last stages' strides replaced by dilation so the
features stay at output stride 16 or 8), Atrous Spatial Pyramid Pooling
(a 1×1 branch, three 3×3 atrous branches at rates (6, 12, 18) for output
stride 16 — doubled to (12, 24, 36) for output stride 8 — and an
image-level pooling branch, each conv + BN + ReLU with 256 channels,
concatenated and projected by 1×1 conv + BN + ReLU + dropout 0.5), then
torchvision's head (3×3 conv + BN + ReLU, 1×1 classifier) and bilinear
upsampling to the input resolution.

Without torchvision's optional auxiliary FCN head, DeepLabV3-ResNet-50 has
torchvision's 42,004,074 parameters minus that head's 2,365,205.

Sizes: by default the input is padded at the bottom/right to a multiple of
the output stride, the logits are upsampled to the padded size and cropped,
so every logit pixel sits on the same grid as in a divisible image.
`pad_input=False` is torchvision's form instead: no padding, the
ceil(H/os)×ceil(W/os) logits are resized straight to H×W. The two are equal
when H and W are multiples of the output stride (and of 32 for the stem's
pools to agree) and differ slightly elsewhere. torchvision's
`deeplabv3_resnet50/101` are output stride 8 (`output_stride=8`), with
`pad_input=False`; visionjax.weights returns those overrides with the
converted weights.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.backbones import SMOKE_ENCODER, build_encoder, coarsest
from visionjax.models.layers import (
  ConvNormAct,
  ModelSpec,
  ZooModule,
  batch_norm,
  check_images,
  crop_to,
  frozen,
  pad_to_multiple,
  resize_bilinear,
)


class ASPP(ZooModule):
  """Atrous spatial pyramid pooling: [B, h, w, C] -> [B, h, w, features]."""
  features: int = 256
  rates: Sequence[int] = (6, 12, 18)
  dropout_rate: float = 0.5
  norm: Any = None
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = functools.partial(ConvNormAct, self.features, norm=self.norm,
                             act=self.act, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    branches = [conv(kernel_size=1, name="conv1x1")(x)]
    for r in self.rates:
      branches.append(conv(kernel_size=3, dilation=r,
                           padding=((r, r), (r, r)), name=f"atrous{r}")(x))
    pooled = conv(kernel_size=1, name="image_pool")(
        jnp.mean(x, axis=(1, 2), keepdims=True))
    # Upsampling a 1×1 map bilinearly is a broadcast.
    branches.append(jnp.broadcast_to(pooled, branches[0].shape))
    y = conv(kernel_size=1, name="project")(jnp.concatenate(branches, -1))
    return nn.Dropout(self.dropout_rate, deterministic=not train)(y)


class DeepLabV3(ZooModule):
  """DeepLabV3: images [B, H, W, C] -> logits [B, H, W, num_classes]."""
  num_classes: int = 21
  encoder: str = "resnet101"
  encoder_kwargs: Optional[Mapping[str, Any]] = None
  output_stride: int = 16
  atrous_rates: Optional[Sequence[int]] = None  # default (6,12,18)·16/OS.
  aspp_features: int = 256
  dropout_rate: float = 0.5
  act: Callable = nn.relu
  pad_input: bool = True  # False: torchvision's resize (module docstring).

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "DeepLabV3")
    if self.output_stride not in (8, 16):
      raise ValueError(f"DeepLabV3: output_stride must be 8 or 16, got "
                       f"{self.output_stride}")
    if not self.encoder.startswith("resnet"):
      raise ValueError(f"DeepLabV3: encoder must be an atrous ResNet "
                       f"('resnet50', 'resnet101', ...), got {self.encoder!r}")
    rates = self.atrous_rates or tuple(
        r * 16 // self.output_stride for r in (6, 12, 18))
    x, (h, w) = pad_to_multiple(images.astype(self.dtype),
                                self.output_stride if self.pad_input else 1)
    enc = build_encoder(self.encoder, self.encoder_kwargs,
                        output_stride=self.output_stride,
                        axis_name=self.axis_name, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="encoder")
    feats = enc(x, train=train)
    y = feats[coarsest(enc.feature_strides)]
    norm = batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
    y = ASPP(self.aspp_features, rates, self.dropout_rate, norm=norm,
             act=self.act, dtype=self.dtype, param_dtype=self.param_dtype,
             name="aspp")(y, train)
    y = ConvNormAct(self.aspp_features, 3, norm=norm, act=self.act,
                    dtype=self.dtype, param_dtype=self.param_dtype,
                    name="head")(y)
    y = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype,
                param_dtype=self.param_dtype, name="classifier")(y)
    y = resize_bilinear(y, x.shape[1:3])
    return crop_to(y, (h, w)).astype(jnp.float32)


_SMOKE = frozen(encoder_kwargs=SMOKE_ENCODER["resnet50"], aspp_features=8,
                atrous_rates=(1, 2, 3))

REGISTRY: Dict[str, ModelSpec] = {
    "deeplabv3_resnet50": ModelSpec(
        functools.partial(DeepLabV3, encoder="resnet50"), "segmentation",
        input_size=(513, 513), smoke=_SMOKE),
    "deeplabv3_resnet101": ModelSpec(
        functools.partial(DeepLabV3), "segmentation", input_size=(513, 513),
        smoke=_SMOKE),
    "deeplabv3_resnet101_os8": ModelSpec(
        functools.partial(DeepLabV3, output_stride=8), "segmentation",
        input_size=(513, 513), smoke=_SMOKE),
}
