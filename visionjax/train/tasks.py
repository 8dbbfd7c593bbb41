"""Tasks: what a model's outputs are trained against and how they are scored.

A task owns the loss and the metrics of one problem type (as in scenic's
per-task model wrappers). Everything it computes inside a step is a *sum* with
its *count*, so data-parallel steps ``psum`` them and padded evaluation
batches stay exact; the host divides once when reporting.

Interface (all methods pure; the first three run inside jit):
  loss(outputs, batch)        -> (loss_sum, count)
  train_sums(outputs, batch)  -> dict of sums (a few cheap training metrics)
  eval_sums(outputs, batch)   -> dict of sums (added over the eval set)
  summarize(sums)             -> dict of Python floats (on host)
  validate(batch, channels)   -> raises ValueError on a malformed batch
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from visionjax import losses
from visionjax.detection.task import DetectionTask
from visionjax.metrics import classification as cls_metrics
from visionjax.metrics import segmentation as seg_metrics

Batch = Mapping[str, Any]


def _check(cond: bool, msg: str) -> None:
  if not cond:
    raise ValueError(msg)


def _validate_image(batch: Batch, channels: int) -> None:
  _check("image" in batch, f"batch has no 'image'; keys are {sorted(batch)}")
  img = batch["image"]
  _check(img.ndim == 4, f"batch['image'] has shape {tuple(img.shape)} (rank "
         f"{img.ndim}); expected rank 4 [batch, height, width, {channels}]")
  _check(jnp.issubdtype(img.dtype, jnp.floating),
         f"batch['image'] has dtype {img.dtype}; expected a float dtype "
         "(normalized pixels), e.g. float32")
  _check(img.shape[-1] == channels, f"batch['image'] has {img.shape[-1]} "
         f"channels (shape {tuple(img.shape)}); the model expects {channels}")


def _valid(batch: Batch) -> jax.Array | None:
  return batch.get("valid")


def _int_field(batch: Batch, key: str, shape: tuple[int, ...]) -> None:
  _check(key in batch, f"batch has no {key!r}; keys are {sorted(batch)}")
  x = batch[key]
  _check(tuple(x.shape) == shape,
         f"batch[{key!r}] has shape {tuple(x.shape)}; expected {shape}")
  _check(jnp.issubdtype(x.dtype, jnp.integer),
         f"batch[{key!r}] has dtype {x.dtype}; expected an integer dtype")


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
  """Image-level softmax classification."""
  num_classes: int
  label_smoothing: float = 0.0
  name: str = "classification"

  def validate(self, batch: Batch, channels: int) -> None:
    _validate_image(batch, channels)
    _int_field(batch, "label", tuple(batch["image"].shape[:1]))

  def loss(self, outputs, batch):
    return losses.softmax_cross_entropy(
        outputs, batch["label"], label_smoothing=self.label_smoothing,
        where=_valid(batch), reduction="sum_and_count")

  def train_sums(self, outputs, batch):
    correct, count = cls_metrics.accuracy(outputs, batch["label"], mask=_valid(batch),
                                          reduction="sum_and_count")
    return {"correct": correct, "count": count}

  def eval_sums(self, outputs, batch):
    loss_sum, count = self.loss(outputs, batch)
    return {"loss_sum": loss_sum, "count": count,
            "confusion": cls_metrics.confusion_matrix(
                batch["label"], jnp.argmax(outputs, -1), self.num_classes,
                mask=_valid(batch))}

  def summarize(self, sums) -> dict[str, float]:
    cm = np.asarray(sums["confusion"], np.float64)
    macro = cls_metrics.precision_recall_f1(cm, average="macro")
    count = float(sums["count"])
    return {"loss": float(sums["loss_sum"]) / max(count, 1.0),
            "accuracy": float(np.trace(cm) / max(cm.sum(), 1.0)),
            "macro_precision": float(macro["precision"]),
            "macro_recall": float(macro["recall"]),
            "macro_f1": float(macro["f1"]),
            "num_examples": count}

  def summarize_train(self, sums) -> dict[str, float]:
    return {"accuracy": float(sums["correct"]) / max(float(sums["count"]), 1.0)}


@dataclasses.dataclass(frozen=True)
class SegmentationTask:
  """Per-pixel softmax classification with an ignore label.

  ``foreground_weight`` > 1 up-weights the cross-entropy of every class but
  0 (background); the mean still divides by the pixel count, so the loss
  stays a (sum, count) pair that adds up exactly across devices.

  ``dice_weight`` > 0 adds ``dice_weight`` x the per-image soft Dice loss
  (smooth 1, averaged over the classes): every class, however few its
  pixels, then pulls equally. The Dice term of each image enters the sum
  multiplied by the image's pixel count H*W, so with no ignored pixels the
  (sum, count) mean is exactly ``mean CE + dice_weight * mean Dice`` and still
  adds up across devices; images with ignored pixels weigh their Dice term by
  H*W / counted pixels.
  """
  num_classes: int
  ignore_index: int = 255
  label_smoothing: float = 0.0
  foreground_weight: float = 1.0
  dice_weight: float = 0.0
  name: str = "segmentation"

  def validate(self, batch: Batch, channels: int) -> None:
    _validate_image(batch, channels)
    _int_field(batch, "mask", tuple(batch["image"].shape[:3]))

  def loss(self, outputs, batch):
    weights = None
    if self.foreground_weight != 1.0:
      weights = jnp.full((self.num_classes,), self.foreground_weight).at[0].set(1.0)
    loss_sum, count = losses.softmax_cross_entropy(
        outputs, batch["mask"], ignore_index=self.ignore_index,
        label_smoothing=self.label_smoothing, weights=weights, where=_valid(batch),
        reduction="sum_and_count")
    if self.dice_weight:
      per_class = losses.soft_dice_loss(
          outputs, batch["mask"], smooth=1.0, ignore_index=self.ignore_index,
          per_sample=True, where=_valid(batch), reduction="none")  # [B, C]
      per_image = jnp.mean(per_class, axis=-1)  # padded images score 0
      pixels = batch["mask"].shape[1] * batch["mask"].shape[2]
      loss_sum = loss_sum + self.dice_weight * pixels * jnp.sum(per_image)
    return loss_sum, count

  def train_sums(self, outputs, batch):
    preds = jnp.argmax(outputs, -1)
    mask = batch["mask"]
    counted = mask != self.ignore_index
    if _valid(batch) is not None:
      counted &= _valid(batch)[:, None, None]
    return {"correct": jnp.sum((preds == mask) & counted), "count": jnp.sum(counted)}

  def eval_sums(self, outputs, batch):
    loss_sum, count = self.loss(outputs, batch)
    cm = seg_metrics.confusion_matrix(batch["mask"], jnp.argmax(outputs, -1),
                                      self.num_classes, ignore_index=self.ignore_index,
                                      mask=_valid(batch))
    return {"loss_sum": loss_sum, "count": count, "confusion": cm}

  def summarize(self, sums) -> dict[str, Any]:
    scores = seg_metrics.segmentation_scores(sums["confusion"])
    out = {k: v for k, v in scores.items() if np.isscalar(v)}
    out["iou_per_class"] = [None if np.isnan(x) else float(x)
                            for x in scores["iou_per_class"]]
    out["loss"] = float(sums["loss_sum"]) / max(float(sums["count"]), 1.0)
    return out

  def summarize_train(self, sums) -> dict[str, float]:
    return {"pixel_accuracy": float(sums["correct"]) / max(float(sums["count"]), 1.0)}


@dataclasses.dataclass(frozen=True)
class LocalizationTask:
  """Classification with localization: one class and one box per image.

  Model outputs ``{'logits': [B, K], 'boxes': [B, 4]}`` (normalized cx, cy,
  w, h); batch ``label`` int [B] and ``box`` [B, 4] (cx, cy, w, h). Loss per
  image ``L = L_cls + λ·L_loc`` (:func:`visionjax.losses.classification_localization_loss`:
  softmax cross-entropy plus ``loc_loss`` on the box, λ = ``box_weight``).
  Metrics: accuracy, mean IoU of predicted and true box, and ``correct_loc``:
  the fraction with the right class *and* IoU ≥ ``iou_threshold`` (0.5).
  """
  num_classes: int
  box_weight: float = 1.0
  loc_loss: str = "smooth_l1"
  beta: float = 1.0
  label_smoothing: float = 0.0
  iou_threshold: float = 0.5
  name: str = "localization"

  def validate(self, batch: Batch, channels: int) -> None:
    _validate_image(batch, channels)
    b = tuple(batch["image"].shape[:1])
    _int_field(batch, "label", b)
    _check("box" in batch, f"batch has no 'box'; keys are {sorted(batch)}")
    _check(tuple(batch["box"].shape) == b + (4,),
           f"batch['box'] has shape {tuple(batch['box'].shape)}; expected {b + (4,)}")

  def _outputs(self, outputs):
    _check(isinstance(outputs, Mapping) and {"logits", "boxes"} <= set(outputs),
           "LocalizationTask needs model outputs {'logits', 'boxes'} (a localizer model); "
           f"got {type(outputs).__name__}")
    return outputs["logits"], outputs["boxes"]

  def loss(self, outputs, batch):
    logits, boxes = self._outputs(outputs)
    return losses.classification_localization_loss(
        logits, boxes, batch["label"], batch["box"], lam=self.box_weight,
        loc_loss=self.loc_loss, beta=self.beta, label_smoothing=self.label_smoothing,
        fmt="cxcywh", where=_valid(batch), reduction="sum_and_count")

  def _scores(self, outputs, batch):
    from visionjax.ops.boxes import box_iou_elementwise
    logits, boxes = self._outputs(outputs)
    valid = _valid(batch)
    w = jnp.ones(logits.shape[:1], jnp.float32) if valid is None else valid.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32) * w
    iou = box_iou_elementwise(boxes, batch["box"], fmt="cxcywh") * w
    return {"correct": jnp.sum(correct), "iou_sum": jnp.sum(iou),
            "correct_loc": jnp.sum(correct * (iou >= self.iou_threshold)), "count": jnp.sum(w)}

  def train_sums(self, outputs, batch):
    return self._scores(outputs, batch)

  def eval_sums(self, outputs, batch):
    loss_sum, _ = self.loss(outputs, batch)
    return {"loss_sum": loss_sum, **self._scores(outputs, batch)}

  def summarize(self, sums) -> dict[str, float]:
    n = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / n, "accuracy": float(sums["correct"]) / n,
            "mean_iou": float(sums["iou_sum"]) / n,
            "correct_loc": float(sums["correct_loc"]) / n, "num_examples": float(sums["count"])}

  def summarize_train(self, sums) -> dict[str, float]:
    n = max(float(sums["count"]), 1.0)
    return {"accuracy": float(sums["correct"]) / n, "mean_iou": float(sums["iou_sum"]) / n}


def create_task(name: str, num_classes: int, **kwargs) -> Any:
  """Task by name: 'classification', 'segmentation', 'localization', 'detection'."""
  tasks = {"classification": ClassificationTask, "segmentation": SegmentationTask,
           "localization": LocalizationTask, "detection": DetectionTask}
  if name not in tasks:
    raise ValueError(f"unknown task {name!r}; expected one of {sorted(tasks)}")
  return tasks[name](num_classes=num_classes, **kwargs)
