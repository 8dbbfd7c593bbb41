"""Classification with localization: one class and one box per image."""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from visionjax import losses
from visionjax.data import datasets
from visionjax.ops.boxes import box_convert, box_iou_elementwise
from visionjax.tasks import base


@dataclasses.dataclass(frozen=True)
class LocalizationTask(base.Task):
  """The largest object of each image: its class and its box.

  Batch: ``label`` int [B] and ``box`` [B, 4] normalized xyxy (the package's
  box convention, `visionjax.ops.boxes`). Model outputs ``{'logits': [B, K],
  'boxes': [B, 4]}`` with boxes parameterized as normalized (cx, cy, w, h)
  (`visionjax.models.localizer`); the loss compares them in that
  parameterization: per image ``L = L_cls + λ·L_loc``
  (:func:`visionjax.losses.classification_localization_loss`: softmax
  cross-entropy plus ``loc_loss`` on (cx, cy, w, h), λ = ``box_weight``).
  Metrics: accuracy, mean IoU of predicted and true box, and ``correct_loc``:
  the fraction with the right class *and* IoU ≥ ``iou_threshold`` (0.5).
  """
  name: ClassVar[str] = "localization"
  annotation: ClassVar[str] = "boxes"
  metrics: ClassVar[tuple[str, ...]] = ("loss", "accuracy", "mean_iou", "correct_loc",
                                        "num_examples")
  num_classes: int
  box_weight: float = 1.0
  loc_loss: str = "smooth_l1"
  beta: float = 1.0
  label_smoothing: float = 0.0
  iou_threshold: float = 0.5

  def targets(self, example):
    label, box = datasets.largest_object(example["boxes"], example["box_labels"])
    return {"label": label, "box": box}

  def check_values(self, batch):
    base.check_class_ids(batch, "label", self.num_classes)
    base.check_finite(batch, "box")

  def validate(self, batch, channels):
    base.validate_image(batch, channels)
    b = tuple(batch["image"].shape[:1])
    base.validate_int_field(batch, "label", b)
    base.check("box" in batch, f"batch has no 'box'; keys are {sorted(batch)}")
    base.check(tuple(batch["box"].shape) == b + (4,),
               f"batch['box'] has shape {tuple(batch['box'].shape)}; expected {b + (4,)}")

  def _outputs(self, outputs):
    base.check(isinstance(outputs, Mapping) and {"logits", "boxes"} <= set(outputs),
               "LocalizationTask needs model outputs {'logits', 'boxes'} (a localizer "
               f"model); got {type(outputs).__name__}")
    return outputs["logits"], outputs["boxes"]

  def loss(self, outputs, batch):
    logits, boxes = self._outputs(outputs)
    return losses.classification_localization_loss(
        logits, boxes, batch["label"], box_convert(batch["box"], "xyxy", "cxcywh"),
        lam=self.box_weight, loc_loss=self.loc_loss, beta=self.beta,
        label_smoothing=self.label_smoothing, fmt="cxcywh", where=base.valid_mask(batch),
        reduction="sum_and_count")

  def _scores(self, outputs, batch):
    logits, boxes = self._outputs(outputs)
    valid = base.valid_mask(batch)
    w = jnp.ones(logits.shape[:1], jnp.float32) if valid is None else valid.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32) * w
    iou = box_iou_elementwise(box_convert(boxes, "cxcywh", "xyxy"), batch["box"]) * w
    return {"correct": jnp.sum(correct), "iou_sum": jnp.sum(iou),
            "correct_loc": jnp.sum(correct * (iou >= self.iou_threshold)), "count": jnp.sum(w)}

  def train_sums(self, outputs, batch):
    return self._scores(outputs, batch)

  def summarize_train(self, sums):
    n = max(float(sums["count"]), 1.0)
    return {"accuracy": float(sums["correct"]) / n, "mean_iou": float(sums["iou_sum"]) / n}

  def eval_sums(self, outputs, batch):
    loss_sum, _ = self.loss(outputs, batch)
    return {"loss_sum": loss_sum, **self._scores(outputs, batch)}

  def summarize(self, sums, state=None):
    del state
    n = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / n, "accuracy": float(sums["correct"]) / n,
            "mean_iou": float(sums["iou_sum"]) / n,
            "correct_loc": float(sums["correct_loc"]) / n, "num_examples": float(sums["count"])}

  def postprocess(self, outputs):
    """``{'logits': [B, K], 'boxes': [B, 4]}`` with boxes as normalized xyxy."""
    logits, boxes = self._outputs(outputs)
    return {"logits": logits, "boxes": box_convert(boxes, "cxcywh", "xyxy")}

  def inference_outputs(self, outputs):
    preds = self.postprocess(outputs)
    logits = jnp.asarray(preds["logits"], jnp.float32)
    return {"classes": jnp.argmax(logits, -1), "probabilities": jax.nn.softmax(logits, -1),
            "boxes": preds["boxes"]}

  def to_result(self, out, *, class_names, content, size):
    del content
    c = int(out["classes"])
    return {"class": c, "name": class_names[c], "score": float(out["probabilities"][c]),
            "box": np.asarray(out["boxes"], np.float32) * base.pixel_scale(size)}

  def draw_result(self, image, result, class_names):
    from visionjax import viz
    return viz.draw_boxes(image, np.asarray(result["box"])[None], [result["class"]],
                          [result["score"]], class_names, normalized=False)

  def visualize(self, images, batch, predictions, class_names, path):
    from visionjax.viz import boxes as box_viz
    n = len(images)
    box_viz.save_localization(images, batch["label"][:n], batch["box"][:n],
                              np.asarray(predictions["logits"]),
                              np.asarray(predictions["boxes"]), class_names, path)
