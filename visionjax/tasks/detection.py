"""Object detection through the training spine: SSD and anchor-free grid heads.

Two detector families train through this one task; it tells them apart by
their outputs (a static dict structure, so at trace time):

* SSD (Liu et al. 2016, :mod:`visionjax.models.ssd`): ``logits`` [B, A, K+1],
  ``offsets`` [B, A, 4], ``anchors`` [A, 4]; matching and the multibox loss.
* YOLO-style grid (:mod:`visionjax.models.yolo`): ``obj_logits``,
  ``cls_logits``, ``box_deltas``, ``points``, ``strides``, ``size_ranges``
  (:data:`visionjax.detection.grid.OUTPUT_KEYS`); centre-sampling assignment
  and the focal/BCE/GIoU loss of :mod:`visionjax.detection.grid`.

Both report ``loc_loss`` (SSD: smooth-L1; grid: 1 - GIoU) and ``conf_loss``
(SSD: cross-entropy; grid: objectness focal + class BCE) per positive, and
share post-processing (class-aware NMS) and evaluation. Batches: ``image`` [B, H, W, C],
``boxes`` [B, G, 4] normalized xyxy, ``box_labels`` int [B, G],
``box_valid`` bool [B, G], optional ``box_difficult`` bool [B, G] and
``valid`` bool [B] (evaluation padding).

Inside the jitted train step the task assigns ground truth to default boxes
or grid cells and computes the family's loss, all vmapped over the batch, so the
whole step is one XLA program. Evaluation is not a sum of counts: besides
``eval_sums`` (the loss) the task returns per-image padded detections from
``eval_examples`` (post-processing, also jitted), which the loop gathers on
host into the VOC/COCO evaluators (``eval_init`` / ``eval_update`` /
``summarize(sums, state)``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from visionjax.data import transforms
from visionjax.detection import evaluation, grid
from visionjax.detection.coding import SSD_VARIANCES
from visionjax.detection.matching import ssd_targets
from visionjax.detection.multibox import multibox_loss
from visionjax.detection.postprocessing import Detections, batch_postprocess
from visionjax.tasks import base

Batch = Mapping[str, Any]
_check = base.check


class _Parts(NamedTuple):
  """One family's loss pieces over a batch (sums) and its positives [B, A]."""
  total: jax.Array
  num_pos: jax.Array
  loc: jax.Array
  conf: jax.Array
  positive: jax.Array
  correct: jax.Array  # positives whose top class is the target's


@dataclasses.dataclass(frozen=True)
class DetectionTask(base.Task):
  """Detection with an SSD or a YOLO-style grid model (module docstring).

  num_classes:      foreground classes K (the model predicts K + 1 scores).
  match_iou:        IoU for a default box to match a ground truth (0.5).
  neg_pos_ratio:    hard negatives per positive (3).
  loc_weight:       α in L = (L_conf + α·L_loc) / N (1).
  center_radius:    grid heads: centre-sampling radius in strides (1.5; None:
                    the whole box).
  focal_alpha, focal_gamma: grid heads: the objectness focal loss (0.25, 2).
  variances:        box-coding variances (0.1, 0.1, 0.2, 0.2).
  train_difficult:  whether VOC 'difficult' boxes are matched in training
                    (the reference implementation: yes).
  score_threshold, nms_iou, pre_nms_top_k, max_detections: post-processing
                    (0.01, 0.45, 400, 200; see detection.postprocessing).
  eval_iou:         VOC AP IoU threshold (0.5).
  draw_min_score:   the lowest score `draw_result` draws (0.5; `visionjax
                    predict --min_score`); results keep every detection down
                    to ``score_threshold``, which AP needs.
  max_boxes:        boxes per image in a batch (padded, ``box_valid`` marks
                    the real ones; more are truncated).
  """
  name: ClassVar[str] = "detection"
  annotation: ClassVar[str] = "boxes"
  metrics: ClassVar[tuple[str, ...]] = ("loss", "loc_loss", "conf_loss", "map50_voc07", "map50",
                                        "coco_ap", "coco_ap50", "coco_ap75", "coco_ar100",
                                        "num_images")
  num_classes: int
  match_iou: float = 0.5
  neg_pos_ratio: float = 3.0
  loc_weight: float = 1.0
  variances: Sequence[float] = SSD_VARIANCES
  train_difficult: bool = True
  score_threshold: float = 0.01
  nms_iou: float = 0.45
  pre_nms_top_k: int = 400
  max_detections: int = 200
  eval_iou: float = 0.5
  max_boxes: int = 50
  center_radius: Optional[float] = 1.5
  focal_alpha: Optional[float] = 0.25
  focal_gamma: float = 2.0
  draw_min_score: float = 0.5

  def __post_init__(self):
    object.__setattr__(self, "variances", tuple(float(v) for v in self.variances))
    _check(self.num_classes >= 1, f"num_classes={self.num_classes}; expected >= 1")
    _check(0 < self.match_iou <= 1, f"match_iou={self.match_iou}; expected in (0, 1]")
    _check(len(self.variances) == 4, f"variances={self.variances}; expected 4 values")
    _check(self.max_boxes >= 1, f"max_boxes={self.max_boxes}; expected >= 1")
    _check(self.center_radius is None or self.center_radius > 0,
           f"center_radius={self.center_radius}; expected > 0 or None")
    _check(self.focal_gamma >= 0, f"focal_gamma={self.focal_gamma}; expected >= 0")

  def targets(self, example):
    return transforms.pad_boxes(example, self.max_boxes)

  # ----------------------------------------------------------------- checks
  def check_values(self, batch: Mapping[str, np.ndarray]) -> None:
    """Labels and coordinates of the real boxes (``box_valid``) only."""
    box_valid = np.asarray(batch["box_valid"], bool)
    base.check_class_ids(batch, "box_labels", self.num_classes, where=box_valid)
    base.check_finite(batch, "boxes", where=box_valid)

  def validate(self, batch: Batch, channels: int) -> None:
    base.validate_image(batch, channels)
    img = batch["image"]
    for key in ("boxes", "box_labels", "box_valid"):
      _check(key in batch, f"batch has no {key!r} (detection batches need boxes, box_labels, "
             f"box_valid); keys are {sorted(batch)}")
    b = img.shape[0]
    boxes = batch["boxes"]
    _check(boxes.ndim == 3 and boxes.shape[0] == b and boxes.shape[2] == 4,
           f"batch['boxes'] has shape {tuple(boxes.shape)}; expected [{b}, max_boxes, 4]")
    g = boxes.shape[1]
    for key in ("box_labels", "box_valid", "box_difficult"):
      if key in batch:
        _check(tuple(batch[key].shape) == (b, g),
               f"batch[{key!r}] has shape {tuple(batch[key].shape)}; expected {(b, g)}")
    _check(jnp.issubdtype(batch["box_labels"].dtype, jnp.integer),
           f"batch['box_labels'] has dtype {batch['box_labels'].dtype}; expected integers")

  def _family(self, outputs) -> str:
    """'ssd' or 'grid' from the outputs' keys; checks the class count."""
    keys = set(outputs) if isinstance(outputs, Mapping) else set()
    if {"logits", "offsets", "anchors"} <= keys:
      family, k = "ssd", outputs["logits"].shape[-1] - 1
      what = "foreground classes (+ background)"
    elif set(grid.OUTPUT_KEYS) <= keys:
      family, k, what = "grid", outputs["cls_logits"].shape[-1], "classes"
    else:
      raise ValueError(
          "DetectionTask needs model outputs {'logits', 'offsets', 'anchors'} (an SSD "
          f"model) or {set(grid.OUTPUT_KEYS)} (a YOLO-style grid model); got "
          f"{type(outputs).__name__} {sorted(outputs) if isinstance(outputs, Mapping) else ''}")
    _check(k == self.num_classes, f"model predicts {k} {what}; the task has "
           f"num_classes={self.num_classes}")
    return family

  def _gt_valid(self, batch):
    gt_valid = batch["box_valid"].astype(bool)
    if not self.train_difficult and "box_difficult" in batch:
      gt_valid = gt_valid & ~batch["box_difficult"].astype(bool)
    return gt_valid

  # --------------------------------------------------------------- training
  def anchor_targets(self, outputs, batch):
    """Per-image :class:`~visionjax.detection.matching.Targets`, vmapped: [B, A, ...]."""
    fn = lambda b, l, v: ssd_targets(b, l, v, outputs["anchors"], iou_threshold=self.match_iou,
                                     variances=self.variances)
    return jax.vmap(fn)(batch["boxes"], batch["box_labels"], self._gt_valid(batch))

  def _loss_parts(self, outputs, batch) -> _Parts:
    valid = batch.get("valid")
    if self._family(outputs) == "grid":
      total, num_pos, parts, t = grid.grid_loss(
          outputs, batch["boxes"], batch["box_labels"], self._gt_valid(batch),
          box_weight=self.loc_weight, center_radius=self.center_radius,
          focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma, where=valid)
      pred = jnp.argmax(outputs["cls_logits"], -1)
      return _Parts(total, num_pos, parts.box, parts.obj + parts.cls, t.positive,
                    t.positive & (pred == t.labels))
    t = self.anchor_targets(outputs, batch)
    total, num_pos, parts = multibox_loss(
        outputs["logits"], outputs["offsets"], t.labels, t.offsets, loc_weight=self.loc_weight,
        neg_pos_ratio=self.neg_pos_ratio, where=valid)
    pos = t.positive if valid is None else t.positive & valid[:, None]
    pred = jnp.argmax(outputs["logits"], -1)
    return _Parts(total, num_pos, parts.loc, parts.conf, pos, pos & (pred == t.labels))

  def loss(self, outputs, batch):
    """(Σ_images (L_conf + α·L_loc), Σ_images N): the step divides."""
    p = self._loss_parts(outputs, batch)
    return p.total, p.num_pos

  def train_sums(self, outputs, batch):
    p = self._loss_parts(outputs, batch)
    valid = batch.get("valid")
    images = jnp.asarray(batch["boxes"].shape[0], jnp.float32) if valid is None else \
        jnp.sum(valid.astype(jnp.float32))
    return {"num_pos": p.num_pos, "loc_sum": p.loc, "conf_sum": p.conf,
            "pos_correct": jnp.sum(p.correct), "num_images": images}

  def summarize_train(self, sums) -> dict[str, float]:
    n = max(float(sums["num_pos"]), 1.0)
    return {"loc_loss": float(sums["loc_sum"]) / n, "conf_loss": float(sums["conf_sum"]) / n,
            "pos_accuracy": float(sums["pos_correct"]) / n,
            "matches_per_image": float(sums["num_pos"]) / max(float(sums["num_images"]), 1.0)}

  # ------------------------------------------------------------- evaluation
  def postprocess(self, outputs) -> Detections:
    """Padded detections [B, max_detections, ...] (normalized xyxy boxes)."""
    kw = dict(score_threshold=self.score_threshold, iou_threshold=self.nms_iou,
              pre_nms_top_k=self.pre_nms_top_k, max_detections=self.max_detections)
    if self._family(outputs) == "grid":
      return grid.grid_postprocess(outputs, **kw)
    return batch_postprocess(outputs["logits"], outputs["offsets"], outputs["anchors"],
                             score_threshold=self.score_threshold, iou_threshold=self.nms_iou,
                             pre_nms_top_k=self.pre_nms_top_k,
                             max_detections=self.max_detections, variances=self.variances)

  def eval_sums(self, outputs, batch):
    p = self._loss_parts(outputs, batch)
    return {"loss_sum": p.total, "count": p.num_pos, "loc_sum": p.loc, "conf_sum": p.conf}

  def eval_examples(self, outputs, batch) -> dict[str, jax.Array]:
    """Per-image padded detections and ground truth (keys of
    :data:`visionjax.detection.evaluation.EXAMPLE_KEYS`)."""
    d = self.postprocess(outputs)
    b = batch["boxes"].shape[0]
    difficult = batch.get("box_difficult", jnp.zeros(batch["box_valid"].shape, bool))
    return {"dt_boxes": d.boxes, "dt_scores": d.scores, "dt_classes": d.classes,
            "dt_valid": d.valid, "gt_boxes": batch["boxes"],
            "gt_labels": batch["box_labels"], "gt_valid": batch["box_valid"].astype(bool),
            "gt_difficult": difficult.astype(bool),
            "valid": batch.get("valid", jnp.ones((b,), bool)).astype(bool)}

  def eval_init(self, image_size) -> evaluation.EvalState:
    return evaluation.init(self.num_classes, image_size, iou_threshold=self.eval_iou)

  def eval_update(self, state: evaluation.EvalState, examples) -> evaluation.EvalState:
    return evaluation.update(state, examples)

  def summarize(self, sums, state: Optional[evaluation.EvalState] = None) -> dict[str, Any]:
    n = max(float(sums["count"]), 1.0)
    out = {"loss": float(sums["loss_sum"]) / n, "loc_loss": float(sums["loc_sum"]) / n,
           "conf_loss": float(sums["conf_sum"]) / n}
    if state is not None:
      out.update(evaluation.compute(state))
    return out

  def inference_outputs(self, outputs):
    return self.postprocess(outputs)._asdict()  # padded detections

  def to_result(self, out, *, class_names, content, size):
    del content
    keep = np.asarray(out["valid"], bool)
    classes = np.asarray(out["classes"])[keep].astype(np.int32)
    boxes = np.asarray(out["boxes"], np.float32)[keep].reshape(-1, 4)
    return {"boxes": boxes * base.pixel_scale(size), "classes": classes,
            "names": [class_names[c] for c in classes],
            "scores": np.asarray(out["scores"], np.float32)[keep]}

  def draw_result(self, image, result, class_names):
    from visionjax import viz
    keep = np.asarray(result["scores"]) >= self.draw_min_score
    return viz.draw_boxes(image, result["boxes"][keep], result["classes"][keep],
                          result["scores"][keep], class_names, normalized=False)

  def visualize(self, images, batch, predictions, class_names, path):
    """Detections after NMS (solid, with scores) over dashed ground truth;
    one PNG per image in ``<dir of path>/detections``."""
    from visionjax.viz import boxes as box_viz
    n = len(images)
    box_viz.save_detections(
        images, np.asarray(predictions.boxes), np.asarray(predictions.scores),
        np.asarray(predictions.classes), np.asarray(predictions.valid), class_names, path,
        gt_boxes=np.asarray(batch["boxes"][:n]), gt_valid=np.asarray(batch["box_valid"][:n]),
        per_image_dir=os.path.join(os.path.dirname(path), "detections"))
