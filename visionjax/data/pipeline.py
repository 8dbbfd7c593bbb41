"""tf.data input pipelines: TFDS split -> canonical examples -> host batches.

Every dataset is first mapped to one *canonical* example layout by its adapter
(`visionjax.data.adapters`), then a task-specific preprocessing turns it into
model inputs. The pipeline yields NumPy host batches (this process's share of
the global batch); `visionjax.train.parallel` places them on the device mesh.

Guarantees:
* Training order and augmentation are a deterministic function of
  ``config.seed``: shuffling uses a fixed seed and random augmentations draw
  from stateless ops seeded by ``(seed, example_index)``. A resumed run skips
  the batches already consumed (``start_step``), so 5 + 5 steps see exactly the
  data that 10 uninterrupted steps see.
* Each host reads a disjoint part of the split (`tfds.split_for_jax_process`).
* Evaluation batches are padded to the full host batch with ``valid=False``
  examples, and every host yields the same number of batches, so each example
  counts exactly once and multi-host evaluation never deadlocks.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from visionjax.data import adapters

Batch = dict[str, np.ndarray]
TASKS = ("classification", "segmentation", "localization", "detection")


def host_batch_size(global_batch: int) -> int:
  """This process's share of the global batch (which must split evenly)."""
  n_proc, n_dev = jax.process_count(), jax.device_count()
  if global_batch % n_dev:
    raise ValueError(
        f"batch_size={global_batch} must be divisible by the number of "
        f"devices ({n_dev}) so every device gets the same number of examples")
  return global_batch // n_proc


def load_split(dc: ml_collections.ConfigDict, split: str, *, shuffle_files: bool,
               seed: int) -> tuple[tf.data.Dataset, int]:
  """This process's part of ``split`` of ``dc.name`` and the split's size."""
  builder = adapters.get_builder(dc)
  builder.download_and_prepare(**adapters.prepare_kwargs(dc))
  total = builder.info.splits[split].num_examples
  ds = builder.as_dataset(
      split=tfds.split_for_jax_process(split, drop_remainder=False),
      shuffle_files=shuffle_files,
      read_config=tfds.ReadConfig(shuffle_seed=seed))
  return ds, total


def _preprocess_fn(config: ml_collections.ConfigDict, train: bool
                   ) -> Callable[[tf.Tensor, dict], dict]:
  """Canonical example -> model inputs for ``config.task``."""
  task = config.task
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  dc = config.dataset
  mean = tf.constant(dc.get("mean", (0.5, 0.5, 0.5)), tf.float32) * 255.0
  std = tf.constant(dc.get("std", (0.25, 0.25, 0.25)), tf.float32) * 255.0
  augment = adapters.make_augment(config, train)

  def fn(seed: tf.Tensor, ex: dict) -> dict:
    ex = augment(seed, ex)
    out = {"image": (tf.cast(ex["image"], tf.float32) - mean) / std}
    if task in ("classification", "localization"):
      out["label"] = tf.cast(ex["label"], tf.int32)
    if task == "segmentation":
      out["mask"] = tf.cast(ex["mask"], tf.int32)
    if task == "localization":
      out["box"] = adapters.largest_box_cxcywh(ex["boxes"])
    if task == "detection":
      out.update(adapters.pad_boxes(ex, dc.get("max_boxes", 50)))
    return out

  return fn


def train_dataset(config: ml_collections.ConfigDict, *, start_step: int = 0
                  ) -> tf.data.Dataset:
  """Endless, shuffled, augmented host batches, starting after ``start_step``."""
  dc = config.dataset
  batch = host_batch_size(config.batch_size)
  seed = config.seed + jax.process_index()
  ds, _ = load_split(dc, dc.train_split, shuffle_files=True, seed=seed)
  ds = ds.map(adapters.canonical_fn(dc), num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.repeat()
  ds = ds.shuffle(dc.get("shuffle_buffer", 10_000), seed=seed,
                  reshuffle_each_iteration=True)
  # Index every example so its augmentation seed is fixed, then skip what a
  # resumed run has already consumed (before the costly augmentation).
  ds = tf.data.Dataset.zip(tf.data.Dataset.counter(), ds)
  if start_step:
    ds = ds.skip(start_step * batch)
  prep = _preprocess_fn(config, train=True)
  ds = ds.map(lambda i, ex: prep(tf.stack([tf.cast(seed, tf.int64), i]), ex),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches(config: ml_collections.ConfigDict, split: str | None = None
                 ) -> Iterator[Batch]:
  """Padded host batches over one pass of ``split``; ``valid`` marks real ones.

  Every process yields ``ceil(ceil(N / processes) / host_batch)`` batches.
  """
  dc = config.dataset
  split = split or dc.eval_split
  batch = host_batch_size(config.get("eval_batch_size", config.batch_size))
  ds, total = load_split(dc, split, shuffle_files=False, seed=0)
  ds = ds.map(adapters.canonical_fn(dc), num_parallel_calls=tf.data.AUTOTUNE)
  prep = _preprocess_fn(config, train=False)
  ds = ds.map(lambda ex: {**prep(tf.zeros([2], tf.int64), ex),
                          "valid": tf.constant(True)},
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)
  num_batches = math.ceil(math.ceil(total / jax.process_count()) / batch)
  template = None
  it = ds.as_numpy_iterator()
  for _ in range(num_batches):
    b = next(it, None)
    if b is None:  # this host ran out before the others: an all-padding batch
      b = jax.tree.map(lambda x: np.zeros_like(x[:0]), template)
    template = b
    yield pad_batch(b, batch)


def pad_batch(b: Batch, size: int) -> Batch:
  """Pads every array of ``b`` along axis 0 to ``size`` with zeros."""
  n = len(b["valid"])
  if n == size:
    return b
  return {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
          for k, v in b.items()}


def num_classes_of(config: ml_collections.ConfigDict) -> int:
  """Number of output classes the model needs for this dataset and task."""
  return adapters.num_classes(config.dataset, config.task)


def dataset_info(config: ml_collections.ConfigDict) -> Any:
  return adapters.get_builder(config.dataset).info
