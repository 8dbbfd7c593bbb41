"""SSD: Single Shot MultiBox Detector (Liu et al. 2016) on any backbone.

    images [B, H, W, C] -> {'logits':  [B, A, K+1]  (class 0 = background),
                            'offsets': [B, A, 4]    (encoded, see detection.coding),
                            'anchors': [A, 4]       (default boxes, cx cy w h)}

``num_classes`` K counts the *foreground* classes (20 on VOC); the heads
predict K + 1 scores per default box. The default boxes are computed from
the actual feature-map shapes at trace time (a NumPy constant), so the same
module works at any input size and the loss/post-processing need nothing
but the model outputs.

Architecture: backbone feature maps named in ``sources`` (optionally
L2-normalised with a learned per-channel scale initialised at 20, as SSD
does for conv4_3), then the ``extras``: pairs of a 1×1 convolution to
``mid`` channels and a k×k convolution to ``out`` channels with stride s and
padding p, each extra output being one more source. Every source gets two
3×3 convolutions: 4·n box offsets and (K+1)·n class scores for its n default
boxes per cell.

Registered models:
  ssd300_vgg16    VGG-16 (conv4_3 + L2Norm, dilated fc6/fc7) + 4 extras at
                  300×300: maps 38, 19, 10, 5, 3, 1 -> 8,732 default boxes;
                  26,285,486 parameters at K = 20 ("about 26.3M"; counted
                  layer by layer in tests/test_models_ssd.py).
  ssd512_vgg16    the same with 5 extras at 512×512: 64 .. 1 -> 24,564 boxes.
  ssd300_resnet18 a lighter SSD: ResNet-18 layer2/3/4 (strides 8, 16, 32) +
                  3 BatchNorm extras at 300×300, the SSD300 default boxes.
  ssd_lite        a small ResNet (3 stages, widths 32/64/128) for the 64×64
                  digit scenes: maps 8×8 and 4×4, 6 boxes per cell (480).
  ssd300_vgg16_tv torchvision's `ssd300_vgg16`: the same network as
                  ssd300_vgg16 with torchvision's default boxes
                  (`TORCHVISION_SSD300_SPECS`: scales 0.07, 0.15, 0.33 ..
                  1.05, steps 8 .. 300, widths/heights capped at 1 as its
                  DefaultBoxGenerator(clip=True) does), for ported weights.
                  torchvision counts the background in its num_classes (91
                  on COCO = 90 here) and normalises inside the model (0-255
                  pixels minus mean·255, std 1; visionjax.weights returns
                  that as the preprocessing). Its pool1/2/4 are floor mode,
                  pool3 ceil: identical to these ceil pools at 300×300, the
                  only size torchvision feeds (it resizes every image).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from visionjax.detection import anchors as anchor_lib
from visionjax.models.backbones import SMOKE_ENCODER, build_encoder
from visionjax.models.layers import (
    ConvNormAct,
    Dtype,
    ModelSpec,
    ZooModule,
    batch_norm,
    check_images,
    frozen,
)

# (mid channels, out channels, kernel, stride, padding) of each extra layer pair.
Extra = Tuple[int, int, int, int, int]
SSD300_EXTRAS: Tuple[Extra, ...] = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1),
                                    (128, 256, 3, 1, 0), (128, 256, 3, 1, 0))
SSD512_EXTRAS: Tuple[Extra, ...] = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1),
                                    (128, 256, 3, 2, 1), (128, 256, 3, 2, 1),
                                    (128, 256, 4, 1, 1))
RESNET300_EXTRAS: Tuple[Extra, ...] = ((128, 256, 3, 2, 1), (128, 256, 3, 1, 0),
                                       (128, 256, 3, 1, 0))

# Default boxes for the 64×64 digit scenes (objects 0.16-0.47 of the image,
# width/height 0.46-1.0): sizes 0.2-0.3 on the 8×8 map, 0.35-0.5 on 4×4.
LITE_SPECS = (anchor_lib.AnchorSpec(0.2, 0.3, (2.0, 1.5)),
              anchor_lib.AnchorSpec(0.35, 0.5, (2.0, 1.5)))

# torchvision's ssd300_vgg16 DefaultBoxGenerator: s_k from its scales list,
# s'_k = sqrt(s_k · s_{k+1}), centres every steps[k] of 300 pixels.
_TV_SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
_TV_STEPS = (8, 16, 32, 64, 100, 300)
_TV_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
TORCHVISION_SSD300_SPECS = tuple(
    anchor_lib.AnchorSpec(_TV_SCALES[k], _TV_SCALES[k + 1], _TV_RATIOS[k],
                          _TV_STEPS[k] / 300) for k in range(6))


class L2Norm(nn.Module):
  """x / ||x||₂ over channels times a learned scale [C] (init 20, ParseNet).

  [B, H, W, C] -> [B, H, W, C]; computed in float32.
  """
  scale_init: float = 20.0
  eps: float = 1e-10
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.initializers.constant(self.scale_init),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True)) + self.eps
    return (x32 / norm * scale.astype(jnp.float32)).astype(x.dtype)


class SSD(ZooModule):
  """SSD detector; see the module docstring for inputs and outputs.

  Inputs are checked like the rest of the zoo (`ZooModule`, `check_images`):
  float images only, the channel count the params were built with, and
  ``num_classes >= 1`` foreground classes.

  anchor_specs: one `AnchorSpec` per source (backbone sources first, then
    extras); None uses the paper's scales (0.2 .. 0.9, ratios 2 and 3).
  clip_anchors: clip the default boxes' corners to the image.
  clamp_anchor_sizes: cap default-box widths/heights at 1 and leave the
    centres alone (torchvision's clip); a box can still reach outside.
  extra_norm: BatchNorm in the extra layers (for BatchNorm backbones).
  """
  num_classes: int = 20
  encoder: str = "vgg16"
  encoder_kwargs: Optional[Mapping[str, Any]] = None
  sources: Sequence[str] = ("conv4", "fc7")
  l2norm_sources: Sequence[str] = ("conv4",)
  extras: Sequence[Extra] = SSD300_EXTRAS
  anchor_specs: Optional[Sequence[anchor_lib.AnchorSpec]] = None
  clip_anchors: bool = False
  clamp_anchor_sizes: bool = False
  extra_norm: bool = False
  act: Callable = nn.relu

  def specs(self) -> Tuple[anchor_lib.AnchorSpec, ...]:
    n = len(self.sources) + len(self.extras)
    specs = (anchor_lib.paper_specs(n) if self.anchor_specs is None
             else tuple(self.anchor_specs))
    if len(specs) != n:
      raise ValueError(f"SSD: {len(specs)} anchor specs for {n} feature maps "
                       f"({len(self.sources)} sources + {len(self.extras)} extras)")
    return specs

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False
               ) -> Dict[str, jax.Array]:
    check_images(images, "SSD")
    specs = self.specs()
    enc = build_encoder(self.encoder, self.encoder_kwargs,
                        axis_name=self.axis_name, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="encoder")
    feats = enc(images, train=train)
    missing = [s for s in self.sources if s not in feats]
    if missing:
      raise ValueError(f"SSD: sources {missing} are not features of encoder "
                       f"{self.encoder!r}; it has {sorted(feats)}")
    maps = []
    for name in self.sources:
      x = feats[name]
      if name in self.l2norm_sources:
        x = L2Norm(param_dtype=self.param_dtype, name=f"{name}_l2norm")(x)
      maps.append(x)
    norm = (batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
            if self.extra_norm else None)
    kw = dict(norm=norm, act=self.act, dtype=self.dtype,
              param_dtype=self.param_dtype)
    x = feats[self.sources[-1]]
    for i, (mid, out, k, s, p) in enumerate(self.extras):
      x = ConvNormAct(mid, 1, name=f"extra{i + 1}_1", **kw)(x)
      x = ConvNormAct(out, k, s, padding=((p, p), (p, p)),
                      name=f"extra{i + 1}_2", **kw)(x)
      if min(x.shape[1:3]) < 1:
        raise ValueError(f"SSD: input {images.shape[1:3]} is too small for "
                         f"extra layer {i + 1} (feature map {x.shape[1:3]})")
      maps.append(x)
    logits, offsets = [], []
    head = functools.partial(nn.Conv, kernel_size=(3, 3), padding="SAME",
                             dtype=self.dtype, param_dtype=self.param_dtype)
    b = images.shape[0]
    for i, (x, spec) in enumerate(zip(maps, specs)):
      n = spec.boxes_per_location
      offsets.append(head(4 * n, name=f"loc{i}")(x).reshape(b, -1, 4))
      logits.append(head((self.num_classes + 1) * n, name=f"conf{i}")(x)
                    .reshape(b, -1, self.num_classes + 1))
    boxes = anchor_lib.default_boxes([m.shape[1:3] for m in maps], specs,
                                     clip=self.clip_anchors)
    if self.clamp_anchor_sizes:  # NumPy at trace time, like the boxes.
      boxes = np.concatenate([boxes[:, :2], np.minimum(boxes[:, 2:], 1.0)],
                             -1)
    return {"logits": jnp.concatenate(logits, 1).astype(jnp.float32),
            "offsets": jnp.concatenate(offsets, 1).astype(jnp.float32),
            "anchors": jnp.asarray(boxes)}


_VGG_SMOKE = frozen(**SMOKE_ENCODER["vgg16"], ssd=True, ssd_width=16)
_RESNET_SMOKE = SMOKE_ENCODER["resnet18"]
_SMOKE_EXTRAS = ((4, 8, 3, 2, 1), (4, 8, 3, 1, 0))

REGISTRY: Dict[str, ModelSpec] = {
    "ssd300_vgg16": ModelSpec(
        functools.partial(SSD, encoder="vgg16", encoder_kwargs=frozen(ssd=True),
                          anchor_specs=anchor_lib.ssd300_specs()),
        "detection", input_size=(300, 300),
        smoke=frozen(encoder_kwargs=_VGG_SMOKE, extras=_SMOKE_EXTRAS,
                     anchor_specs=None), smoke_size=(96, 96)),
    "ssd300_vgg16_tv": ModelSpec(
        functools.partial(SSD, encoder="vgg16", encoder_kwargs=frozen(ssd=True),
                          anchor_specs=TORCHVISION_SSD300_SPECS,
                          clamp_anchor_sizes=True),
        "detection", input_size=(300, 300),
        smoke=frozen(encoder_kwargs=_VGG_SMOKE, extras=_SMOKE_EXTRAS,
                     anchor_specs=None), smoke_size=(96, 96)),
    "ssd512_vgg16": ModelSpec(
        functools.partial(SSD, encoder="vgg16", encoder_kwargs=frozen(ssd=True),
                          extras=SSD512_EXTRAS,
                          anchor_specs=anchor_lib.ssd512_specs()),
        "detection", input_size=(512, 512),
        smoke=frozen(encoder_kwargs=_VGG_SMOKE, extras=_SMOKE_EXTRAS,
                     anchor_specs=None), smoke_size=(96, 96)),
    "ssd300_resnet18": ModelSpec(
        functools.partial(SSD, encoder="resnet18", sources=("layer2", "layer3", "layer4"),
                          l2norm_sources=(), extras=RESNET300_EXTRAS, extra_norm=True,
                          anchor_specs=anchor_lib.ssd300_specs()),
        "detection", input_size=(300, 300),
        smoke=frozen(encoder_kwargs=_RESNET_SMOKE, extras=_SMOKE_EXTRAS[:1],
                     anchor_specs=None), smoke_size=(64, 64)),
    "ssd_lite": ModelSpec(
        functools.partial(SSD, encoder="resnet18",
                          encoder_kwargs=frozen(stage_sizes=(2, 2, 2), widths=(32, 64, 128),
                                                stem_width=32),
                          sources=("layer2", "layer3"), l2norm_sources=(), extras=(),
                          anchor_specs=LITE_SPECS),
        "detection", input_size=(64, 64),
        smoke=frozen(encoder_kwargs=frozen(stage_sizes=(1, 1, 1), widths=(4, 8, 8),
                                           stem_width=4)), smoke_size=(64, 64)),
}
