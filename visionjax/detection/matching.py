"""SSD matching of ground-truth boxes to default boxes, with static shapes.

Ground truth comes padded: ``gt_boxes`` [G, 4] with a validity mask
``gt_valid`` [G] (G = a fixed maximum number of boxes per image). With
IoU[g, a] between valid ground truth g and default box a:

1. every default box takes the ground truth of highest IoU (first on ties)
   and is *positive* if that IoU ≥ ``iou_threshold`` (0.5);
2. then every valid ground truth g takes its best default box
   ``a*(g) = argmax_a IoU[g, a]`` (first on ties), which becomes positive and
   matched to g whatever its IoU — so no object is left without a default box.
   If several ground truths share the same best default box, the last of
   them keeps it (the order of the reference implementation's loop).

Step 2 overrides step 1. Padding ground truth never matches. Everything is
a fixed-size [G, A] computation: jit- and vmap-safe.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from visionjax.detection.coding import SSD_VARIANCES, encode
from visionjax.ops.boxes import box_convert, box_iou, check_boxes


class Match(NamedTuple):
  """Per default box: ``index`` int32 [A] of its ground truth (-1: background)
  and ``iou`` float [A] with that ground truth (the best IoU over the valid
  ground truth for background boxes; 0 when there is none)."""
  index: jax.Array
  iou: jax.Array


def match(gt_boxes, gt_valid, anchors, iou_threshold: float = 0.5, *,
          fmt: str = "xyxy") -> Match:
  """Matches ground truth [G, 4] (``fmt``) + ``gt_valid`` [G] to anchors [A, 4]
  (cx, cy, w, h) by the two rules of the module docstring."""
  gt = check_boxes(gt_boxes, "gt_boxes")
  anchors = check_boxes(anchors, "anchors")
  if gt.ndim != 2 or anchors.ndim != 2:
    raise ValueError(f"gt_boxes/anchors have shapes {gt.shape}/{anchors.shape}; expected "
                     "[G, 4] and [A, 4] (use jax.vmap for batches)")
  g, a = gt.shape[0], anchors.shape[0]
  valid = jnp.asarray(gt_valid, bool)
  if valid.shape != (g,):
    raise ValueError(f"gt_valid has shape {valid.shape}; expected ({g},)")
  if g == 0:
    return Match(jnp.full((a,), -1, jnp.int32), jnp.zeros((a,), gt.dtype))
  iou = box_iou(box_convert(gt, fmt, "xyxy"), box_convert(anchors, "cxcywh", "xyxy"))
  iou = jnp.where(valid[:, None], iou, -1.0)                        # [G, A]
  # Rule 1: best ground truth per default box.
  best_gt = jnp.argmax(iou, axis=0).astype(jnp.int32)               # [A]
  best_iou = jnp.max(iou, axis=0)
  index = jnp.where(best_iou >= iou_threshold, best_gt, -1)
  # Rule 2: best default box per ground truth; the last ground truth claiming
  # a box wins (max over the claimants' indices).
  best_anchor = jnp.argmax(iou, axis=1)                             # [G]
  claims = valid[:, None] & (best_anchor[:, None] == jnp.arange(a)[None, :])  # [G, A]
  claimant = jnp.max(jnp.where(claims, jnp.arange(g, dtype=jnp.int32)[:, None], -1), axis=0)
  index = jnp.where(claimant >= 0, claimant, index)
  matched_iou = jnp.where(index >= 0, jnp.take_along_axis(iou, jnp.maximum(index, 0)[None], 0)[0],
                          best_iou)
  return Match(index, jnp.maximum(matched_iou, 0.0))


class Targets(NamedTuple):
  """Training targets per default box: ``labels`` int32 [A] (0 = background,
  c + 1 = ground-truth class c), ``offsets`` float [A, 4] (encoded matched
  box; zeros for background), ``positive`` bool [A], ``match`` (:class:`Match`)."""
  labels: jax.Array
  offsets: jax.Array
  positive: jax.Array
  match: Match


def ssd_targets(gt_boxes, gt_labels, gt_valid, anchors, *, iou_threshold: float = 0.5,
                variances: Sequence[float] = SSD_VARIANCES, fmt: str = "xyxy") -> Targets:
  """Matching plus target encoding for one image.

  Shapes: gt_boxes [G, 4] (``fmt``), gt_labels int [G] (foreground classes
  0..K-1), gt_valid bool [G], anchors [A, 4] (cx, cy, w, h).
  """
  m = match(gt_boxes, gt_valid, anchors, iou_threshold, fmt=fmt)
  labels = jnp.asarray(gt_labels)
  if labels.shape != jnp.shape(gt_valid):
    raise ValueError(f"gt_labels has shape {labels.shape}; expected {jnp.shape(gt_valid)}")
  positive = m.index >= 0
  if labels.shape[0] == 0:  # static: no ground-truth slots at all
    a = positive.shape[0]
    return Targets(jnp.zeros((a,), jnp.int32), jnp.zeros((a, 4), jnp.float32), positive, m)
  safe = jnp.maximum(m.index, 0)
  cls = jnp.where(positive, labels[safe].astype(jnp.int32) + 1, 0)
  offsets = encode(jnp.asarray(gt_boxes)[safe], anchors, variances, fmt=fmt)
  return Targets(cls, jnp.where(positive[:, None], offsets, 0.0), positive, m)
