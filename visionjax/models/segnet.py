"""SegNet (Badrinarayanan, Kendall & Cipolla 2017).

Encoder: the 13 convolutional layers of VGG-16, each 3×3 conv + BatchNorm +
ReLU, with 2×2/2 max pooling that records the argmax position of every
window. Decoder: the mirror image; each stage first *unpools with the
indices of the matching encoder pool* — every value goes back to the exact
position its maximum came from, zeros elsewhere — and then densifies the
sparse map with 3×3 conv + BN + ReLU layers. The last decoder conv outputs
the class scores directly (no BN/ReLU), as in the reference Caffe model.

The pooling ops are `visionjax.ops.pooling.max_pool_with_indices` and
`max_unpool` (non-overlapping windows: a one-hot multiply and a reshape, no
scatter). Inputs are padded to a multiple of 32 and logits cropped back.
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
  batch_norm,
  check_images,
  crop_to,
  frozen,
  pad_to_multiple,
)
from visionjax.ops.pooling import max_pool_with_indices, max_unpool


class SegNet(ZooModule):
  """SegNet: images [B, H, W, C] -> logits [B, H, W, num_classes] (any H, W).

  `stage_sizes`/`widths` give the encoder (VGG-16: (2, 2, 3, 3, 3) and
  (64, 128, 256, 512, 512)); decoder stage i mirrors encoder stage i: its
  convs keep widths[i] except the last, which narrows to widths[i - 1]
  (num_classes after the first stage).
  """
  num_classes: int = 21
  stage_sizes: Sequence[int] = (2, 2, 3, 3, 3)
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  dropout_rate: float = 0.0
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "SegNet")
    if len(self.stage_sizes) != len(self.widths):
      raise ValueError(f"SegNet: stage_sizes {tuple(self.stage_sizes)} and "
                       f"widths {tuple(self.widths)} must have equal length")
    norm = batch_norm(train, self.axis_name, self.dtype, self.param_dtype)
    conv = functools.partial(ConvNormAct, kernel_size=3, norm=norm,
                             act=self.act, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x, (h, w) = pad_to_multiple(images.astype(self.dtype),
                                2 ** len(self.stage_sizes))
    pools = []  # (pre-pool size, indices) per encoder stage.
    for i, (n, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for j in range(n):
        x = conv(width, name=f"conv{i + 1}_{j + 1}")(x)
      size = x.shape[1:3]
      x, idx = max_pool_with_indices(x, 2, 2)
      pools.append((size, idx))
    # Bayesian SegNet's dropout sits at the deepest encoder output.
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)

    for i in reversed(range(len(self.stage_sizes))):
      size, idx = pools[i]
      x = max_unpool(x, idx, size, 2, 2)
      self.sow("intermediates", f"unpool{i + 1}", x)  # inspectable sparsity.
      n, width = self.stage_sizes[i], self.widths[i]
      for j in reversed(range(n)):
        name = f"conv{i + 1}_{j + 1}_D"
        if j > 0:
          x = conv(width, name=name)(x)
        elif i > 0:
          x = conv(self.widths[i - 1], name=name)(x)
        else:  # final classifier conv: scores, no BN or ReLU.
          x = nn.Conv(self.num_classes, (3, 3), padding="SAME",
                      dtype=self.dtype, param_dtype=self.param_dtype,
                      name=name)(x)
    return crop_to(x, (h, w)).astype(jnp.float32)


REGISTRY: Dict[str, ModelSpec] = {
    "segnet": ModelSpec(
        functools.partial(SegNet), "segmentation", input_size=(360, 480),
        smoke=frozen(stage_sizes=(1, 2, 1, 1, 1), widths=(4, 8, 8, 16, 16))),
    "segnet_small": ModelSpec(
        functools.partial(SegNet, stage_sizes=(2, 2, 2, 2),
                          widths=(16, 32, 64, 64)), "segmentation",
        input_size=(64, 64), smoke=frozen(widths=(4, 8, 8, 16))),
}
