"""Per-dataset adapters: TFDS features -> the canonical example layout.

Canonical example (all tensors; keys present as the dataset provides them):
  image       uint8 [H, W, 3]
  label       int   []        image-level class
  mask        int32 [H, W]    per-pixel class, 255 = ignore
  boxes       float32 [N, 4]  normalized (ymin, xmin, ymax, xmax)
  box_labels  int32 [N]
  box_difficult bool [N]      (VOC) excluded from evaluation

Each dataset family (the TFDS name before ``/``) registers a `DatasetAdapter`
in `DATASETS`; an unknown name raises an error listing the known ones.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from visionjax.data import augment as augment_lib

Example = dict[str, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class DatasetAdapter:
  """What the pipeline needs to know about one dataset family."""
  canonical: Callable[[dict], Example]
  # Number of model outputs per task; tasks missing here are unsupported.
  num_classes: dict[str, int]
  class_names: dict[str, tuple[str, ...]]
  # Builder-module import that registers a custom TFDS builder, if any.
  register: Callable[[], None] | None = None


def _digit_scenes(f: dict) -> Example:
  return {
      "image": f["image"],
      "label": f["label"],
      "mask": tf.cast(f["segmentation_mask"][..., 0], tf.int32),
      "boxes": f["objects"]["bbox"],
      "box_labels": tf.cast(f["objects"]["label"], tf.int32),
      "box_difficult": tf.zeros_like(f["objects"]["label"], tf.bool),
  }


def _register_digit_scenes() -> None:
  from visionjax.data import builtin  # noqa: F401  (registers `digit_scenes`)


_DIGITS = tuple(str(d) for d in range(10))
DATASETS: dict[str, DatasetAdapter] = {
    "digit_scenes": DatasetAdapter(
        canonical=_digit_scenes,
        num_classes={"classification": 10, "localization": 10,
                     "detection": 10, "segmentation": 11},
        class_names={"classification": _DIGITS, "localization": _DIGITS,
                     "detection": _DIGITS,
                     "segmentation": ("background",) + _DIGITS},
        register=_register_digit_scenes),
}


def adapter(dc: ml_collections.ConfigDict) -> DatasetAdapter:
  family = dc.name.split("/")[0]
  if family not in DATASETS:
    raise ValueError(f"unknown dataset {dc.name!r}; known datasets: "
                     f"{sorted(DATASETS)} (a TFDS name, optionally '/config')")
  return DATASETS[family]


def get_builder(dc: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  ad = adapter(dc)
  if ad.register is not None:
    ad.register()
  return tfds.builder(dc.name, data_dir=dc.get("data_dir"))


def prepare_kwargs(dc: ml_collections.ConfigDict) -> dict:
  """Arguments for `download_and_prepare` (manual-download folder, if any)."""
  manual_dir = dc.get("manual_dir")
  if not manual_dir:
    return {}
  return {"download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)}


def canonical_fn(dc: ml_collections.ConfigDict) -> Callable[[dict], Example]:
  return adapter(dc).canonical


def num_classes(dc: ml_collections.ConfigDict, task: str) -> int:
  ad = adapter(dc)
  if task not in ad.num_classes:
    raise ValueError(f"dataset {dc.name!r} has no labels for task {task!r}; "
                     f"it supports {sorted(ad.num_classes)}")
  return ad.num_classes[task]


def class_names(dc: ml_collections.ConfigDict, task: str) -> tuple[str, ...]:
  return adapter(dc).class_names[task]


def _augment_entry(entry) -> tuple[str, dict]:
  """``'name'`` or ``('name', {kwargs})`` -> (name, kwargs)."""
  if isinstance(entry, str):
    return entry, {}
  if (isinstance(entry, (tuple, list)) and len(entry) == 2
      and isinstance(entry[0], str) and hasattr(entry[1], "items")):
    return entry[0], dict(entry[1].items())
  raise ValueError(f"bad config.dataset.augment entry {entry!r}; expected a "
                   "name or a (name, {option: value}) pair")


def make_augment(config: ml_collections.ConfigDict, train: bool
                 ) -> augment_lib.Op:
  """The chain of augmentation ops named by ``config.dataset.augment``.

  Entries are op names or ``(name, {option: value})``. Ops taking ``size``
  default to ``config.dataset.image_size``, ops taking ``fill`` to the
  dataset's mean pixel (so padding normalizes to zero).
  """
  dc = config.dataset
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


def mean_pixel(dc: ml_collections.ConfigDict) -> tuple[float, float, float]:
  """The dataset mean as a 0..255 pixel (the padding colour)."""
  return tuple(round(255.0 * float(m)) for m in dc.get("mean", (0.5, 0.5, 0.5)))


def largest_box_cxcywh(boxes: tf.Tensor) -> tf.Tensor:
  """The largest of ``boxes`` [N, 4] (yxyx) as normalized (cx, cy, w, h)."""
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  b = tf.gather(boxes, tf.argmax(area))
  return tf.stack([(b[1] + b[3]) / 2, (b[0] + b[2]) / 2, b[3] - b[1], b[2] - b[0]])


def pad_boxes(ex: Example, max_boxes: int) -> Example:
  """Boxes/labels padded (or truncated) to ``max_boxes`` with a valid mask."""
  n = tf.minimum(tf.shape(ex["boxes"])[0], max_boxes)
  pad = max_boxes - n
  boxes = tf.pad(ex["boxes"][:n], [[0, pad], [0, 0]])
  labels = tf.pad(tf.cast(ex["box_labels"][:n], tf.int32), [[0, pad]])
  difficult = tf.pad(tf.cast(ex["box_difficult"][:n], tf.bool), [[0, pad]])
  valid = tf.range(max_boxes) < n
  return {"boxes": tf.ensure_shape(boxes, [max_boxes, 4]),
          "box_labels": tf.ensure_shape(labels, [max_boxes]),
          "box_difficult": tf.ensure_shape(difficult, [max_boxes]),
          "box_valid": tf.ensure_shape(valid, [max_boxes])}
