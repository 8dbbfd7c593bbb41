"""EfficientNet (Tan & Le 2019), torchvision layout.

Stem 3×3/2 conv (32) -> seven stages of MBConv blocks (inverted residual:
1×1 expansion, k×k depthwise conv, squeeze-and-excitation with
max(1, C_in/4) channels, 1×1 projection; residual + stochastic depth when
the shape is kept) -> 1×1 conv to 1280 -> global average pool -> dropout ->
classifier. All convs are conv + BatchNorm (+ SiLU), biases only in SE.
Depthwise convs go through `layers.depthwise_conv_impl` ('auto': slicing
on CPU, grouped convolution elsewhere; equal outputs and gradients).
EfficientNet-B0 has torchvision's 5,288,548 parameters at 1,000 classes.

`width_mult`/`depth_mult` give the compound-scaled variants (B1: 1.0/1.1,
B2: 1.1/1.2, B3: 1.2/1.4, ...), channels rounded to multiples of 8.
Stochastic depth drops whole residual branches per example with probability
growing linearly to `stochastic_depth` at the last block, using the
'dropout' RNG stream.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.layers import (
  ConvNormAct,
  ModelSpec,
  ZooModule,
  batch_norm,
  check_images,
  depthwise_conv_impl,
  frozen,
)

# (expand ratio, kernel, stride, input channels, output channels, layers)
B0_STAGES: Tuple[Tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1))


def round_channels(c: float, divisor: int = 8) -> int:
  """torchvision's `_make_divisible`: nearest multiple, never below 90%."""
  new = max(divisor, int(c + divisor / 2) // divisor * divisor)
  return new + divisor if new < 0.9 * c else new


def _same(k: int) -> Any:
  p = (k - 1) // 2  # PyTorch pads (k-1)//2 on both sides at any stride.
  return ((p, p), (p, p))


class MBConv(ZooModule):
  """Inverted residual block: [B, H, W, C_in] -> [B, H/s, W/s, C_out]."""
  expand: int
  kernel: int
  stride: int
  out_ch: int
  drop_rate: float = 0.0
  depthwise_impl: str = "auto"
  norm: Any = None
  act: Callable = nn.silu

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    in_ch = x.shape[-1]
    conv = functools.partial(ConvNormAct, norm=self.norm, act=self.act,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    hidden = in_ch * self.expand
    y = x
    if hidden != in_ch:
      y = conv(hidden, 1, name="expand")(y)
    y = conv(hidden, self.kernel, self.stride, padding=_same(self.kernel),
             groups=hidden, conv_impl=depthwise_conv_impl(
                 self.depthwise_impl), name="depthwise")(y)
    # Squeeze-and-excitation, squeezing to a quarter of the *input* width.
    se = jnp.mean(y, axis=(1, 2), keepdims=True)
    se = nn.Conv(max(1, in_ch // 4), (1, 1), dtype=self.dtype,
                 param_dtype=self.param_dtype, name="se_reduce")(se)
    se = nn.Conv(hidden, (1, 1), dtype=self.dtype,
                 param_dtype=self.param_dtype,
                 name="se_expand")(self.act(se))
    y = y * jax.nn.sigmoid(se)
    y = conv(self.out_ch, 1, act=None, name="project")(y)
    if self.stride == 1 and in_ch == self.out_ch:
      # Stochastic depth: per-example drop of the branch, rescaled.
      y = nn.Dropout(self.drop_rate, broadcast_dims=(1, 2, 3),
                     deterministic=not train)(y)
      y = x + y
    return y


class EfficientNet(ZooModule):
  """EfficientNet classifier: images [B, H, W, C] -> logits [B, num_classes]."""
  num_classes: int = 1000
  width_mult: float = 1.0
  depth_mult: float = 1.0
  stages: Sequence[Tuple[int, int, int, int, int, int]] = B0_STAGES
  stem_width: int = 32
  head_width: Optional[int] = None  # None: 4 × the last stage (1280).
  dropout_rate: float = 0.2
  stochastic_depth: float = 0.2
  depthwise_impl: str = "auto"  # see layers.depthwise_conv_impl.
  act: Callable = nn.silu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "EfficientNet")
    norm = batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
    conv = functools.partial(ConvNormAct, norm=norm, act=self.act,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    x = conv(round_channels(self.stem_width * self.width_mult), 3, 2,
             padding=_same(3), name="stem")(images.astype(self.dtype))
    repeats = [int(math.ceil(s[5] * self.depth_mult)) for s in self.stages]
    total, block_id = sum(repeats), 0
    for i, ((e, k, s, _, c, _), n) in enumerate(zip(self.stages, repeats)):
      for j in range(n):
        x = MBConv(e, k, s if j == 0 else 1,
                   round_channels(c * self.width_mult),
                   drop_rate=self.stochastic_depth * block_id / total,
                   depthwise_impl=self.depthwise_impl,
                   norm=norm, act=self.act, dtype=self.dtype,
                   param_dtype=self.param_dtype,
                   name=f"stage{i + 1}_{j}")(x, train)
        block_id += 1
    last = self.head_width or 4 * round_channels(
        self.stages[-1][4] * self.width_mult)
    x = conv(last, 1, name="head")(x)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="classifier")(x)
    return x.astype(jnp.float32)


# (width, depth, resolution, dropout) of the compound-scaled family.
SCALING = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2),
           "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3)}


def _variants() -> Dict[str, ModelSpec]:
  out = {}
  for name, (wm, dm, res, drop) in SCALING.items():
    out[f"efficientnet_{name}"] = ModelSpec(
        functools.partial(EfficientNet, width_mult=wm, depth_mult=dm,
                          dropout_rate=drop), "classification",
        input_size=(res, res),
        # Two stages keep every code path: no-expansion block, expansion
        # with a 5×5 stride-2 depthwise conv, residual + stochastic depth.
        smoke=frozen(stages=((1, 3, 1, 8, 8, 1), (6, 5, 2, 8, 16, 2)),
                     stem_width=8, head_width=32, width_mult=1.0,
                     depth_mult=1.0, dropout_rate=0.2))
  return out


REGISTRY: Dict[str, ModelSpec] = _variants()
