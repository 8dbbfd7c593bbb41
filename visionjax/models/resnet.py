"""ResNet-18/34/50/101/152 (He et al. 2016), torchvision layout.

Bottleneck blocks stride in the 3×3 convolution (ResNet v1.5, as torchvision
and the Flax examples), so parameter counts equal torchvision's: ResNet-18
11,689,512; ResNet-50 25,557,032 at 1,000 classes. Convolutions use
PyTorch's symmetric padding, so a stride-s feature of an H×W image is
ceil(H/s)×ceil(W/s) and ported weights give identical outputs.

Stems: 'imagenet' (7×7/2 conv + 3×3/2 max pool, total stride 32) or
'cifar' (3×3/1 conv, no pool, total stride 8 — the common CIFAR ResNet-18
with 11,173,962 parameters at 10 classes).

`output_stride` 8 or 16 replaces the strides of the last stages by
dilation (DeepLab's atrous ResNet; torchvision's
`replace_stride_with_dilation`): the first block of a dilated stage keeps the
previous dilation, the rest use the new one.

`stride_in_1x1=True` moves a bottleneck's stride to its first 1×1
convolution: the original ResNet v1 of He et al. and Caffe, which Keras'
`keras.applications.ResNet50` follows (same parameters, other function;
visionjax.weights.keras needs it to port those weights).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.layers import (
  ConvNormAct,
  ModelSpec,
  ModuleDef,
  ZooModule,
  batch_norm,
  check_images,
  frozen,
  max_pool,
)

DEPTHS = {  # name: (stage_sizes, block)
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
    "resnet101": ((3, 4, 23, 3), "bottleneck"),
    "resnet152": ((3, 8, 36, 3), "bottleneck"),
}


def _conv(features: int, k: int, stride: int = 1, dilation: int = 1,
          **kw: Any) -> ConvNormAct:
  pad = dilation * (k - 1) // 2  # PyTorch's symmetric "same" padding.
  return ConvNormAct(features, k, stride, padding=((pad, pad), (pad, pad)),
                     dilation=dilation, **kw)


class ResidualBlock(ZooModule):
  """Basic (two 3×3) or bottleneck (1×1, 3×3, 1×1·4) residual block.

  [B, H, W, C] -> [B, H/stride, W/stride, width·expansion]. The last norm's
  scale starts at zero (Goyal et al. 2017) so each block starts as identity.
  """
  width: int
  block: str = "basic"
  stride: int = 1
  dilation: int = 1
  norm: Optional[ModuleDef] = None
  act: Callable = nn.relu
  stride_in_1x1: bool = False  # ResNet v1 (Keras) instead of v1.5.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(norm=self.norm, dtype=self.dtype, param_dtype=self.param_dtype)
    zero = nn.initializers.zeros
    if self.block == "basic":
      out_ch = self.width
      y = _conv(self.width, 3, self.stride, self.dilation, act=self.act,
                name="conv1", **kw)(x)
      y = _conv(self.width, 3, 1, self.dilation, act=None,
                norm_scale_init=zero, name="conv2", **kw)(y)
    else:
      out_ch = 4 * self.width
      s1, s3 = (self.stride, 1) if self.stride_in_1x1 else (1, self.stride)
      y = _conv(self.width, 1, s1, act=self.act, name="conv1", **kw)(x)
      y = _conv(self.width, 3, s3, self.dilation, act=self.act,
                name="conv2", **kw)(y)
      y = _conv(out_ch, 1, act=None, norm_scale_init=zero, name="conv3",
                **kw)(y)
    if x.shape[-1] != out_ch or self.stride != 1:
      x = ConvNormAct(out_ch, 1, self.stride, padding="VALID", act=None,
                      name="downsample", **kw)(x)
    return self.act(x + y)


class ResNetEncoder(ZooModule):
  """ResNet trunk: images [B, H, W, C] -> dict of named features.

  'stem' (stride 2, or 1 for the CIFAR stem) and 'layer1'..'layer4'
  (strides 4, 8, 16, 32 for the ImageNet stem, capped at `output_stride`);
  `feature_strides` maps names to strides without running the model.
  """
  stage_sizes: Sequence[int] = DEPTHS["resnet50"][0]
  block: str = "bottleneck"
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: str = "imagenet"
  stem_width: int = 64
  output_stride: int = 32
  act: Callable = nn.relu
  stride_in_1x1: bool = False  # see the module docstring.

  def _plan(self) -> Tuple[int, list]:
    """Stem stride and per stage (stride, first dilation, dilation)."""
    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"ResNet: stem must be 'imagenet' or 'cifar', got "
                       f"{self.stem!r}")
    if self.block not in ("basic", "bottleneck"):
      raise ValueError(f"ResNet: block must be 'basic' or 'bottleneck', got "
                       f"{self.block!r}")
    stride = 2 if self.stem == "imagenet" else 1
    # The ImageNet stem's 3×3/2 max pool puts layer1 at stride 4.
    current, dilation, plan = 2 * stride if stride == 2 else 1, 1, []
    for i in range(len(self.stage_sizes)):
      s = 1 if i == 0 else 2
      prev = dilation
      if current * s > self.output_stride:
        dilation, s = dilation * s, 1
      current *= s
      plan.append((s, prev, dilation, current))
    return stride, plan

  @property
  def feature_strides(self) -> Dict[str, int]:
    stem, plan = self._plan()
    return {"stem": stem, **{f"layer{i + 1}": p[3]
                             for i, p in enumerate(plan)}}

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False
               ) -> Dict[str, jax.Array]:
    check_images(images, "ResNet")
    _, plan = self._plan()
    norm = batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
    x = images.astype(self.dtype)
    kw = dict(norm=norm, dtype=self.dtype, param_dtype=self.param_dtype)
    if self.stem == "imagenet":
      x = _conv(self.stem_width, 7, 2, act=self.act, name="stem", **kw)(x)
      feats = {"stem": x}
      x = max_pool(x, 3, 2, padding=((1, 1), (1, 1)))
    else:
      x = _conv(self.stem_width, 3, 1, act=self.act, name="stem", **kw)(x)
      feats = {"stem": x}
    block = functools.partial(ResidualBlock, block=self.block, act=self.act,
                              stride_in_1x1=self.stride_in_1x1, **kw)
    for i, (n, (stride, first_dil, dil, _)) in enumerate(
        zip(self.stage_sizes, plan)):
      for j in range(n):
        x = block(self.widths[i], stride=stride if j == 0 else 1,
                  dilation=first_dil if j == 0 else dil,
                  name=f"layer{i + 1}_{j}")(x)
      feats[f"layer{i + 1}"] = x
    return feats


class ResNet(ZooModule):
  """ResNet classifier: images [B, H, W, C] -> logits [B, num_classes]."""
  num_classes: int = 1000
  stage_sizes: Sequence[int] = DEPTHS["resnet50"][0]
  block: str = "bottleneck"
  widths: Sequence[int] = (64, 128, 256, 512)
  stem: str = "imagenet"
  stem_width: int = 64
  act: Callable = nn.relu
  stride_in_1x1: bool = False  # see the module docstring.

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    feats = ResNetEncoder(self.stage_sizes, self.block, self.widths,
                          self.stem, self.stem_width, act=self.act,
                          stride_in_1x1=self.stride_in_1x1,
                          axis_name=self.axis_name, dtype=self.dtype,
                          param_dtype=self.param_dtype,
                          name="encoder")(images, train)
    x = jnp.mean(feats[f"layer{len(self.stage_sizes)}"], axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="fc")(x)
    return x.astype(jnp.float32)


def _smoke(block: str) -> Any:
  return frozen(stage_sizes=(1, 1, 1, 1), widths=(4, 8, 8, 16),
                stem_width=4, block=block)


def _classifiers() -> Dict[str, ModelSpec]:
  out = {}
  for name, (stages, block) in DEPTHS.items():
    make = functools.partial(ResNet, stage_sizes=stages, block=block)
    out[name] = ModelSpec(make, "classification", smoke=_smoke(block))
    out[name + "_cifar"] = ModelSpec(
        functools.partial(make, stem="cifar", num_classes=10),
        "classification", input_size=(32, 32), smoke=frozen(
            **_smoke(block), stem="cifar"))
  return out


REGISTRY: Dict[str, ModelSpec] = _classifiers()
