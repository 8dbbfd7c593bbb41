"""Classification with localization: one object per image, one box.

A backbone's coarsest feature map is globally average-pooled and fed to two
heads: a class head (logits for p_1..p_K) and a box-regression head whose
four outputs pass through a sigmoid to give the box as (cx, cy, w, h)
normalised to [0, 1] by the image width and height — the classic
`[p_1..p_K, b_x, b_y, b_w, b_h]` target, returned as a dict:

    {'logits': [B, K], 'boxes': [B, 4]}

Any backbone in backbones.ENCODERS works; the box head is initialised at
zero so every box starts as the centred half-size box (0.5, 0.5, 0.5, 0.5)
and early box gradients do not depend on a random projection.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.backbones import SMOKE_ENCODER, build_encoder, coarsest
from visionjax.models.layers import ModelSpec, ZooModule, frozen


class Localizer(ZooModule):
  """images [B, H, W, C] -> {'logits': [B, K], 'boxes': [B, 4] (cx,cy,w,h)}."""
  num_classes: int = 20
  encoder: str = "resnet18"
  encoder_kwargs: Optional[Mapping[str, Any]] = None
  hidden: int = 0  # >0 adds a shared hidden dense layer before both heads.
  dropout_rate: float = 0.0
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False
               ) -> Dict[str, jax.Array]:
    enc = build_encoder(self.encoder, self.encoder_kwargs,
                        axis_name=self.axis_name, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="encoder")
    feats = enc(images, train=train)
    x = jnp.mean(feats[coarsest(enc.feature_strides)], axis=(1, 2))
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              param_dtype=self.param_dtype)
    if self.hidden:
      x = self.act(dense(self.hidden, name="hidden")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    logits = dense(self.num_classes, name="class_head")(x)
    boxes = dense(4, kernel_init=nn.initializers.zeros, name="box_head")(x)
    return {"logits": logits.astype(jnp.float32),
            "boxes": jax.nn.sigmoid(boxes.astype(jnp.float32))}


def _variants() -> Dict[str, ModelSpec]:
  out = {}
  for enc in ("resnet18", "resnet50", "vgg16"):
    out[f"{enc}_localizer"] = ModelSpec(
        functools.partial(Localizer, encoder=enc), "localization",
        smoke=frozen(encoder_kwargs=SMOKE_ENCODER[enc]))
  return out


REGISTRY: Dict[str, ModelSpec] = _variants()
