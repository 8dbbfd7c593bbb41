"""Jit-safe non-maximum suppression with static output shapes.

Every function returns fixed-size outputs: ``indices`` int32 [K] (padded with
-1) and a bool ``valid`` [K] mask, so it can run under ``jax.jit`` and
``jax.vmap`` (batch of images). ``K = max_output_size`` is static.

Greedy NMS definition (the classic algorithm): visit boxes in order of
decreasing score (ties: lower index first); keep a box unless its IoU with an
already kept box is ``> iou_threshold``. The implementation picks the best
remaining box, marks every remaining box that overlaps it by more than the
threshold as suppressed, and repeats K times (or until none remain) — O(K·N)
work, O(N) memory, and the same kept set and order as the greedy loop.

Two loop forms, same outputs (``static_trip_count``):

* ``False`` (default): a ``lax.while_loop`` that stops once K boxes are kept
  or none is live — inference pays only for the boxes it keeps (under
  ``vmap``: the most any image of the batch keeps).
* ``True``: a ``lax.fori_loop`` of exactly K trips that writes nothing once
  no box is live. Needed where the loop runs under ``vmap`` *and* checkify:
  a vmapped while loop whose condition reads per-image values is a
  "batched while loop", which ``checkify.checkify`` refuses
  ("checkify-of-vmap-of-while"), and every train step is checkified
  (``losses.unchecked``). Mask R-CNN's RPN proposals (vmapped over images
  inside the train step) set it in training.

Invalid boxes are dropped before the loop, exactly like ``valid=False`` ones:
a box is valid iff its 4 coordinates are finite and, in xyxy form,
``x2 > x1`` and ``y2 > y1``. So NaN/inf, inverted and zero-area boxes are
never kept and never suppress anything (torchvision keeps them: a zero-area
box has IoU 0 with everything, so it would survive every suppression).

Thresholds given as Python/NumPy numbers are checked at trace time
(ValueError). A traced threshold cannot be; see :func:`nms` for what an
out-of-range one does, and run under ``checkify.checkify`` (e.g.
``visionjax.losses.checked``) to have it rejected at run time.
"""
from __future__ import annotations

import math
from typing import Optional

import jax
from jax.experimental import checkify
import jax.numpy as jnp
import numpy as np

from visionjax.ops.boxes import box_convert, box_iou_elementwise, check_boxes


def _check_threshold(fn, name, value, lo=0.0, hi=1.0):
  """Rejects a concrete scalar ``value`` outside [lo, hi], or NaN, at trace time.

  ``hi=None`` rejects only NaN. A traced value cannot be compared in Python:
  it gets a checkify debug check instead (raises in checked mode only).
  """
  if value is None:
    return
  expected = "not NaN" if hi is None else f"in [{lo}, {hi}]"
  if np.ndim(value) != 0:
    if hi is None:  # e.g. per-box score thresholds: broadcast, not checked
      return
    raise ValueError(f"{fn}: {name} has shape {np.shape(value)}; expected a scalar {expected}")
  try:
    v = float(value)
  except (TypeError, jax.errors.ConcretizationTypeError):  # traced under jit/vmap
    v = jnp.asarray(value)
    ok = ~jnp.isnan(v) if hi is None else (v >= lo) & (v <= hi)
    checkify.debug_check(ok, f"{fn}: {name} must be {expected}; got {{v}}", v=v)
    return
  if math.isnan(v) or (hi is not None and not lo <= v <= hi):
    raise ValueError(f"{fn}: {name}={value!r}; expected a number {expected}")


def _proper_boxes(xyxy):
  """bool [...]: xyxy boxes [..., 4] with finite coordinates, x2 > x1 and y2 > y1.

  Comparisons with NaN are False, so NaN boxes fail the size tests too; the
  isfinite test is there for inf (inf > x1 holds).
  """
  return (jnp.all(jnp.isfinite(xyxy), axis=-1) & (xyxy[..., 2] > xyxy[..., 0]) &
          (xyxy[..., 3] > xyxy[..., 1]))


def _prepare(fn, boxes, scores, fmt, valid, classes, max_output_size, score_threshold):
  boxes = box_convert(check_boxes(boxes), fmt, "xyxy")
  scores = jnp.asarray(scores)
  if boxes.ndim != 2:
    raise ValueError(f"boxes has shape {boxes.shape}; expected [N, 4] (use jax.vmap for "
                     "batches)")
  n = boxes.shape[0]
  if scores.shape != (n,):
    raise ValueError(f"scores has shape {scores.shape}; expected ({n},) to match boxes")
  box_ok = _proper_boxes(boxes)
  # Invalid boxes are dead from the start; zeroing them keeps NaN out of the
  # IoU of live boxes (and out of checked mode's finite-box check).
  boxes = jnp.where(box_ok[:, None], boxes, 0.0)
  live = ~jnp.isnan(scores) & box_ok
  if valid is not None:
    valid = jnp.asarray(valid)
    if valid.shape != (n,):
      raise ValueError(f"valid has shape {valid.shape}; expected ({n},)")
    live = live & valid.astype(bool)
  _check_threshold(fn, "score_threshold", score_threshold, hi=None)
  if score_threshold is not None:
    live = live & (scores >= score_threshold)
  if classes is not None:
    classes = jnp.asarray(classes)
    if classes.shape != (n,):
      raise ValueError(f"classes has shape {classes.shape}; expected ({n},)")
  k = n if max_output_size is None else max_output_size
  if not isinstance(k, int) or k < 0:
    raise ValueError(f"max_output_size={max_output_size!r}; expected a non-negative Python int")
  return boxes, scores, live, classes, k


def _overlap(boxes, j, classes):
  iou = box_iou_elementwise(boxes[j][None, :], boxes)
  if classes is not None:
    # Class-aware: boxes of other classes never suppress each other.
    iou = jnp.where(classes == classes[j], iou, 0.0)
  return iou


def nms(boxes, scores, iou_threshold: float = 0.5, *, max_output_size: Optional[int] = None,
        score_threshold: Optional[float] = None, valid=None, classes=None, fmt: str = "xyxy",
        static_trip_count: bool = False):
  """Greedy NMS with static shapes.

  Args:
    boxes: float [N, 4] in ``fmt``. Invalid boxes (NaN/inf coordinates,
      x2 <= x1 or y2 <= y1: inverted or zero-area) are never kept and never
      suppress others, as if ``valid`` were False for them.
    scores: float [N]. NaN scores are never kept.
    iou_threshold: a box is suppressed by a kept box when IoU > threshold;
      in [0, 1]. A Python/NumPy number outside [0, 1] or NaN raises
      ValueError. A traced one is not checked unless under
      ``checkify.checkify``: NaN then suppresses nothing (``IoU > NaN`` is
      False), a negative value suppresses every other box (of the same
      class), above 1 nothing.
    max_output_size: static K (default N).
    score_threshold: optional; boxes with score < threshold are dropped first
      (NaN raises ValueError when concrete; traced, it drops every box).
    valid: optional bool [N] marking real (non-padding) boxes.
    classes: optional int [N]; if given, suppression only within a class
      (class-aware / "batched" NMS).
    fmt: box format.
    static_trip_count: run exactly K loop trips instead of stopping early
      (see the module docstring: needed under ``checkify`` of ``vmap``).

  Returns:
    ``(indices, valid)``: int32 [K] indices into the inputs in decreasing
    score order, padded with -1, and bool [K] marking the real entries.
  """
  _check_threshold("nms", "iou_threshold", iou_threshold)
  boxes, scores, live, classes, k = _prepare("nms", boxes, scores, fmt, valid, classes,
                                            max_output_size, score_threshold)
  n = boxes.shape[0]
  # Rank of every box in the greedy visiting order (stable: ties -> lower index);
  # picking the live box of smallest rank avoids ambiguity with -inf scores.
  order = jnp.argsort(-scores, stable=True)
  rank = jnp.zeros((n,), jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32))
  out_idx = jnp.full((k,), -1, jnp.int32)
  out_ok = jnp.zeros((k,), bool)
  if n == 0 or k == 0:
    return out_idx, out_ok

  def step(i, live, out_idx, out_ok):
    j = jnp.argmin(jnp.where(live, rank, n)).astype(jnp.int32)
    ok = live[j]  # False only in the fixed-trip form once no box is live
    suppressed = _overlap(boxes, j, classes) > iou_threshold
    live = live & ~suppressed & (jnp.arange(n) != j)
    return live, out_idx.at[i].set(jnp.where(ok, j, -1)), out_ok.at[i].set(ok)

  if static_trip_count:
    _, out_idx, out_ok = jax.lax.fori_loop(
        0, k, lambda i, c: step(i, *c), (live, out_idx, out_ok))
    return out_idx, out_ok
  # Under vmap the while loop runs until every image is done; JAX keeps the
  # carry of an image whose own condition is False, so it writes nothing more.
  _, _, out_idx, out_ok = jax.lax.while_loop(
      lambda c: (c[0] < k) & jnp.any(c[1]), lambda c: (c[0] + 1, *step(*c)),
      (0, live, out_idx, out_ok))
  return out_idx, out_ok


def batched_nms(boxes, scores, classes, iou_threshold: float = 0.5, *,
                max_output_size: Optional[int] = None, score_threshold: Optional[float] = None,
                valid=None, fmt: str = "xyxy", static_trip_count: bool = False):
  """Class-aware NMS: boxes of different ``classes`` never suppress each other.

  Same as ``nms(..., classes=classes)``; the output is one list over all
  classes in decreasing score order. Implemented by masking the IoU with a
  class-equality test rather than torchvision's coordinate-offset trick, which
  loses precision for large coordinates.
  """
  return nms(boxes, scores, iou_threshold, max_output_size=max_output_size,
             score_threshold=score_threshold, valid=valid, classes=classes, fmt=fmt,
             static_trip_count=static_trip_count)


def soft_nms(boxes, scores, *, sigma: float = 0.5, iou_threshold: float = 0.3,
             method: str = "gaussian", score_threshold: float = 0.001,
             max_output_size: Optional[int] = None, valid=None, classes=None,
             fmt: str = "xyxy", static_trip_count: bool = False):
  """Soft-NMS (Bodla et al. 2017) with static shapes.

  Repeatedly selects the remaining box with the highest *current* score
  (ties: lower index), outputs it with that score, and decays the score of
  every other remaining box b by a weight of o = IoU(selected, b):

  * ``'gaussian'``: w = exp(-o² / sigma)
  * ``'linear'``:   w = 1 - o if o > iou_threshold else 1
  * ``'hard'``:     w = 0 if o > iou_threshold else 1   (classic NMS)

  Boxes whose current score falls below ``score_threshold`` are discarded.
  With ``classes`` the decay applies only within a class. Invalid boxes
  (NaN/inf, inverted, zero-area) are never selected, as in :func:`nms`;
  concrete ``iou_threshold`` outside [0, 1], ``sigma <= 0`` or NaN thresholds
  raise ValueError. ``static_trip_count`` as in :func:`nms` (True: exactly K
  trips, for ``checkify`` of ``vmap``).

  Returns:
    ``(indices, scores, valid)``: int32 [K] (-1 padded), float [K] decayed
    scores at selection time (0 padded), bool [K].
  """
  if method not in ("gaussian", "linear", "hard"):
    raise ValueError(f"method={method!r}; expected 'gaussian', 'linear' or 'hard'")
  _check_threshold("soft_nms", "iou_threshold", iou_threshold)
  if method == "gaussian" and isinstance(sigma, (int, float, np.number)) and not sigma > 0:
    raise ValueError(f"soft_nms: sigma={sigma!r}; expected > 0 (w = exp(-IoU² / sigma))")
  boxes, scores, live, classes, k = _prepare("soft_nms", boxes, scores, fmt, valid, classes,
                                            max_output_size, score_threshold)
  n = boxes.shape[0]
  out_idx = jnp.full((k,), -1, jnp.int32)
  out_score = jnp.zeros((k,), scores.dtype)
  out_ok = jnp.zeros((k,), bool)
  if n == 0 or k == 0:
    return out_idx, out_score, out_ok

  def step(i, live, cur, out_idx, out_score, out_ok):
    j = jnp.argmax(jnp.where(live, cur, -jnp.inf)).astype(jnp.int32)
    # If every live score is -inf the masked argmax may land on a dead box.
    j = jnp.where(live[j], j, jnp.argmax(live)).astype(jnp.int32)
    ok = live[j]  # False only in the fixed-trip form once no box is live
    o = _overlap(boxes, j, classes)
    if method == "gaussian":
      w = jnp.exp(-(o * o) / sigma)
    elif method == "linear":
      w = jnp.where(o > iou_threshold, 1.0 - o, 1.0)
    else:
      w = jnp.where(o > iou_threshold, 0.0, 1.0)
    if classes is not None:
      w = jnp.where(classes == classes[j], w, 1.0)
    picked = cur[j]
    cur = cur * w
    live = live & (jnp.arange(n) != j)
    if score_threshold is not None:
      live = live & (cur >= score_threshold)
    return (live, cur, out_idx.at[i].set(jnp.where(ok, j, -1)),
            out_score.at[i].set(jnp.where(ok, picked, 0.0)), out_ok.at[i].set(ok))

  carry = (live, scores, out_idx, out_score, out_ok)
  if static_trip_count:
    carry = jax.lax.fori_loop(0, k, lambda i, c: step(i, *c), carry)
  else:
    carry = jax.lax.while_loop(lambda c: (c[0] < k) & jnp.any(c[1]),
                               lambda c: (c[0] + 1, *step(*c)), (0, *carry))[1:]
  _, _, out_idx, out_score, out_ok = carry
  return out_idx, out_score, out_ok


def top_k(scores, k: int, *, valid=None):
  """The k highest scores along the last axis, static shape, jit/vmap-safe.

  Args:
    scores: float [..., N].
    k: static int <= N.
    valid: optional bool [..., N]; invalid entries rank last.

  Returns:
    ``(values, indices, valid)`` each [..., k]; ties keep the lower index
    first; entries past the number of valid inputs are marked False (their
    value is -inf and index -1).
  """
  scores = jnp.asarray(scores)
  if scores.ndim < 1:
    raise ValueError(f"scores has shape {scores.shape}; expected [..., N]")
  n = scores.shape[-1]
  if not isinstance(k, int) or not 0 <= k <= n:
    raise ValueError(f"k={k!r}; expected a Python int in [0, {n}]")
  ok = ~jnp.isnan(scores)
  if valid is not None:
    valid = jnp.asarray(valid)
    if valid.shape != scores.shape:
      raise ValueError(f"valid has shape {valid.shape}; expected {scores.shape}")
    ok = ok & valid.astype(bool)
  # Sort key puts invalid entries after every valid one, ties by index
  # (lax.top_k is not documented to be stable, argsort(stable=True) is).
  neg = jnp.where(ok, -scores, jnp.inf)
  idx = jnp.argsort(neg, axis=-1, stable=True)
  # Second stable pass moves invalid entries behind valid ones whose score is -inf.
  invalid_sorted = jnp.take_along_axis(~ok, idx, -1).astype(jnp.int32)
  idx = jnp.take_along_axis(idx, jnp.argsort(invalid_sorted, axis=-1, stable=True), -1)[..., :k]
  out_ok = jnp.take_along_axis(ok, idx, -1)
  values = jnp.where(out_ok, jnp.take_along_axis(scores, idx, -1), -jnp.inf)
  return values, jnp.where(out_ok, idx, -1).astype(jnp.int32), out_ok
