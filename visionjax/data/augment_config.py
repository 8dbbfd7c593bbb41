"""`config.dataset.augment` -> a chain of augmentation ops (`augment.OPS`).

Entries are op names or ``(name, {option: value})``. Ops taking ``size``
default to ``config.dataset.image_size``, ops taking ``fill`` to the
dataset's mean pixel (so padding normalizes to zero).
"""
from __future__ import annotations

import inspect
from typing import Mapping

import ml_collections
import numpy as np
import tensorflow as tf

from visionjax.data import augment as augment_lib
from visionjax.data.datasets import mean_pixel


def _augment_entry(entry) -> tuple[str, dict]:
  """``'name'`` or ``('name', {kwargs})`` -> (name, kwargs)."""
  if isinstance(entry, str):
    return entry, {}
  if (isinstance(entry, (tuple, list)) and len(entry) == 2
      and isinstance(entry[0], str) and hasattr(entry[1], "items")):
    return entry[0], dict(entry[1].items())
  raise ValueError(f"bad config.dataset.augment entry {entry!r}; expected a "
                   "name or a (name, {option: value}) pair")


def make_augment(dc: ml_collections.ConfigDict, train: bool) -> augment_lib.Op:
  """The chain of augmentation ops named by ``dc.augment`` (none when not
  ``train``)."""
  entries = [_augment_entry(e) for e in (dc.get("augment", ()) if train else ())]
  unknown = [n for n, _ in entries if n not in augment_lib.OPS]
  if unknown:
    raise ValueError(f"unknown augmentation(s) {unknown}; known: "
                     f"{sorted(augment_lib.OPS)}")
  ops = []
  for name, kwargs in entries:
    factory = augment_lib.OPS[name]
    params = inspect.signature(factory).parameters
    if "size" in params and "size" not in kwargs and dc.get("image_size"):
      kwargs["size"] = tuple(dc.image_size)
    if "fill" in params and "fill" not in kwargs:
      kwargs["fill"] = mean_pixel(dc)
    try:
      ops.append(factory(**kwargs))
    except TypeError as e:
      raise ValueError(f"bad option for augmentation {name!r}: {e}") from None
  return augment_lib.chain(ops)


def preview(dc: ml_collections.ConfigDict, example: Mapping[str, object], count: int, *,
            seed: int = 0) -> list[dict[str, np.ndarray]]:
  """``count`` draws of the training augmentation of ``dc`` on one example.

  Draw ``i`` is what training gives the example at position ``i`` of the
  stream of a run with ``config.seed = seed`` (the op's seed is ``(seed,
  i)``, as in `visionjax.data.pipeline.train_dataset`), before it is fitted
  to ``dc.image_size`` and normalized.

  Args:
    dc: a dataset config (``config.dataset``); its ``augment`` is applied.
    example: a canonical example (NumPy or tensors), e.g. from
      `visionjax.data.pipeline.examples`.
    count: how many draws.
    seed: the run's seed.

  Returns:
    ``count`` canonical examples in NumPy (``image`` uint8 [h, w, 3], and the
    example's mask/boxes moved with it).
  """
  op = make_augment(dc, train=True)
  ex = {k: tf.convert_to_tensor(v) for k, v in example.items()}
  return [{k: v.numpy() for k, v in op(tf.constant([seed, i], tf.int64), ex).items()}
          for i in range(count)]
