"""Region proposals for two-stage detectors (Faster/Mask R-CNN), static shapes.

Boxes here are **absolute pixel xyxy** in the network input image, as the
R-CNN ops (``visionjax.ops.roi``) take them; convert normalized
boxes at the edge with ``ops.denormalize_boxes``.

* :func:`fpn_anchors`: the anchors of torchvision's ``AnchorGenerator`` for an
  FPN (NumPy, computed at trace time: a constant of the architecture).
* :func:`generate_proposals`: torchvision's ``RegionProposalNetwork``
  post-processing (``box_coder.decode`` + ``filter_proposals``) for a batch,
  with per-image padded outputs: per level, the ``pre_nms_top_n`` anchors of
  highest objectness; their boxes decoded (``visionjax.detection.coding``
  with variances ``1 / weights``), clipped to the image, those smaller than
  ``min_size`` or with ``sigmoid(objectness) < score_threshold`` dropped;
  NMS within each level (``visionjax.ops.nms`` with the level as class); the
  ``post_nms_top_n`` best over all levels, by score.

Difference: ``visionjax.ops.nms`` never keeps zero-area boxes, torchvision's
does; with the default ``min_size`` (1e-3) they are removed first anyway.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from visionjax.detection import coding
from visionjax.ops.boxes import box_convert, clip_boxes, remove_small_boxes
from visionjax.ops.nms import nms, top_k

#: torchvision's Mask/Faster R-CNN FPN anchors: one size per level, 3 ratios.
FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))
FPN_ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * 5


class Proposals(NamedTuple):
  """Per-image padded proposals, best first.

  boxes [B, K, 4] pixel xyxy, scores [B, K] sigmoid objectness, levels int32
  [B, K] pyramid level, valid bool [B, K] (False rows are padding: boxes 0).
  """
  boxes: jax.Array
  scores: jax.Array
  levels: jax.Array
  valid: jax.Array


def fpn_anchors(image_size: Tuple[int, int], feature_sizes: Sequence[Tuple[int, int]],
                sizes: Sequence[Sequence[float]] = FPN_SIZES,
                aspect_ratios: Sequence[Sequence[float]] = FPN_ASPECT_RATIOS):
  """Anchors [A, 4] (pixel xyxy, float32) and the per-level counts.

  torchvision's ``AnchorGenerator``: level l has stride
  ``image_size // feature_size`` (integer division, per axis) and base
  anchors, for each ratio r (outer) and size s (inner), of width
  ``s / sqrt(r)`` and height ``s · sqrt(r)`` centred at 0 and rounded
  (``round(±w/2)``, half to even); they are shifted to every cell
  ``(j · stride_x, i · stride_y)``, cell-major (row-major cells, anchors
  within a cell), which is the layout of an RPN head's ``[H, W, n·4]`` output
  reshaped to ``[H·W·n, 4]``.

  Returns ``(anchors, num_anchors_per_level)`` (a tuple of ints).
  """
  if not len(sizes) == len(aspect_ratios) == len(feature_sizes):
    raise ValueError(f"fpn_anchors: {len(feature_sizes)} feature maps, {len(sizes)} sizes and "
                     f"{len(aspect_ratios)} aspect-ratio lists; expected one of each per level")
  out, counts = [], []
  for (fh, fw), sz, ar in zip(feature_sizes, sizes, aspect_ratios):
    scales = np.asarray(sz, np.float32)
    h_ratios = np.sqrt(np.asarray(ar, np.float32))
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)            # [n, 4]
    sy, sx = image_size[0] // fh, image_size[1] // fw
    xs = np.arange(fw, dtype=np.float32) * sx
    ys = np.arange(fh, dtype=np.float32) * sy
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    shifts = np.stack([xx, yy, xx, yy], axis=-1).reshape(-1, 1, 4)
    anchors = (shifts + base[None]).reshape(-1, 4).astype(np.float32)
    out.append(anchors)
    counts.append(anchors.shape[0])
  return np.concatenate(out), tuple(counts)


def decode_boxes(deltas, anchors, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)):
  """R-CNN box decoding (torchvision ``BoxCoder(weights).decode``) of deltas
  [..., 4] against pixel xyxy anchors [..., 4]; pixel xyxy boxes.

  Same formula as :func:`visionjax.detection.coding.decode` with variances
  ``1 / weights`` (dx / wx == dx · (1 / wx)); log-sizes clipped at
  log(1000 / 16) in both.
  """
  w = tuple(float(v) for v in weights)
  if len(w) != 4 or min(w) <= 0:
    raise ValueError(f"weights={weights!r}; expected 4 positive numbers (wx, wy, ww, wh)")
  centred = box_convert(anchors, "xyxy", "cxcywh")
  return coding.decode(deltas, centred, tuple(1.0 / v for v in w), fmt="xyxy")


def encode_boxes(boxes, anchors, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)):
  """R-CNN box encoding (torchvision ``BoxCoder(weights).encode``): deltas
  [..., 4] of pixel xyxy ``boxes`` relative to pixel xyxy ``anchors``
  (``dx = wx·(g_cx - a_cx) / a_w``, ``dw = ww·log(g_w / a_w)``, ...).

  :func:`visionjax.detection.coding.encode` with variances ``1 / weights``;
  the inverse of :func:`decode_boxes`.
  """
  w = tuple(float(v) for v in weights)
  if len(w) != 4 or min(w) <= 0:
    raise ValueError(f"weights={weights!r}; expected 4 positive numbers (wx, wy, ww, wh)")
  centred = box_convert(anchors, "xyxy", "cxcywh")
  return coding.encode(boxes, centred, tuple(1.0 / v for v in w), fmt="xyxy")


def _check_int(name, v, lo=0):
  if not isinstance(v, (int, np.integer)) or v < lo:
    raise ValueError(f"{name}={v!r}; expected a Python int >= {lo}")
  return int(v)


def generate_proposals(anchors, deltas, objectness, image_sizes,
                       num_anchors_per_level: Sequence[int], *, pre_nms_top_n: int = 1000,
                       post_nms_top_n: int = 1000, nms_threshold: float = 0.7,
                       score_threshold: float = 0.0, min_size: float = 1e-3,
                       weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                       static_trip_count: bool = False) -> Proposals:
  """RPN outputs -> per-image padded proposals (see the module docstring).

  Args:
    anchors: [A, 4] or [B, A, 4] pixel xyxy (e.g. :func:`fpn_anchors`).
    deltas: [B, A, 4] box regression; objectness: [B, A] logits. Both are
      treated as constants (``stop_gradient``), as torchvision detaches them.
    image_sizes: [B, 2] (height, width) of each image's content, for
      clipping (may be traced).
    num_anchors_per_level: static counts summing to A.
    pre_nms_top_n: candidates per level (all of a level if it has fewer).
    post_nms_top_n: static K, the padded output size.
    nms_threshold, score_threshold, min_size, weights: as torchvision's
      ``RegionProposalNetwork`` / ``BoxCoder``.
    static_trip_count: NMS loop form (:func:`visionjax.ops.nms.nms`): True
      inside a checkified train step (the per-image NMS is vmapped here, and
      checkify refuses a vmapped early-exit loop); False (default) stops once
      no candidate is left.

  Returns: :class:`Proposals` with K = post_nms_top_n.
  """
  deltas = jax.lax.stop_gradient(jnp.asarray(deltas))
  objectness = jax.lax.stop_gradient(jnp.asarray(objectness))
  anchors = jnp.asarray(anchors, deltas.dtype)
  if deltas.ndim != 3 or deltas.shape[-1] != 4:
    raise ValueError(f"generate_proposals: deltas has shape {deltas.shape}; expected [B, A, 4]")
  b, a = deltas.shape[:2]
  if objectness.shape != (b, a):
    raise ValueError(f"generate_proposals: objectness has shape {objectness.shape}; expected "
                     f"({b}, {a}) to match deltas")
  if anchors.ndim == 2:
    anchors = jnp.broadcast_to(anchors, (b,) + anchors.shape)
  if anchors.shape != (b, a, 4):
    raise ValueError(f"generate_proposals: anchors has shape {anchors.shape}; expected "
                     f"({a}, 4) or ({b}, {a}, 4)")
  counts = [_check_int("num_anchors_per_level entry", n) for n in num_anchors_per_level]
  if sum(counts) != a:
    raise ValueError(f"num_anchors_per_level={tuple(counts)} sums to {sum(counts)}; expected "
                     f"{a} (the number of anchors)")
  pre = _check_int("pre_nms_top_n", pre_nms_top_n, 1)
  post = _check_int("post_nms_top_n", post_nms_top_n, 1)
  image_sizes = jnp.asarray(image_sizes)
  if image_sizes.shape != (b, 2):
    raise ValueError(f"generate_proposals: image_sizes has shape {image_sizes.shape}; "
                     f"expected ({b}, 2) (height, width per image)")

  # Per-level top-k candidates (static sizes), as flat indices into A.
  idx, lvl, start = [], [], 0
  for level, n in enumerate(counts):
    k = min(pre, n)
    _, i, _ = top_k(objectness[:, start:start + n], k)
    idx.append(i + start)
    lvl.append(np.full(k, level, np.int32))
    start += n
  idx = jnp.concatenate(idx, axis=1)                                     # [B, P]
  lvl = jnp.asarray(np.concatenate(lvl))

  def one(anchors_i, deltas_i, logits_i, size_i, idx_i):
    boxes = decode_boxes(deltas_i[idx_i], anchors_i[idx_i], weights)
    boxes = clip_boxes(boxes, size_i)
    scores = jax.nn.sigmoid(logits_i[idx_i])
    keep = remove_small_boxes(boxes, min_size) & (scores >= score_threshold)
    sel, ok = nms(boxes, scores, nms_threshold, max_output_size=post, valid=keep, classes=lvl,
                  static_trip_count=static_trip_count)
    sel = jnp.maximum(sel, 0)
    return (jnp.where(ok[:, None], boxes[sel], 0.0), jnp.where(ok, scores[sel], 0.0),
            jnp.where(ok, lvl[sel], -1), ok)

  return Proposals(*jax.vmap(one)(anchors, deltas, objectness, image_sizes, idx))
