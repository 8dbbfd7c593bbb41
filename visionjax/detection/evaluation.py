"""Host-side detection evaluation: padded per-image arrays -> VOC and COCO AP.

Feeds the streaming evaluators of :mod:`visionjax.metrics.voc` and
:mod:`visionjax.metrics.coco` from the padded arrays a jitted eval step
returns (detections from :func:`~visionjax.detection.postprocessing.batch_postprocess`
plus the batch's padded ground truth). Boxes arrive normalized xyxy and are
scaled to pixels of the network input (``image_size``), so COCO's
small/medium/large ranges refer to input pixels. Coordinates are continuous,
so VOC uses ``pixel_offset=0`` (the devkit's +1 is for integer pixel
indices at the original resolution, which a resized input no longer has).

VOC ``difficult`` boxes are ignored by both: the devkit rule for VOC, and
COCO's ``iscrowd`` (ignore-region) flag for COCO-style AP.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from visionjax.metrics import coco, voc

# Keys of the per-image arrays (all with a leading batch axis B).
EXAMPLE_KEYS = ("dt_boxes", "dt_scores", "dt_classes", "dt_valid", "gt_boxes", "gt_labels",
                "gt_valid", "gt_difficult", "valid")


@dataclasses.dataclass(frozen=True)
class EvalState:
  """Immutable host state: VOC (11-point and all-point share the matching),
  COCO, the next image id and the input image size (height, width)."""
  voc: voc.VocState
  coco: coco.CocoState
  image_size: tuple
  next_id: int = 0


def init(num_classes: int, image_size, *, iou_threshold: float = 0.5) -> EvalState:
  """Empty state for foreground classes 0 .. num_classes - 1."""
  h, w = (int(s) for s in image_size)
  return EvalState(voc.voc_init(num_classes, iou_threshold=iou_threshold, pixel_offset=0.0),
                   coco.coco_init(list(range(num_classes))), (h, w))


def update(state: EvalState, examples: Mapping[str, Any]) -> EvalState:
  """Adds one batch of padded per-image arrays (see :data:`EXAMPLE_KEYS`).

  Shapes: dt_boxes [B, D, 4] normalized xyxy, dt_scores/dt_classes/dt_valid
  [B, D]; gt_boxes [B, G, 4] normalized xyxy, gt_labels/gt_valid/gt_difficult
  [B, G]; valid [B] (False: a padding image, skipped). Images get consecutive
  ids in arrival order.
  """
  missing = [k for k in EXAMPLE_KEYS if k not in examples]
  if missing:
    raise ValueError(f"examples lack {missing}; expected keys {EXAMPLE_KEYS}")
  ex = {k: np.asarray(examples[k]) for k in EXAMPLE_KEYS}
  keep = ex["valid"].astype(bool)
  ex = {k: v[keep] for k, v in ex.items()}
  n = int(keep.sum())
  if n == 0:
    return state
  h, w = state.image_size
  scale = np.array([w, h, w, h], np.float64)
  ids = np.arange(state.next_id, state.next_id + n)
  common = dict(image_ids=ids, gt_boxes=ex["gt_boxes"] * scale, gt_valid=ex["gt_valid"],
                dt_boxes=ex["dt_boxes"] * scale, dt_scores=ex["dt_scores"],
                dt_valid=ex["dt_valid"])
  difficult = ex["gt_difficult"].astype(bool)
  v = voc.voc_update_batch(state.voc, gt_labels=ex["gt_labels"], dt_labels=ex["dt_classes"],
                           gt_difficult=difficult, **common)
  c = coco.coco_update_batch(state.coco, gt_classes=ex["gt_labels"],
                             dt_classes=ex["dt_classes"], gt_iscrowd=difficult,
                             box_format="xyxy", **common)
  return dataclasses.replace(state, voc=v, coco=c, next_id=state.next_id + n)


def _listed(ap: np.ndarray) -> list:
  return [None if np.isnan(x) else float(x) for x in ap]


def compute(state: EvalState) -> dict[str, Any]:
  """VOC mAP@0.5 (11-point VOC2007 and all-point), COCO AP and per-class APs.

  Keys: map50_voc07, map50 (all-point), coco_ap (AP@[.5:.95]), coco_ap50,
  coco_ap75, coco_ar100, ap50_voc07_per_class, ap50_per_class,
  coco_ap_per_class (lists, None for classes without ground truth),
  num_images.
  """
  v07 = voc.voc_compute(state.voc, use_07_metric=True)
  vall = voc.voc_compute(state.voc)
  c = coco.coco_compute(state.coco)
  return {"map50_voc07": v07["map"], "map50": vall["map"], "coco_ap": c["AP"],
          "coco_ap50": c["AP50"], "coco_ap75": c["AP75"], "coco_ar100": c["AR100"],
          "ap50_voc07_per_class": _listed(v07["ap"]), "ap50_per_class": _listed(vall["ap"]),
          "coco_ap_per_class": _listed(c["per_class_ap"]), "num_images": state.next_id}
