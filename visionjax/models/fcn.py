"""Fully convolutional networks (Long, Shelhamer & Darrell 2015).

FCN-32s / FCN-16s / FCN-8s on VGG-16 as in the paper: the VGG-16 conv
layers, fc6/fc7 recast as convolutions (7×7×4096 and 1×1×4096 with ReLU and
dropout 0.5), a 1×1 class scorer, and the skip architecture: scores from
pool4 (FCN-16s) and pool3 (FCN-8s) are added to the 2× upsampled coarser
scores before the final upsampling to the input resolution. New score layers
start at zero as in the paper, so FCN-16s/8s start out equal to FCN-32s.

On a ResNet backbone the fc6/fc7 layers are omitted (ResNet has no fully
connected trunk to convert): layer4 (stride 32), layer3 (16) and layer2 (8)
are scored directly.

Upsampling is bilinear interpolation. The reference Caffe models implement
it as deconvolutions with fixed bilinear kernels (lr_mult 0); a resize
computes the same values (tested equal except within f pixels of the
border, where the deconvolution fades into zero padding) without a 64×64
stride-32 transposed convolution, which is slow on XLA:CPU. Instead of the
reference's 100-pixel input padding and Crop layers, the input is padded to
a multiple of 32 and the logits are cropped back, so any H×W works.

`DilatedFCN` ('fcn_resnet50_tv', 'fcn_resnet101_tv') is torchvision's
`fcn_resnet50/101` instead, a different network from the paper's: a dilated
ResNet at output stride 8 (layer3/layer4 strides replaced by dilation 2 and
4), torchvision's FCNHead on layer4 (3×3 conv to C/4 = 512 channels without
bias + BatchNorm + ReLU + dropout 0.1, then a 1×1 classifier) and one
bilinear upsampling to the input size; no skips. Without torchvision's
optional auxiliary head on layer3 it has torchvision's 35,322,218 /
54,314,346 parameters minus that head's 2,365,205. Like torchvision it does
not pad the input (`pad_input=False`): the ceil(H/8)×ceil(W/8) logits are
resized straight to H×W; `pad_input=True` pads to a multiple of 32 and crops
as `FCN` does (equal outputs when H and W are multiples of 32).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.backbones import SMOKE_ENCODER, build_encoder, by_stride
from visionjax.models.layers import (
  ConvNormAct,
  ModelSpec,
  ZooModule,
  batch_norm,
  check_images,
  crop_to,
  frozen,
  max_pool_ceil,
  pad_to_multiple,
  resize_bilinear,
)


class FCN(ZooModule):
  """FCN-{32,16,8}s: images [B, H, W, C] -> logits [B, H, W, num_classes]."""
  num_classes: int = 21
  output_stride: int = 8  # 32, 16 or 8: the finest skip that is fused.
  encoder: str = "vgg16"
  encoder_kwargs: Optional[Mapping[str, Any]] = None
  fc_width: int = 4096
  fc_kernel: int = 7
  dropout_rate: float = 0.5
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "FCN")
    if self.output_stride not in (8, 16, 32):
      raise ValueError(f"FCN: output_stride must be 8, 16 or 32, got "
                       f"{self.output_stride}")
    x, (h, w) = pad_to_multiple(images.astype(self.dtype), 32)
    enc = build_encoder(self.encoder, self.encoder_kwargs,
                        axis_name=self.axis_name, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="encoder")
    feats = enc(x, train=train)
    score = functools.partial(nn.Conv, self.num_classes, (1, 1),
                              dtype=self.dtype, param_dtype=self.param_dtype)
    if "pool5" in feats:  # VGG: pool3/pool4 skips and convolutional fc6/fc7.
      skips = {8: max_pool_ceil(feats["conv3"]),
               16: max_pool_ceil(feats["conv4"])}
      y = feats["pool5"]
      for i, k in ((6, self.fc_kernel), (7, 1)):
        y = nn.Conv(self.fc_width, (k, k), padding="SAME", dtype=self.dtype,
                    param_dtype=self.param_dtype, name=f"fc{i}")(y)
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(
            self.act(y))
    else:
      strided = by_stride(feats, enc.feature_strides)
      if 32 not in strided:
        raise ValueError(f"FCN: encoder {self.encoder!r} has no stride-32 "
                         f"feature (strides {sorted(strided)})")
      skips, y = strided, strided[32]
    y = score(name="score_fr")(y)
    stride = 32
    while stride > self.output_stride:
      stride //= 2
      skip = score(kernel_init=nn.initializers.zeros,
                   name=f"score_stride{stride}")(skips[stride])
      y = resize_bilinear(y, skip.shape[1:3]) + skip
    y = resize_bilinear(y, x.shape[1:3])
    return crop_to(y, (h, w)).astype(jnp.float32)


class DilatedFCN(ZooModule):
  """torchvision's FCN: images [B, H, W, C] -> logits [B, H, W, num_classes].

  A dilated ResNet trunk at `output_stride` (8 in torchvision) and
  torchvision's FCNHead on its coarsest feature; see the module docstring.
  """
  num_classes: int = 21
  encoder: str = "resnet50"
  encoder_kwargs: Optional[Mapping[str, Any]] = None
  output_stride: int = 8
  head_width: Optional[int] = None  # None: a quarter of the trunk's width.
  dropout_rate: float = 0.1
  pad_input: bool = False  # True: pad to a multiple of 32, crop back.
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "DilatedFCN")
    if not self.encoder.startswith("resnet"):
      raise ValueError(f"DilatedFCN: encoder must be a ResNet ('resnet50', "
                       f"'resnet101', ...), got {self.encoder!r}")
    x, (h, w) = pad_to_multiple(images.astype(self.dtype),
                                32 if self.pad_input else 1)
    enc = build_encoder(self.encoder, self.encoder_kwargs,
                        output_stride=self.output_stride,
                        axis_name=self.axis_name, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="encoder")
    strided = by_stride(enc(x, train=train), enc.feature_strides)
    y = strided[max(strided)]
    norm = batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
    y = ConvNormAct(self.head_width or y.shape[-1] // 4, 3,
                    padding=((1, 1), (1, 1)), norm=norm, act=self.act,
                    dtype=self.dtype, param_dtype=self.param_dtype,
                    name="head")(y)
    y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    y = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype,
                param_dtype=self.param_dtype, name="classifier")(y)
    y = resize_bilinear(y, x.shape[1:3])
    return crop_to(y, (h, w)).astype(jnp.float32)


def _variants() -> Dict[str, ModelSpec]:
  out = {}
  for stride in (32, 16, 8):
    out[f"fcn{stride}s"] = ModelSpec(
        functools.partial(FCN, output_stride=stride), "segmentation",
        input_size=(512, 512), smoke=frozen(
            encoder_kwargs=SMOKE_ENCODER["vgg16"], fc_width=16, fc_kernel=3))
    out[f"fcn{stride}s_resnet50"] = ModelSpec(
        functools.partial(FCN, output_stride=stride, encoder="resnet50"),
        "segmentation", input_size=(512, 512),
        smoke=frozen(encoder_kwargs=SMOKE_ENCODER["resnet50"]))
  for depth in (50, 101):
    out[f"fcn_resnet{depth}_tv"] = ModelSpec(
        functools.partial(DilatedFCN, encoder=f"resnet{depth}"),
        "segmentation", input_size=(520, 520),
        # One smoke module for both depths: the same code at tiny widths.
        smoke=frozen(encoder="resnet50",
                     encoder_kwargs=SMOKE_ENCODER["resnet50"]))
  return out


REGISTRY: Dict[str, ModelSpec] = _variants()
