"""VGG-11/13/16/19 (Simonyan & Zisserman 2015), with and without BatchNorm.

`VGGEncoder` is the 13 (VGG-16) convolutional layers as a backbone returning
named multi-scale features; `VGG` adds torchvision's classifier (adaptive
7×7 average pool, 4096-4096-K with dropout 0.5), so the parameter counts
equal torchvision's (VGG-16: 138,357,544; VGG-16-BN: 138,365,992).

Pools are ceil-mode 2×2/2 (identical to the paper's pools for even sizes),
so the feature of stride s of an H×W image is ceil(H/s)×ceil(W/s).
`ceil_mode=False` pools in floor mode as torchvision's and Keras' VGGs do
(floor(H/s) rows; the last row/column of an odd-sized map is dropped): the
two agree exactly when H and W are multiples of 32 and differ elsewhere, so
ported weights use `ceil_mode=False` (visionjax.weights sets it).

SSD (Liu et al. 2016) uses this backbone with `ssd=True`: pool5 becomes
3×3 stride 1 (padding 1), followed by the dilated fc6 (3×3, dilation 6,
1024 channels) and fc7 (1×1, 1024), and the encoder also returns 'fc7'
(stride 16) next to 'conv4' (= conv4_3, stride 8). Ceil-mode pool3 gives
SSD300's 38×38 conv4_3 map. A detector picks `features['conv4']` and
`features['fc7']` and adds its extra layers on top.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.layers import (
  ConvNormAct,
  ModelSpec,
  ZooModule,
  adaptive_avg_pool,
  batch_norm,
  check_images,
  frozen,
  max_pool,
  max_pool_ceil,
)

STAGES = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}


class VGGEncoder(ZooModule):
  """VGG conv stages: images [B, H, W, C] -> dict of named features.

  Returns 'conv1'..'conv5' (last conv of each stage before its pool; strides
  1, 2, 4, 8, 16) and 'pool5' (stride 32), or with `ssd=True` 'conv1'..
  'conv5' plus 'fc7' (stride 16). `feature_strides` maps names to strides.
  """
  stage_sizes: Sequence[int] = STAGES["vgg16"]
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  use_batchnorm: bool = False
  ssd: bool = False
  ssd_width: int = 1024
  act: Callable = nn.relu
  ceil_mode: bool = True  # False: floor-mode pools (torchvision, Keras).

  @property
  def feature_strides(self) -> Dict[str, int]:
    strides = {f"conv{i + 1}": 2 ** i for i in range(len(self.stage_sizes))}
    last = 2 ** len(self.stage_sizes)
    return {**strides, "fc7": last // 2} if self.ssd else {
        **strides, "pool5": last}

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False
               ) -> Dict[str, jax.Array]:
    check_images(images, "VGGEncoder")
    norm = (batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
            if self.use_batchnorm else None)
    x = images.astype(self.dtype)
    feats = {}
    pool = max_pool_ceil if self.ceil_mode else max_pool
    for i, (n, w) in enumerate(zip(self.stage_sizes, self.widths)):
      if i:
        x = pool(x, 2)
      for j in range(n):
        # torchvision's VGG-BN keeps the conv bias in front of BatchNorm.
        x = ConvNormAct(w, 3, norm=norm, act=self.act, use_bias=True,
                        dtype=self.dtype, param_dtype=self.param_dtype,
                        name=f"conv{i + 1}_{j + 1}")(x)
      feats[f"conv{i + 1}"] = x
    if not self.ssd:
      feats["pool5"] = pool(x, 2)
      return feats
    x = max_pool(x, 3, 1, padding=((1, 1), (1, 1)))
    x = ConvNormAct(self.ssd_width, 3, dilation=6, padding=((6, 6), (6, 6)),
                    act=self.act, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="fc6")(x)
    feats["fc7"] = ConvNormAct(self.ssd_width, 1, act=self.act,
                               dtype=self.dtype, param_dtype=self.param_dtype,
                               name="fc7")(x)
    return feats


class VGG(ZooModule):
  """VGG classifier: images [B, H, W, C] -> logits [B, num_classes]."""
  num_classes: int = 1000
  stage_sizes: Sequence[int] = STAGES["vgg16"]
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  hidden: int = 4096
  use_batchnorm: bool = False
  dropout_rate: float = 0.5
  act: Callable = nn.relu
  ceil_mode: bool = True  # see the module docstring.

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    feats = VGGEncoder(self.stage_sizes, self.widths, self.use_batchnorm,
                       act=self.act, ceil_mode=self.ceil_mode,
                       axis_name=self.axis_name,
                       dtype=self.dtype, param_dtype=self.param_dtype,
                       name="features")(images, train)
    # Adaptive pooling makes the 7×7×512 classifier input size-independent.
    x = adaptive_avg_pool(feats["pool5"], 7).reshape(images.shape[0], -1)
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              param_dtype=self.param_dtype,
                              kernel_init=nn.initializers.normal(0.01))
    for i in range(2):
      x = self.act(dense(self.hidden, name=f"fc{i + 6}")(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return dense(self.num_classes, name="fc8")(x).astype(jnp.float32)


_SMOKE = frozen(stage_sizes=(1, 1, 1, 1, 1), widths=(4, 8, 8, 16, 16),
                hidden=16)


def _classifiers() -> Dict[str, ModelSpec]:
  out = {}
  for name, stages in STAGES.items():
    for bn in (False, True):
      out[name + ("_bn" if bn else "")] = ModelSpec(
          functools.partial(VGG, stage_sizes=stages, use_batchnorm=bn),
          "classification", smoke=frozen(**_SMOKE, use_batchnorm=bn))
  return out


REGISTRY: Dict[str, ModelSpec] = _classifiers()
