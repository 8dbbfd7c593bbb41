"""Augmentations on canonical examples, as small ``(seed, ex) -> ex`` factories.

A canonical example is a dict with ``image`` uint8 [H, W, 3] and, depending on
the dataset, ``label`` [], ``mask`` [H, W] (255 = ignore) and ``boxes``
[N, 4] normalized (ymin, xmin, ymax, xmax) with ``box_labels`` [N]. Every op
keeps image, mask and boxes in sync and draws its randomness from stateless
TF ops seeded by ``seed`` (an int64 [2] tensor), so a pipeline is
deterministic given its seed and works both eagerly and inside ``tf.data``.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

Example = dict[str, tf.Tensor]
Op = Callable[[tf.Tensor, Example], Example]


def _sub_seed(seed: tf.Tensor, k: int) -> tf.Tensor:
  """An independent stateless seed for the k-th op of a chain."""
  return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)


def color_jitter(brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.05) -> Op:
  """Random brightness/contrast/saturation/hue; geometry untouched."""

  def op(seed: tf.Tensor, ex: Example) -> Example:
    img = tf.image.convert_image_dtype(ex["image"], tf.float32)
    s = [_sub_seed(seed, i) for i in range(4)]
    if brightness:
      img = tf.image.stateless_random_brightness(img, brightness, s[0])
    if contrast:
      img = tf.image.stateless_random_contrast(img, 1 - contrast, 1 + contrast, s[1])
    if saturation:
      img = tf.image.stateless_random_saturation(img, 1 - saturation, 1 + saturation, s[2])
    if hue:
      img = tf.image.stateless_random_hue(img, hue, s[3])
    img = tf.image.convert_image_dtype(tf.clip_by_value(img, 0.0, 1.0), tf.uint8,
                                       saturate=True)
    return {**ex, "image": img}

  return op


def chain(ops: list[Op]) -> Op:
  """Applies ``ops`` in order, each with its own sub-seed."""

  def op(seed: tf.Tensor, ex: Example) -> Example:
    for i, o in enumerate(ops):
      ex = o(_sub_seed(seed, i + 1000), ex)
    return ex

  return op


# Name -> factory, used by configs (`config.dataset.augment = ('color_jitter',)`).
OPS: dict[str, Callable[..., Op]] = {
    "color_jitter": color_jitter,
}
