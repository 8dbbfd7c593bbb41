"""Image-level softmax classification."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from visionjax import losses
from visionjax.metrics import classification as cls_metrics
from visionjax.tasks import base


@dataclasses.dataclass(frozen=True)
class ClassificationTask(base.Task):
  """One class per image: ``label`` int [B]; model outputs logits [B, K].

  Loss: softmax cross-entropy (optional label smoothing). Metrics: loss,
  accuracy, macro precision / recall / F1 from the confusion matrix.
  """
  name: ClassVar[str] = "classification"
  annotation: ClassVar[str] = "label"
  metrics: ClassVar[tuple[str, ...]] = ("loss", "accuracy", "macro_precision", "macro_recall",
                                        "macro_f1", "num_examples")
  num_classes: int
  label_smoothing: float = 0.0

  def targets(self, example):
    return {"label": tf.cast(example["label"], tf.int32)}

  def check_values(self, batch):
    base.check_class_ids(batch, "label", self.num_classes)

  def validate(self, batch, channels):
    base.validate_image(batch, channels)
    base.validate_int_field(batch, "label", tuple(batch["image"].shape[:1]))

  def loss(self, outputs, batch):
    return losses.softmax_cross_entropy(
        outputs, batch["label"], label_smoothing=self.label_smoothing,
        where=base.valid_mask(batch), reduction="sum_and_count")

  def train_sums(self, outputs, batch):
    correct, count = cls_metrics.accuracy(outputs, batch["label"], mask=base.valid_mask(batch),
                                          reduction="sum_and_count")
    return {"correct": correct, "count": count}

  def summarize_train(self, sums):
    return {"accuracy": float(sums["correct"]) / max(float(sums["count"]), 1.0)}

  def eval_sums(self, outputs, batch):
    loss_sum, count = self.loss(outputs, batch)
    return {"loss_sum": loss_sum, "count": count,
            "confusion": cls_metrics.confusion_matrix(
                batch["label"], jnp.argmax(outputs, -1), self.num_classes,
                mask=base.valid_mask(batch))}

  def summarize(self, sums, state=None):
    del state
    cm = np.asarray(sums["confusion"], np.float64)
    macro = cls_metrics.precision_recall_f1(cm, average="macro")
    count = float(sums["count"])
    return {"loss": float(sums["loss_sum"]) / max(count, 1.0),
            "accuracy": float(np.trace(cm) / max(cm.sum(), 1.0)),
            "macro_precision": float(macro["precision"]),
            "macro_recall": float(macro["recall"]),
            "macro_f1": float(macro["f1"]),
            "num_examples": count}

  def inference_outputs(self, outputs):
    logits = jnp.asarray(outputs, jnp.float32)
    return {"classes": jnp.argmax(logits, -1), "probabilities": jax.nn.softmax(logits, -1)}

  def to_result(self, out, *, class_names, content, size):
    del content, size
    c = int(out["classes"])
    return {"class": c, "name": class_names[c],
            "probabilities": np.asarray(out["probabilities"])}

  def draw_result(self, image, result, class_names):
    from visionjax import viz
    h, w = image.shape[:2]  # the whole frame, tagged with the class and its probability
    c = result["class"]
    return viz.draw_boxes(image, np.asarray([[0, 0, w, h]], np.float32), [c],
                          [float(result["probabilities"][c])], class_names, normalized=False)

  def visualize(self, images, batch, predictions, class_names, path):
    from visionjax.viz import predictions as pred_viz
    n = len(images)
    pred_viz.save_classification(images, batch["label"][:n], np.asarray(predictions),
                                 class_names, path)
