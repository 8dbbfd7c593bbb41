"""Second-stage (box head) post-processing of Faster/Mask R-CNN, static shapes.

:func:`postprocess_detections` is torchvision's
``RoIHeads.postprocess_detections`` for a batch with padded outputs: softmax
over the classes; every (proposal, foreground class) pair decoded with that
class's deltas (``BoxCoder((10, 10, 5, 5))``, i.e. variances 0.1/0.1/0.2/0.2)
and clipped to the image; pairs kept if ``score > score_threshold`` (strict)
and both sides ``>= min_size``; class-aware NMS; the best
``detections_per_image`` by score. :func:`select_class_masks` picks each
detection's mask channel (``maskrcnn_inference``).

Boxes are pixel xyxy, as in ``visionjax.detection.proposals``.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from visionjax.detection.proposals import decode_boxes
from visionjax.ops.boxes import clip_boxes, remove_small_boxes
from visionjax.ops.nms import nms

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)   # torchvision's RoIHeads box coder


class RCNNDetections(NamedTuple):
  """Per-image padded detections, best first: boxes [B, D, 4] pixel xyxy,
  scores [B, D], labels int32 [B, D] (1..K-1; 0 = padding), proposal int32
  [B, D] (the proposal each came from, -1 = padding), valid bool [B, D]."""
  boxes: jax.Array
  scores: jax.Array
  labels: jax.Array
  proposal: jax.Array
  valid: jax.Array


def postprocess_detections(class_logits, box_deltas, proposals, image_sizes, *,
                           proposal_valid=None, score_threshold: float = 0.05,
                           nms_threshold: float = 0.5, detections_per_image: int = 100,
                           min_size: float = 1e-2,
                           weights: Sequence[float] = BOX_WEIGHTS) -> RCNNDetections:
  """Box-head outputs -> per-image detections (see the module docstring).

  Args:
    class_logits: [B, P, K] (class 0 = background).
    box_deltas: [B, P, K, 4] or [B, P, K·4] per-class deltas.
    proposals: [B, P, 4] pixel xyxy; proposal_valid: optional bool [B, P].
    image_sizes: [B, 2] (height, width) for clipping.
    detections_per_image: static D.

  Returns: :class:`RCNNDetections`.
  """
  class_logits = jnp.asarray(class_logits)
  b, p, k = class_logits.shape
  box_deltas = jnp.asarray(box_deltas).reshape(b, p, k, 4)
  proposals = jnp.asarray(proposals)
  if proposals.shape != (b, p, 4):
    raise ValueError(f"postprocess_detections: proposals has shape {proposals.shape}; "
                     f"expected ({b}, {p}, 4) to match class_logits {class_logits.shape}")
  if not isinstance(detections_per_image, int) or detections_per_image < 1:
    raise ValueError(f"detections_per_image={detections_per_image!r}; expected an int >= 1")
  image_sizes = jnp.asarray(image_sizes)
  if image_sizes.shape != (b, 2):
    raise ValueError(f"postprocess_detections: image_sizes has shape {image_sizes.shape}; "
                     f"expected ({b}, 2)")
  pv = jnp.ones((b, p), bool) if proposal_valid is None else jnp.asarray(proposal_valid, bool)

  def one(logits, deltas, props, size, ok):
    scores = jax.nn.softmax(logits, axis=-1)[:, 1:]                        # [P, K-1]
    boxes = decode_boxes(deltas[:, 1:], props[:, None, :], weights)        # [P, K-1, 4]
    boxes = clip_boxes(boxes, size).reshape(-1, 4)
    scores = scores.reshape(-1)
    labels = jnp.tile(jnp.arange(1, k, dtype=jnp.int32), p)
    keep = ((scores > score_threshold) & remove_small_boxes(boxes, min_size) &
            jnp.repeat(ok, k - 1))
    sel, valid = nms(boxes, scores, nms_threshold, max_output_size=detections_per_image,
                     valid=keep, classes=labels)
    sel = jnp.maximum(sel, 0)
    return RCNNDetections(jnp.where(valid[:, None], boxes[sel], 0.0),
                      jnp.where(valid, scores[sel], 0.0), jnp.where(valid, labels[sel], 0),
                      jnp.where(valid, sel // (k - 1), -1).astype(jnp.int32), valid)

  return jax.vmap(one)(class_logits, box_deltas, proposals, image_sizes, pv)


def select_class_masks(mask_logits, labels):
  """Each detection's own class channel of per-class mask logits.

  mask_logits [..., M, M, K], labels int [...] -> [..., M, M] (apply a
  sigmoid for probabilities, then ``ops.paste_masks``).
  """
  mask_logits = jnp.asarray(mask_logits)
  labels = jnp.asarray(labels)
  if mask_logits.shape[:-3] != labels.shape:
    raise ValueError(f"select_class_masks: mask_logits {mask_logits.shape} and labels "
                     f"{labels.shape} disagree on the leading axes")
  idx = jnp.broadcast_to(labels[..., None, None, None], mask_logits.shape[:-1] + (1,))
  return jnp.take_along_axis(mask_logits, idx, axis=-1)[..., 0]
