"""Plain conv/pool classifiers: the seed's CIFAR-10 CNN, LeNet-5, AlexNet.

SmallCNN and LeNet-5 flatten their last feature map into a dense head, so
they take the input size they were designed for (32×32; LeNet-5 zero-pads
smaller digits up to 32×32 as LeCun et al. did with 28×28 MNIST). AlexNet
pools adaptively to 6×6 before its classifier and takes any size ≥ 63×63.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from visionjax.models.layers import (
  ModelSpec,
  ZooModule,
  adaptive_avg_pool,
  check_images,
  frozen,
  max_pool,
)


class SmallCNN(ZooModule):
  """The seed's CIFAR-10 CNN: [B, 32, 32, 3] -> logits [B, num_classes].

  Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10 with 3×3 'VALID'
  convolutions, ReLU and 2×2 max pools: 122,570 parameters at 32×32×3
  (feature map 32 -> 30 -> 15 -> 13 -> 6 -> 4, flattened 4·4·64 = 1024).
  """
  num_classes: int = 10
  features: Sequence[int] = (32, 64, 64)
  hidden: int = 64
  dropout_rate: float = 0.0
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "SmallCNN")
    x = images.astype(self.dtype)
    for i, f in enumerate(self.features):
      x = nn.Conv(f, (3, 3), padding="VALID", dtype=self.dtype,
                  param_dtype=self.param_dtype, name=f"conv{i + 1}")(x)
      x = self.act(x)
      if i < len(self.features) - 1:  # no pool after the last conv (seed).
        x = max_pool(x, 2)
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(self.hidden, dtype=self.dtype, param_dtype=self.param_dtype,
                 name="fc1")(x)
    x = self.act(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="fc2")(x)
    return x.astype(jnp.float32)


class LeNet5(ZooModule):
  """LeNet-5 (LeCun et al. 1998): [B, ≤32, ≤32, C] -> logits [B, num_classes].

  C1 6@5×5 -> S2 avg-pool -> C3 16@5×5 -> S4 avg-pool -> C5 120@5×5 ->
  F6 84 -> output. Modern form: fully connected C3 and a dense output layer
  instead of the paper's partial C3 connection table and RBF units (61,706
  parameters for 1 channel and 10 classes). Inputs smaller than 32×32 are
  zero-padded centrally to 32×32, as the paper padded 28×28 MNIST digits.
  """
  num_classes: int = 10
  features: Sequence[int] = (6, 16, 120)
  hidden: int = 84
  act: Callable = nn.tanh

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or BatchNorm in LeNet-5.
    check_images(images, "LeNet5")
    h, w = images.shape[1:3]
    if h > 32 or w > 32:
      raise ValueError(f"LeNet5: images must be at most 32×32, got {h}×{w}")
    top, left = (32 - h) // 2, (32 - w) // 2
    x = jnp.pad(images.astype(self.dtype),
                ((0, 0), (top, 32 - h - top), (left, 32 - w - left), (0, 0)))
    conv = functools.partial(nn.Conv, kernel_size=(5, 5), padding="VALID",
                             dtype=self.dtype, param_dtype=self.param_dtype)
    c1, c3, c5 = self.features
    x = self.act(conv(c1, name="c1")(x))                       # 28×28
    x = nn.avg_pool(x, (2, 2), (2, 2))                         # 14×14
    x = self.act(conv(c3, name="c3")(x))                       # 10×10
    x = nn.avg_pool(x, (2, 2), (2, 2))                         # 5×5
    x = self.act(conv(c5, name="c5")(x))                       # 1×1
    x = x.reshape(x.shape[0], -1)
    x = self.act(nn.Dense(self.hidden, dtype=self.dtype,
                          param_dtype=self.param_dtype, name="f6")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="output")(x)
    return x.astype(jnp.float32)


class AlexNet(ZooModule):
  """AlexNet, torchvision's single-GPU form: [B, H, W, C] -> [B, num_classes].

  Krizhevsky et al. (2012) split conv layers across two GPUs; torchvision
  follows Krizhevsky's "One weird trick" (2014) single-tower widths
  (64, 192, 384, 256, 256) and has 61,100,840 parameters at 1,000 classes.
  Conv 11×11/4 -> pool 3/2 -> conv 5×5 -> pool -> conv 3×3 ×3 -> pool ->
  adaptive average pool 6×6 -> dropout-4096-dropout-4096-num_classes.
  """
  num_classes: int = 1000
  widths: Sequence[int] = (64, 192, 384, 256, 256)
  hidden: int = 4096
  dropout_rate: float = 0.5
  act: Callable = nn.relu

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    check_images(images, "AlexNet")
    if min(images.shape[1:3]) < 63:
      raise ValueError("AlexNet: images must be at least 63×63 (three 3×3/2 "
                       f"pools after a stride-4 conv), got "
                       f"{images.shape[1]}×{images.shape[2]}")
    conv = functools.partial(nn.Conv, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    x = images.astype(self.dtype)
    # (kernel, stride, padding, pool after) per layer, as in torchvision.
    layout = ((11, 4, 2, True), (5, 1, 2, True), (3, 1, 1, False),
              (3, 1, 1, False), (3, 1, 1, True))
    for i, (w, (k, s, p, pool)) in enumerate(zip(self.widths, layout)):
      x = self.act(conv(w, (k, k), (s, s), padding=((p, p), (p, p)),
                        name=f"conv{i + 1}")(x))
      if pool:
        x = max_pool(x, 3, 2)
    x = adaptive_avg_pool(x, 6).reshape(x.shape[0], -1)
    for i in range(2):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = self.act(nn.Dense(self.hidden, dtype=self.dtype,
                            param_dtype=self.param_dtype,
                            name=f"fc{i + 6}")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype,
                 param_dtype=self.param_dtype, name="fc8")(x)
    return x.astype(jnp.float32)


REGISTRY: dict[str, ModelSpec] = {
    "small_cnn": ModelSpec(
        functools.partial(SmallCNN), "classification", input_size=(32, 32),
        smoke=frozen(features=(8, 8, 8), hidden=16), smoke_size=(32, 32)),
    "lenet5": ModelSpec(
        functools.partial(LeNet5), "classification", input_size=(32, 32),
        smoke=frozen(), smoke_size=(28, 28), in_channels=1),
    "alexnet": ModelSpec(
        functools.partial(AlexNet), "classification",
        smoke=frozen(widths=(4, 8, 8, 8, 8), hidden=16),
        smoke_size=(67, 65)),
}
