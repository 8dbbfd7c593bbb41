"""The SSD multibox loss with hard-negative mining (Liu et al. 2016, eq. 1-3).

For one image with default boxes a = 1..A, head outputs ``logits`` [A, K+1]
(class 0 = background) and ``offsets`` [A, 4], and targets from
:func:`visionjax.detection.matching.ssd_targets`::

  L_loc  = Σ_{a ∈ Pos} smooth_L1(offsets_a - target_a)       (β = 1, summed over 4 coords)
  L_conf = Σ_{a ∈ Pos} CE(logits_a, y_a) + Σ_{a ∈ Neg} CE(logits_a, 0)
  L      = (L_conf + α·L_loc) / N,      N = number of positives

Neg are the *hard negatives*: the non-positive default boxes with the
largest background cross-entropy ``-log softmax(logits_a)_0``, at most
``neg_pos_ratio · |Pos|`` (3:1) of them (and at least ``min_negatives``),
ties broken by the lower index. N is summed over the batch before dividing
(the reference implementation's normalisation), so the per-image functions
return sums and :func:`multibox_loss` returns ``(Σ_images L·N, Σ_images N)``
for the train step to divide (and, data-parallel, to ``psum`` first).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from visionjax import losses


def hard_negatives(background_loss, positive, *, neg_pos_ratio: float = 3.0,
                   min_negatives: int = 0):
  """bool [A]: the hard negatives of one image.

  Args:
    background_loss: float [A], ranking score of each default box as a
      negative (the background cross-entropy; gradients are not needed).
    positive: bool [A].
    neg_pos_ratio: at most ``floor(neg_pos_ratio · |Pos|)`` negatives...
    min_negatives: ...but at least this many (when enough negatives exist).

  The chosen boxes are the non-positive ones of highest loss; ties go to the
  lower index. Static shapes: ranks come from a stable argsort.
  """
  loss = jax.lax.stop_gradient(jnp.asarray(background_loss))
  positive = jnp.asarray(positive, bool)
  if loss.ndim != 1 or positive.shape != loss.shape:
    raise ValueError(f"background_loss/positive have shapes {loss.shape}/{positive.shape}; "
                     "expected equal [A] (use jax.vmap for batches)")
  if neg_pos_ratio < 0 or min_negatives < 0:
    raise ValueError(f"neg_pos_ratio={neg_pos_ratio}, min_negatives={min_negatives}; "
                     "expected >= 0")
  a = loss.shape[0]
  num_pos = jnp.sum(positive)
  num_neg = jnp.floor(neg_pos_ratio * num_pos).astype(jnp.int32)
  num_neg = jnp.minimum(jnp.maximum(num_neg, min_negatives), a - num_pos)
  # Positives sort after every negative (NaN-safe: -inf key for them).
  key = jnp.where(positive, jnp.inf, -jnp.nan_to_num(loss, nan=-jnp.inf))
  order = jnp.argsort(key, stable=True)
  rank = jnp.zeros((a,), jnp.int32).at[order].set(jnp.arange(a, dtype=jnp.int32))
  return (rank < num_neg) & ~positive


class LossParts(NamedTuple):
  """Per-image sums: ``loc`` (Σ smooth-L1 over positives), ``conf`` (Σ CE
  over positives and hard negatives), ``num_pos``, ``num_neg``."""
  loc: jax.Array
  conf: jax.Array
  num_pos: jax.Array
  num_neg: jax.Array


def image_multibox_loss(logits, offsets, target_labels, target_offsets, *,
                        neg_pos_ratio: float = 3.0, min_negatives: int = 0,
                        beta: float = 1.0) -> LossParts:
  """:class:`LossParts` of one image: logits [A, K+1], offsets [A, 4],
  target_labels int [A] (0 = background), target_offsets [A, 4]."""
  logits = jnp.asarray(logits)
  if logits.ndim != 2 or jnp.shape(offsets) != (logits.shape[0], 4):
    raise ValueError(f"logits/offsets have shapes {logits.shape}/{jnp.shape(offsets)}; "
                     "expected [A, K+1] and [A, 4]")
  positive = target_labels > 0
  ce = losses.softmax_cross_entropy(logits, target_labels, reduction="none")       # [A]
  # For non-positives the target is background, so ce is the background loss.
  neg = hard_negatives(ce, positive, neg_pos_ratio=neg_pos_ratio,
                       min_negatives=min_negatives)
  conf = jnp.sum(jnp.where(positive | neg, ce, 0.0))
  loc = losses.smooth_l1_loss(offsets, target_offsets, beta=beta, reduction="sum",
                              where=positive)
  return LossParts(loc, conf, jnp.sum(positive).astype(jnp.float32),
                   jnp.sum(neg).astype(jnp.float32))


def multibox_loss(logits, offsets, target_labels, target_offsets, *, loc_weight: float = 1.0,
                  neg_pos_ratio: float = 3.0, min_negatives: int = 0, beta: float = 1.0,
                  where=None):
  """Batch multibox loss as ``(Σ_images (L_conf + α·L_loc), Σ_images N)``.

  Shapes: logits [B, A, K+1], offsets [B, A, 4], target_labels int [B, A],
  target_offsets [B, A, 4]; ``where`` bool [B] drops (padding) images.
  Returns also the summed :class:`LossParts` as a third element. The mean
  loss is ``sum / max(N, 1)``; vmapped over the batch.
  """
  fn = jax.vmap(lambda *x: image_multibox_loss(*x, neg_pos_ratio=neg_pos_ratio,
                                               min_negatives=min_negatives, beta=beta))
  parts = fn(logits, offsets, target_labels, target_offsets)
  if where is not None:
    keep = jnp.asarray(where, bool)
    parts = LossParts(*(jnp.where(keep, p, 0.0) for p in parts))
  parts = LossParts(*(jnp.sum(p) for p in parts))
  return parts.conf + loc_weight * parts.loc, parts.num_pos, parts
