"""SSD post-processing under jit: scores -> boxes -> class-aware NMS -> top-k.

Per image, from ``logits`` [A, K+1] (class 0 = background), ``offsets``
[A, 4] and default boxes [A, 4] (cx, cy, w, h):

1. ``p = softmax(logits)``; boxes = :func:`~visionjax.detection.coding.decode`
   (offsets), optionally clipped to [0, 1];
2. per foreground class c, the (at most ``pre_nms_top_k``, 400) default
   boxes of highest p_c with ``p_c ≥ score_threshold`` (0.01) are candidates;
3. greedy NMS within each class (IoU > ``iou_threshold``, 0.45, suppresses),
   over all classes at once with :func:`visionjax.ops.nms.batched_nms`;
4. the ``max_detections`` (200) kept candidates of highest score, over all
   classes (the reference DetectionOutput layer's ``keep_top_k``).

Outputs are padded to ``max_detections`` with a ``valid`` mask, so a batch is
one jitted program (:func:`batch_postprocess` is the vmapped version).
Greedy NMS in step 3 is the same per class as running it class by class,
because boxes of different classes never suppress each other.

Steps 2-4 are :func:`select_detections`, shared with the anchor-free grid
detectors (:mod:`visionjax.detection.grid`), which score boxes differently.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from visionjax.detection.coding import SSD_VARIANCES, decode
from visionjax.ops.nms import batched_nms, top_k


class Detections(NamedTuple):
  """Padded detections: ``boxes`` [..., D, 4] normalized xyxy (x1, y1, x2, y2),
  ``scores`` [..., D] (0 where invalid), ``classes`` int32 [..., D] (foreground
  class 0..K-1; -1 where invalid), ``valid`` bool [..., D]; sorted by score."""
  boxes: jax.Array
  scores: jax.Array
  classes: jax.Array
  valid: jax.Array


def postprocess(logits, offsets, anchors, *, score_threshold: float = 0.01,
                iou_threshold: float = 0.45, pre_nms_top_k: int = 400,
                max_detections: int = 200, clip: bool = True,
                variances: Sequence[float] = SSD_VARIANCES) -> Detections:
  """Detections of one image (see the module docstring).

  Shapes: logits [A, K+1], offsets [A, 4], anchors [A, 4] -> D = max_detections.
  """
  logits = jnp.asarray(logits, jnp.float32)
  if logits.ndim != 2 or logits.shape[1] < 2:
    raise ValueError(f"logits has shape {logits.shape}; expected [A, K+1] with K >= 1")
  a = logits.shape[0]
  if jnp.shape(offsets) != (a, 4) or jnp.shape(anchors) != (a, 4):
    raise ValueError(f"offsets/anchors have shapes {jnp.shape(offsets)}/{jnp.shape(anchors)};"
                     f" expected ({a}, 4) to match logits {logits.shape}")
  boxes = decode(offsets, anchors, variances)                         # [A, 4] xyxy
  if clip:
    boxes = jnp.clip(boxes, 0.0, 1.0)
  probs = jax.nn.softmax(logits, axis=-1)[:, 1:]                      # [A, K]
  return select_detections(boxes, probs, score_threshold=score_threshold,
                           iou_threshold=iou_threshold, pre_nms_top_k=pre_nms_top_k,
                           max_detections=max_detections)


def select_detections(boxes, scores, *, score_threshold: float = 0.01,
                      iou_threshold: float = 0.45, pre_nms_top_k: int = 400,
                      max_detections: int = 200) -> Detections:
  """Steps 2-4 of the module docstring for one image, for any detector family.

  Shapes: boxes [A, 4] normalized xyxy, scores [A, K] (foreground class
  scores; the SSD's softmax, a grid head's σ(obj)·σ(cls)) -> D = max_detections.
  """
  scores = jnp.asarray(scores, jnp.float32)
  if scores.ndim != 2 or jnp.shape(boxes) != (scores.shape[0], 4):
    raise ValueError(f"boxes/scores have shapes {jnp.shape(boxes)}/{scores.shape}; "
                     "expected [A, 4] and [A, K]")
  for name, v in (("pre_nms_top_k", pre_nms_top_k), ("max_detections", max_detections)):
    if not isinstance(v, int) or v < 1:
      raise ValueError(f"{name}={v!r}; expected a positive Python int")
  a, k = scores.shape
  probs = scores.T                                                    # [K, A]
  p = min(pre_nms_top_k, a)
  scores, idx, ok = top_k(probs, p, valid=probs >= score_threshold)   # [K, P]
  cand_boxes = boxes[jnp.maximum(idx, 0)].reshape(k * p, 4)
  cand_scores = jnp.where(ok, scores, 0.0).reshape(-1)
  cand_classes = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None], (k, p)).reshape(-1)
  keep, kept = batched_nms(cand_boxes, cand_scores, cand_classes, iou_threshold,
                           max_output_size=max_detections, valid=ok.reshape(-1))
  safe = jnp.maximum(keep, 0)
  return Detections(
      boxes=jnp.where(kept[:, None], cand_boxes[safe], 0.0),
      scores=jnp.where(kept, cand_scores[safe], 0.0),
      classes=jnp.where(kept, cand_classes[safe], -1),
      valid=kept)


def batch_postprocess(logits, offsets, anchors, **kwargs) -> Detections:
  """:func:`postprocess` vmapped over images: logits [B, A, K+1], offsets
  [B, A, 4], anchors [A, 4] (shared) -> :class:`Detections` [B, D, ...]."""
  return jax.vmap(lambda l, o: postprocess(l, o, anchors, **kwargs))(logits, offsets)
