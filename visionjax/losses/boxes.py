"""Box regression losses and the classification-with-localization loss.

Box losses act on boxes [..., 4]; the element that ``reduction`` counts is a
box (the 4 coordinate terms are summed first), so 'mean' is "per box" as in
Fast R-CNN. ``where`` [...] marks boxes that count (e.g. foreground RoIs).

Counted boxes must have finite coordinates; that is checked in checked mode
(:func:`visionjax.losses.checked`) only. Unchecked, a NaN in a counted box
makes the smooth-L1/Huber loss NaN, but the GIoU loss a finite 1 (GIoU 0, see
:mod:`visionjax.ops.boxes`) whose gradient has NaN entries.
"""
from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import optax

from visionjax.losses.classification import softmax_cross_entropy
from visionjax.losses.reduction import check_class_ids, check_reduction, reduce_loss, validity_mask
from visionjax.ops.boxes import check_boxes, check_finite_boxes, generalized_box_iou_elementwise


def _box_pair(preds, targets):
  preds = check_boxes(preds, "preds")
  preds = preds.astype(jnp.promote_types(preds.dtype, jnp.float32))
  targets = check_boxes(targets, "targets").astype(preds.dtype)
  if preds.shape != targets.shape:
    raise ValueError(f"targets has shape {targets.shape}; expected the preds shape {preds.shape}")
  return preds, targets


def _check_finite_pair(fn, preds, targets, valid):
  """Checked mode: counted (``valid`` [...]) boxes of both arguments are finite."""
  check_finite_boxes(fn, preds, "preds", counted=valid)
  check_finite_boxes(fn, targets, "targets", counted=valid)


def _coord_weights(weights, dtype):
  if weights is None:
    return jnp.ones((), dtype)
  w = jnp.asarray(weights, dtype)
  if w.shape not in ((), (4,)):
    raise ValueError(f"weights has shape {w.shape}; expected () or (4,) (per coordinate)")
  return w


def smooth_l1_loss(preds, targets, *, beta: float = 1.0, weights=None, reduction: str = "mean",
                   where=None):
  r"""Smooth-L1 loss (Fast R-CNN), summed over the 4 coordinates of each box.

  Per coordinate with x = pred - target::

    l(x) = 0.5·x²/β   if |x| < β
           |x| - 0.5β otherwise          (β = 0: plain L1)

  ``weights``: optional per-coordinate weights [4]. Computed as
  ``optax.huber_loss(x, delta=β) / β`` (optax's Huber is correct and jit-safe;
  smooth-L1 is Huber divided by β). ``beta`` is a static Python float.
  """
  preds, targets = _box_pair(preds, targets)
  if beta < 0:
    raise ValueError(f"beta={beta}; expected >= 0")
  if beta == 0:
    per_coord = jnp.abs(preds - targets)
  else:
    per_coord = optax.huber_loss(preds, targets, delta=beta) / beta
  loss = jnp.sum(per_coord * _coord_weights(weights, preds.dtype), axis=-1)
  check_reduction(reduction)
  valid = validity_mask(loss, ignore_index=None, where=where)
  _check_finite_pair("smooth_l1_loss", preds, targets, valid)
  return reduce_loss(loss, 1.0, valid, reduction)


def huber_loss(preds, targets, *, delta: float = 1.0, weights=None, reduction: str = "mean",
               where=None):
  r"""Huber loss summed over box coordinates: 0.5x² if |x| <= δ else δ(|x| - 0.5δ).

  Equals ``delta * smooth_l1_loss(..., beta=delta)``; element-wise term from
  ``optax.huber_loss``.
  """
  preds, targets = _box_pair(preds, targets)
  per_coord = optax.huber_loss(preds, targets, delta=delta)
  loss = jnp.sum(per_coord * _coord_weights(weights, preds.dtype), axis=-1)
  check_reduction(reduction)
  valid = validity_mask(loss, ignore_index=None, where=where)
  _check_finite_pair("huber_loss", preds, targets, valid)
  return reduce_loss(loss, 1.0, valid, reduction)


def giou_loss(preds, targets, *, fmt: str = "xyxy", reduction: str = "mean", where=None):
  r"""Generalized-IoU loss ``1 - GIoU(pred, target)`` per box, in [0, 2].

  Shapes: preds, targets [..., 4] in ``fmt``; result per box [...].
  GIoU = IoU - (|C| - |A ∪ B|)/|C| with C the enclosing box (Rezatofighi et
  al. 2019); empty unions/enclosures give 0 terms (finite gradients).
  Boxes with ``where == 0`` are replaced by a unit box before the GIoU, so
  NaN/inf padding there reaches neither the value nor the gradient.
  """
  preds, targets = _box_pair(preds, targets)
  check_reduction(reduction)
  valid = validity_mask(preds[..., 0], ignore_index=None, where=where)
  _check_finite_pair("giou_loss", preds, targets, valid)
  if where is not None:
    unit = jnp.asarray([0.0, 0.0, 1.0, 1.0], preds.dtype)  # a proper box in every fmt
    preds = jnp.where(valid[..., None], preds, unit)
    targets = jnp.where(valid[..., None], targets, unit)
  loss = 1.0 - generalized_box_iou_elementwise(preds, targets, fmt=fmt)
  return reduce_loss(loss, 1.0, valid, reduction)


LOC_LOSSES = ("smooth_l1", "huber", "giou")


def classification_localization_loss(class_logits, box_preds, labels, box_targets, *,
                                     lam: float = 1.0, loc_loss: str = "smooth_l1",
                                     beta: float = 1.0, background_class: Optional[int] = None,
                                     label_smoothing: float = 0.0, weights=None,
                                     ignore_index: Optional[int] = None, fmt: str = "xyxy",
                                     reduction: str = "mean", where=None,
                                     return_parts: bool = False):
  r"""Multi-task loss ``L = L_cls + λ·[y ≠ background]·L_loc`` per example.

  Shapes: ``class_logits`` [..., C]; ``box_preds``, ``box_targets`` [..., 4];
  ``labels`` int [...]. ``L_cls`` is :func:`softmax_cross_entropy` (with
  ``label_smoothing``, ``weights``, ``ignore_index``); ``L_loc`` is
  'smooth_l1' (β = ``beta``), 'huber' (δ = ``beta``) or 'giou'. Localisation
  is skipped for ``labels == background_class`` (Fast R-CNN's Iverson bracket
  [u ≥ 1]) and for ignored examples.

  Reduction acts on the per-example sum, so 'mean' is
  ``Σ_n (L_cls,n + λ·[fg_n]·L_loc,n) / N`` over the N counted examples (Fast
  R-CNN's normalisation), and 'sum_and_count' returns ``(Σ, N)``. With
  ``return_parts=True`` also returns ``{'cls': ..., 'loc': ...}`` reduced the
  same way ('sum_and_count' parts share the count N).
  """
  if loc_loss not in LOC_LOSSES:
    raise ValueError(f"loc_loss={loc_loss!r}; expected one of {LOC_LOSSES}")
  check_reduction(reduction)
  labels = jnp.asarray(labels)
  if jnp.ndim(class_logits) >= 1 and jnp.shape(class_logits)[:-1] == labels.shape:
    # Checked mode: fail under this function's name before the parts do.
    check_class_ids("classification_localization_loss", labels, jnp.shape(class_logits)[-1],
                    ignore_index=ignore_index,
                    counted=validity_mask(labels, ignore_index=ignore_index, where=where))
  cls = softmax_cross_entropy(class_logits, labels, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, weights=weights,
                              reduction="none", where=where)
  box_preds, box_targets = _box_pair(box_preds, box_targets)
  if box_preds.shape[:-1] != labels.shape:
    raise ValueError(f"box_preds has shape {box_preds.shape}; expected {labels.shape + (4,)} "
                     "(one box per label)")
  valid = validity_mask(labels, ignore_index=ignore_index, where=where)
  fg = valid if background_class is None else valid & (labels != background_class)
  _check_finite_pair("classification_localization_loss", box_preds, box_targets, fg)
  if loc_loss == "smooth_l1":
    loc = smooth_l1_loss(box_preds, box_targets, beta=beta, reduction="none", where=fg)
  elif loc_loss == "huber":
    loc = huber_loss(box_preds, box_targets, delta=beta, reduction="none", where=fg)
  else:
    loc = giou_loss(box_preds, box_targets, fmt=fmt, reduction="none", where=fg)
  total = reduce_loss(cls + lam * loc, 1.0, valid, reduction)
  if not return_parts:
    return total
  parts = {"cls": reduce_loss(cls, 1.0, valid, reduction),
           "loc": reduce_loss(loc, 1.0, valid, reduction)}
  return total, parts
