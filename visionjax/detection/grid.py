"""Anchor-free grid detection (YOLO/FCOS/YOLOX-style) with static shapes.

A grid head predicts, at every feature-map cell ("point") p = 1..P of one or
more strides, an objectness logit, K class logits and four distances from
the cell centre to the box sides. Model outputs (see
:mod:`visionjax.models.yolo`)::

  obj_logits [B, P]      cls_logits [B, P, K]      box_deltas [B, P, 4]
  points     [P, 2]      cell centres (x, y), normalized
  strides    [P, 2]      the cell's stride (sx, sy), normalized
  size_ranges [P, 2]     (lo, hi]: sizes (in strides) the cell's level takes

Boxes decode as (softplus keeps distances positive with bounded gradients)::

  (l, t, r, b) = softplus(box_deltas) · (sx, sy, sx, sy)
  box = (px - l, py - t, px + r, py + b)                      normalized xyxy

**Target assignment** (:func:`grid_targets`, one image, padded ground truth
``gt_boxes`` [G, 4] xyxy with ``gt_valid`` [G]). With the distances
(l*, t*, r*, b*) from point p to the sides of ground truth g and its size at
p in strides ``m = max(l*/sx, t*/sy, r*/sx, b*/sy)``, point p is a candidate
for a valid g when

1. *centre sampling* (FCOS): p lies strictly inside g's centre region, the
   box ``(cx ± radius·sx, cy ± radius·sy)`` clipped to g, and g's size fits
   p's level: ``lo < m ≤ hi``; or
2. *the centre cell* (YOLO): p is the cell of g's size-level whose centre is
   nearest to g's centre, the level chosen by ``m_c = max(w/2sx, h/2sy)`` —
   so every valid object owns at least one cell, however small it is.

A point with several candidates takes the one of smallest area (FCOS's
ambiguity rule; the lower index on ties). Padding never matches.

**Loss** (:func:`grid_loss`), summed over an image, N = number of positives::

  L_obj = Σ_p FL(obj_p, [p positive])          sigmoid focal loss, all points
  L_cls = Σ_{p ∈ Pos} Σ_c BCE(cls_pc, [c = y_p])
  L_box = Σ_{p ∈ Pos} (1 - GIoU(decode_p, box_p))
  L     = (L_obj + L_cls + α·L_box) / N,   N summed over the batch

**Post-processing** (:func:`grid_postprocess`): score_pc = σ(obj_p)·σ(cls_pc)
(YOLOX), then the same score threshold, class-aware NMS and top-k as the SSD
(:func:`visionjax.detection.postprocessing.select_detections`).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from visionjax import losses
from visionjax.detection.postprocessing import Detections, select_detections
from visionjax.ops.boxes import check_boxes

OUTPUT_KEYS = ("obj_logits", "cls_logits", "box_deltas", "points", "strides", "size_ranges")


def decode(box_deltas, points, strides):
  """Normalized xyxy boxes [..., P, 4] from raw deltas [..., P, 4] at points
  [P, 2] with strides [P, 2] (the module docstring's formula)."""
  d = jax.nn.softplus(jnp.asarray(box_deltas, jnp.float32))
  s = jnp.concatenate([strides, strides], -1)
  d = d * s
  return jnp.concatenate([points - d[..., :2], points + d[..., 2:]], -1)


class GridTargets(NamedTuple):
  """Per point: ``labels`` int32 [P] (foreground class 0..K-1, -1 for
  background), ``boxes`` [P, 4] (the assigned ground truth, xyxy; zeros for
  background), ``positive`` bool [P], ``index`` int32 [P] (ground truth
  index, -1 for background)."""
  labels: jax.Array
  boxes: jax.Array
  positive: jax.Array
  index: jax.Array


def grid_targets(gt_boxes, gt_labels, gt_valid, points, strides, size_ranges, *,
                 center_radius: Optional[float] = 1.5) -> GridTargets:
  """Assigns padded ground truth [G] to the P grid points of one image.

  Args:
    gt_boxes: [G, 4] normalized xyxy; gt_labels: int [G]; gt_valid: bool [G].
    points, strides, size_ranges: [P, 2] each (see the module docstring).
    center_radius: half-size of the centre region in strides (FCOS: 1.5);
      None: the whole box (rule 1 without centre sampling).

  Static shapes: a [P, G] candidate matrix, then an argmin over G.
  """
  gt_boxes = check_boxes(gt_boxes, "gt_boxes").astype(jnp.float32)
  if gt_boxes.ndim != 2:
    raise ValueError(f"gt_boxes has shape {gt_boxes.shape}; expected [G, 4] "
                     "(use jax.vmap for batches)")
  g = gt_boxes.shape[0]
  if jnp.shape(gt_labels) != (g,) or jnp.shape(gt_valid) != (g,):
    raise ValueError(f"gt_labels/gt_valid have shapes {jnp.shape(gt_labels)}/"
                     f"{jnp.shape(gt_valid)}; expected ({g},) to match gt_boxes")
  p = jnp.shape(points)[0]
  for name, v in (("points", points), ("strides", strides), ("size_ranges", size_ranges)):
    if jnp.shape(v) != (p, 2):
      raise ValueError(f"{name} has shape {jnp.shape(v)}; expected ({p}, 2)")
  if center_radius is not None and center_radius <= 0:
    raise ValueError(f"center_radius={center_radius}; expected > 0 or None")
  gt_valid = jnp.asarray(gt_valid, bool)
  px, py = points[:, 0:1], points[:, 1:2]                                 # [P, 1]
  sx, sy = strides[:, 0:1], strides[:, 1:2]
  lo, hi = size_ranges[:, 0:1], size_ranges[:, 1:2]
  x1, y1, x2, y2 = (gt_boxes[None, :, i] for i in range(4))               # [1, G]
  l, t, r, b = px - x1, py - y1, x2 - px, y2 - py                         # [P, G]
  size = jnp.maximum(jnp.maximum(l / sx, t / sy), jnp.maximum(r / sx, b / sy))
  in_level = (size > lo) & (size <= hi)
  cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
  if center_radius is None:
    rx1, ry1, rx2, ry2 = x1, y1, x2, y2
  else:
    rx1 = jnp.maximum(x1, cx - center_radius * sx)
    ry1 = jnp.maximum(y1, cy - center_radius * sy)
    rx2 = jnp.minimum(x2, cx + center_radius * sx)
    ry2 = jnp.minimum(y2, cy + center_radius * sy)
  in_centre = (px > rx1) & (px < rx2) & (py > ry1) & (py < ry2)
  # Rule 2: the nearest cell centre on the level that the object's size picks.
  size_c = jnp.maximum((x2 - x1) / (2 * sx), (y2 - y1) / (2 * sy))       # [P, G]
  level_c = (size_c > lo) & (size_c <= hi)
  dist = jnp.square((px - cx) / sx) + jnp.square((py - cy) / sy)
  nearest = jnp.argmin(jnp.where(level_c, dist, jnp.inf), axis=0)        # [G]
  centre_cell = jnp.arange(p)[:, None] == nearest[None, :]
  candidate = ((in_centre & in_level) | (centre_cell & level_c)) & gt_valid[None, :]
  area = (x2 - x1) * (y2 - y1)
  index = jnp.argmin(jnp.where(candidate, jnp.broadcast_to(area, candidate.shape), jnp.inf),
                     axis=1)                                              # [P]
  positive = jnp.any(candidate, axis=1)
  labels = jnp.where(positive, jnp.asarray(gt_labels, jnp.int32)[index], -1)
  boxes = jnp.where(positive[:, None], gt_boxes[index], 0.0)
  return GridTargets(labels, boxes, positive, jnp.where(positive, index, -1).astype(jnp.int32))


class GridLossParts(NamedTuple):
  """Sums of one image (or a batch): ``box`` (Σ 1 - GIoU over positives),
  ``obj`` (Σ focal over all points), ``cls`` (Σ BCE over positives and
  classes), ``num_pos``."""
  box: jax.Array
  obj: jax.Array
  cls: jax.Array
  num_pos: jax.Array


def image_grid_loss(obj_logits, cls_logits, box_deltas, targets: GridTargets, points, strides,
                    *, focal_alpha: Optional[float] = 0.25,
                    focal_gamma: float = 2.0) -> GridLossParts:
  """:class:`GridLossParts` of one image: obj_logits [P], cls_logits [P, K],
  box_deltas [P, 4], ``targets`` from :func:`grid_targets`."""
  cls_logits = jnp.asarray(cls_logits, jnp.float32)
  p, k = cls_logits.shape
  if jnp.shape(obj_logits) != (p,) or jnp.shape(box_deltas) != (p, 4):
    raise ValueError(f"obj_logits/box_deltas have shapes {jnp.shape(obj_logits)}/"
                     f"{jnp.shape(box_deltas)}; expected ({p},) and ({p}, 4)")
  pos = targets.positive
  obj = losses.sigmoid_focal_loss(obj_logits, pos.astype(jnp.float32), alpha=focal_alpha,
                                  gamma=focal_gamma, reduction="sum")
  onehot = jax.nn.one_hot(jnp.maximum(targets.labels, 0), k)
  cls = losses.sigmoid_binary_cross_entropy(
      cls_logits, onehot, reduction="sum", where=jnp.broadcast_to(pos[:, None], (p, k)))
  boxes = decode(box_deltas, points, strides)
  box = losses.giou_loss(boxes, targets.boxes, reduction="sum", where=pos)
  return GridLossParts(box, obj, cls, jnp.sum(pos).astype(jnp.float32))


def grid_loss(outputs, gt_boxes, gt_labels, gt_valid, *, box_weight: float = 1.0,
              center_radius: Optional[float] = 1.5, focal_alpha: Optional[float] = 0.25,
              focal_gamma: float = 2.0, where=None):
  """Batch loss as ``(Σ_images (L_obj + L_cls + α·L_box), Σ_images N, parts, targets)``.

  ``outputs``: the grid head's dict (module docstring); ground truth
  [B, G, ...] padded with ``gt_valid``; ``where`` bool [B] drops (padding)
  images. ``parts`` are the batch sums (:class:`GridLossParts`), ``targets``
  the per-image :class:`GridTargets` [B, P, ...]. Vmapped over the batch.
  """
  pts, strd, rng = outputs["points"], outputs["strides"], outputs["size_ranges"]
  t = jax.vmap(lambda b, l, v: grid_targets(b, l, v, pts, strd, rng,
                                            center_radius=center_radius))(
      gt_boxes, gt_labels, gt_valid)
  fn = jax.vmap(lambda o, c, d, tt: image_grid_loss(o, c, d, tt, pts, strd,
                                                    focal_alpha=focal_alpha,
                                                    focal_gamma=focal_gamma))
  parts = fn(outputs["obj_logits"], outputs["cls_logits"], outputs["box_deltas"], t)
  if where is not None:
    keep = jnp.asarray(where, bool)
    parts = GridLossParts(*(jnp.where(keep, v, 0.0) for v in parts))
    t = t._replace(positive=t.positive & keep[:, None])
  parts = GridLossParts(*(jnp.sum(v) for v in parts))
  return parts.obj + parts.cls + box_weight * parts.box, parts.num_pos, parts, t


def grid_scores(obj_logits, cls_logits):
  """Detection scores [..., P, K] = σ(obj)·σ(cls) (YOLOX)."""
  return jax.nn.sigmoid(jnp.asarray(obj_logits, jnp.float32))[..., None] * \
      jax.nn.sigmoid(jnp.asarray(cls_logits, jnp.float32))


def grid_postprocess(outputs, *, score_threshold: float = 0.01, iou_threshold: float = 0.45,
                     pre_nms_top_k: int = 400, max_detections: int = 200,
                     clip: bool = True) -> Detections:
  """Padded :class:`Detections` [B, max_detections, ...] of a grid head's outputs."""
  boxes = decode(outputs["box_deltas"], outputs["points"], outputs["strides"])
  if clip:
    boxes = jnp.clip(boxes, 0.0, 1.0)
  scores = grid_scores(outputs["obj_logits"], outputs["cls_logits"])
  fn = lambda b, s: select_detections(b, s, score_threshold=score_threshold,
                                      iou_threshold=iou_threshold, pre_nms_top_k=pre_nms_top_k,
                                      max_detections=max_detections)
  return jax.vmap(fn)(boxes, scores)
