"""Semantic segmentation: per-pixel softmax classification with an ignore label."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import tensorflow as tf

from visionjax import losses
from visionjax.metrics import segmentation as seg_metrics
from visionjax.tasks import base


@dataclasses.dataclass(frozen=True)
class SegmentationTask(base.Task):
  """Per-pixel classes: ``mask`` int [B, H, W] (``ignore_index`` = unlabelled);
  model outputs logits [B, H, W, K].

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

  ``aux_weight`` > 0 (with a model built with ``deep_supervision=True``):
  in training, the model also returns coarse ``aux_logits`` (stride s, a
  power of two); each
  is scored as its nearest up-sampling to the full resolution, i.e. every
  pixel of an s x s block is classified by the block's logits, with the same
  weighted cross-entropy as the main output, and their mean is added
  ``aux_weight`` times. This equals the cross-entropy of the block's logits
  against the block's class histogram, times s*s (no mask is resampled).

  Metrics: the Cityscapes-script scores of the merged confusion matrix
  (mIoU, per-class IoU, pixel accuracy, Dice) and the loss.
  """
  name: ClassVar[str] = "segmentation"
  annotation: ClassVar[str] = "mask"
  dense: ClassVar[bool] = True
  metrics: ClassVar[tuple[str, ...]] = ("loss", "pixel_accuracy", "mean_pixel_accuracy", "miou",
                                        "fwiou", "mean_dice")
  num_classes: int
  ignore_index: int = 255
  label_smoothing: float = 0.0
  foreground_weight: float = 1.0
  dice_weight: float = 0.0
  aux_weight: float = 0.0

  def targets(self, example):
    return {"mask": tf.cast(example["mask"], tf.int32)}

  def check_values(self, batch):
    base.check_class_ids(batch, "mask", self.num_classes, ignore=self.ignore_index)

  def validate(self, batch, channels):
    base.validate_image(batch, channels)
    base.validate_int_field(batch, "mask", tuple(batch["image"].shape[:3]))

  def check_train_outputs(self, outputs):
    aux = outputs.get("aux_logits", ()) if isinstance(outputs, dict) else ()
    if self.aux_weight and not aux:
      raise ValueError(f"task_kwargs.aux_weight={self.aux_weight!r} but the model returns no "
                       "deep-supervision aux_logits in training; build it with "
                       "deep_supervision=True (config.model.deep_supervision, U-Net) or set "
                       "aux_weight to 0")
    if aux and not self.aux_weight:
      raise ValueError("the model returns deep-supervision aux_logits but the segmentation "
                       "task's aux_weight is 0; set task_kwargs.aux_weight > 0 or build the "
                       "model with deep_supervision=False")

  def _split(self, outputs):
    """(logits, aux logits) of a model output (a plain array has no aux)."""
    if not isinstance(outputs, dict):
      return outputs, ()
    aux = tuple(outputs.get("aux_logits", ()))
    if aux:
      self.check_train_outputs(outputs)  # aux outputs with aux_weight 0
    return outputs["logits"], aux

  def loss(self, outputs, batch):
    outputs, aux = self._split(outputs)
    weights = None
    if self.foreground_weight != 1.0:
      weights = jnp.full((self.num_classes,), self.foreground_weight).at[0].set(1.0)
    valid = base.valid_mask(batch)
    loss_sum, count = losses.softmax_cross_entropy(
        outputs, batch["mask"], ignore_index=self.ignore_index,
        label_smoothing=self.label_smoothing, weights=weights, where=valid,
        reduction="sum_and_count")
    if self.dice_weight:
      per_class = losses.soft_dice_loss(
          outputs, batch["mask"], smooth=1.0, ignore_index=self.ignore_index,
          per_sample=True, where=valid, reduction="none")  # [B, C]
      per_image = jnp.mean(per_class, axis=-1)  # padded images score 0
      pixels = batch["mask"].shape[1] * batch["mask"].shape[2]
      loss_sum = loss_sum + self.dice_weight * pixels * jnp.sum(per_image)
    if aux:
      h, w = batch["mask"].shape[1:3]
      aux_sum = 0.0
      for a in aux:
        # The level's stride: a power of two (U-Net levels; the model pads the
        # input up to a multiple of its deepest stride, so the last block may
        # be cut: ceil(size / aux size) can be less than the stride).
        s = 1 << (max(-(-h // a.shape[1]), -(-w // a.shape[2])) - 1).bit_length()
        up = jnp.repeat(jnp.repeat(a, s, axis=1), s, axis=2)[:, :h, :w]
        aux_sum = aux_sum + losses.softmax_cross_entropy(
            up, batch["mask"], ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, weights=weights, where=valid,
            reduction="sum_and_count")[0]
      loss_sum = loss_sum + self.aux_weight * aux_sum / len(aux)
    return loss_sum, count

  def train_sums(self, outputs, batch):
    preds = jnp.argmax(self._split(outputs)[0], -1)
    mask = batch["mask"]
    counted = mask != self.ignore_index
    if base.valid_mask(batch) is not None:
      counted &= base.valid_mask(batch)[:, None, None]
    return {"correct": jnp.sum((preds == mask) & counted), "count": jnp.sum(counted)}

  def summarize_train(self, sums):
    return {"pixel_accuracy": float(sums["correct"]) / max(float(sums["count"]), 1.0)}

  def eval_sums(self, outputs, batch):
    loss_sum, count = self.loss(outputs, batch)
    cm = seg_metrics.confusion_matrix(batch["mask"], jnp.argmax(outputs, -1),
                                      self.num_classes, ignore_index=self.ignore_index,
                                      mask=base.valid_mask(batch))
    return {"loss_sum": loss_sum, "count": count, "confusion": cm}

  def summarize(self, sums, state=None):
    del state
    scores = seg_metrics.segmentation_scores(sums["confusion"])
    out = {k: v for k, v in scores.items() if np.isscalar(v)}
    out["iou_per_class"] = [None if np.isnan(x) else float(x)
                            for x in scores["iou_per_class"]]
    out["loss"] = float(sums["loss_sum"]) / max(float(sums["count"]), 1.0)
    return out

  def inference_outputs(self, outputs):
    return jnp.asarray(outputs, jnp.float32)  # logits [B, h, w, K]: resized on host

  def to_result(self, out, *, class_names, content, size):
    """The mask at the original size: the padding is cropped from the logits,
    which are resized bilinearly (smooth class borders, unlike nearest on the
    classes), then arg-maxed."""
    crop = np.asarray(out)[:content[0], :content[1]]
    if tuple(content) != tuple(size):
      crop = tf.image.resize(crop, size, method="bilinear").numpy()
    return {"mask": np.argmax(crop, axis=-1).astype(np.int32), "names": list(class_names)}

  def draw_result(self, image, result, class_names):
    from visionjax import viz
    # Class 0 (background) keeps the photo: darkening it hid the scene.
    return viz.draw_masks(image, result["mask"], len(class_names), background=0)

  def visualize(self, images, batch, predictions, class_names, path):
    from visionjax.viz import predictions as pred_viz
    n = len(images)
    pred_viz.save_segmentation(images, batch["mask"][:n], np.asarray(predictions),
                               class_names, path)
